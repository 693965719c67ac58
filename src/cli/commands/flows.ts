// `meshctl flows`: the mesh's flows from every node, through the controller's relay — `hubble
// observe` for Mesh, with its flags, filters and output formats, plus what only we know: both
// SPIFFE identities, mTLS or plaintext, the kernel's decision, bytes and duration.
import type * as grpc from '@grpc/grpc-js';
import { Command, InvalidArgumentError, Option } from 'commander';
import { compactLine, dictBlock, jsonLine, type PrintOptions, tableRows, TIME_FORMATS, type TimeFormat } from '../flows-format.ts';
import type { GetFlowsResponse } from '../../flows/types.ts';
import { buildRequest, FILTER_FLAGS, type FilterFlags, filtersOf, parseTime, type RequestFlags } from '../../flows/request.ts';
import { DEFAULT_STATE_DIR, loadEndpoints } from '../endpoints.ts';

const OUTPUTS = ['compact', 'table', 'json', 'jsonpb', 'dict'] as const;
type Output = (typeof OUTPUTS)[number];

export type { FilterFlags };

export interface FlowsOptions extends FilterFlags, Omit<RequestFlags, keyof FilterFlags> {
  stateDir: string;
  server?: string;
  output: Output;
  printNodeName?: boolean;
  printPolicyNames?: boolean;
  timeFormat?: TimeFormat;
  not?: Partial<FilterFlags>;
}

const count = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${v} is not a positive count`);
  return n;
};

export { buildRequest, filtersOf, parseTime };

// ---- output: src/cli/flows-format.ts ------------------------------------------------------------

export { compactLine, flowType, formatTime, stamp, summary, tableRows } from '../flows-format.ts';

// ---- the command -----------------------------------------------------------------------------

function relayAddress(o: FlowsOptions): string {
  if (o.server) return o.server;
  const e = loadEndpoints(o.stateDir);
  if (!e.relay) throw new Error(`the mesh recorded in ${o.stateDir} has no flow relay address; pass --server host:port`);
  return e.relay;
}

async function observe(o: FlowsOptions): Promise<void> {
  const req = buildRequest(o);
  const address = relayAddress(o);
  // gRPC and the Observer proto load here: other commands start without them.
  const { credentials, status: code } = await import('@grpc/grpc-js');
  const { observerClient } = await import('../../flows/server.ts');
  const client = observerClient(address, credentials.createInsecure());
  const out = process.stdout;
  const table: GetFlowsResponse[] = [];
  const print: PrintOptions = { printNodeName: o.printNodeName, printPolicyNames: o.printPolicyNames, timeFormat: o.timeFormat };
  let headerShown = false;
  await new Promise<void>((resolve, reject) => {
    // Wait for the relay to be reachable rather than failing on the first try, briefly.
    client.waitForReady(Date.now() + 5000, (err) => {
      if (err) {
        reject(new Error(`cannot reach the flow relay at ${address}: ${err.message} — is the mesh running (\`meshctl dev status\`), or is --server right?`));
        return;
      }
      const stream = client.GetFlows(req);
      const stop = () => stream.cancel();
      process.once('SIGINT', stop);
      stream.on('data', (r: GetFlowsResponse) => {
        if (o.output === 'table' && !o.follow) table.push(r);
        else if (o.output === 'table') {
          // Following: rows as they come (the header once); widths cannot be known ahead. Lost
          // events and node status are not rows: they print as lines, never dropped.
          if (r.responseTypes !== 'flow') out.write(`${compactLine(r, { ...print, printNodeName: true })}\n`);
          else {
            const lines = tableRows([r], print).split('\n');
            out.write(`${(headerShown ? lines.slice(1) : lines).join('\n')}\n`);
            headerShown = true;
          }
        } else if (o.output === 'json' || o.output === 'jsonpb') out.write(`${jsonLine(r)}\n`);
        else if (o.output === 'dict') out.write(`${dictBlock(r, print)}\n`);
        else out.write(`${compactLine(r, print)}\n`);
      });
      stream.on('error', (e: grpc.ServiceError) => {
        process.off('SIGINT', stop);
        if (e.code === code.CANCELLED) resolve();
        else reject(new Error(`flow relay at ${address}: ${e.details || e.message}`));
      });
      stream.on('end', () => {
        process.off('SIGINT', stop);
        resolve();
      });
    });
  }).finally(() => client.close());
  if (o.output === 'table' && !o.follow) {
    for (const r of table) if (r.responseTypes !== 'flow') out.write(`${compactLine(r, { ...print, printNodeName: true })}\n`);
    out.write(`${tableRows(table, print)}\n`);
  }
}

/** A filter flag's value parser as commander wants it: a bad value is a usage error naming the flag. */
function cliParse(parse: (v: string) => unknown): (v: string) => unknown {
  return (v) => {
    try {
      return parse(v);
    } catch (e) {
      throw new InvalidArgumentError((e as Error).message);
    }
  };
}

/** `run` is what the command does with its options: observing, or a test looking at them. */
export function flowsCommand(run: (o: FlowsOptions) => Promise<void> = observe): Command {
  const cmd = new Command('flows');
  // hubble's --not: the next filter flag goes into the blacklist instead (flows_filter.go). Commander
  // parses options in command-line order, so a flag's parser sees whether --not came just before.
  let negate = false;
  const not: Partial<FilterFlags> = {};
  cmd.on('option:not', () => {
    if (negate) cmd.error('error: two --not in a row: --not applies to the one filter flag after it', { code: 'commander.invalidArgument', exitCode: 2 });
    negate = true;
  });
  for (const f of FILTER_FLAGS) {
    const parse = cliParse(f.parse);
    cmd.addOption(
      new Option(`${f.short ? `-${f.short}, ` : ''}--${f.name} <${f.value}>`, f.help)
        // No default: help stays free of "(default: [])"; the action fills in the empty lists.
        .argParser((v: string, prev: unknown[] | undefined) => {
          const value = parse(v);
          if (!negate) return [...(prev ?? []), value];
          negate = false;
          (not as Record<string, unknown[]>)[f.key] = [...((not as Record<string, unknown[]>)[f.key] ?? []), value];
          return prev ?? [];
        }),
    );
  }
  return cmd
    .alias('observe')
    .description('show the flows of every node (hubble observe for the mesh): who talked to whom, with which SPIFFE identities, over mTLS or not, the verdict, the policy that decided, and each HTTP request a waypoint saw')
    .addOption(new Option('--state-dir <dir>', "the local cluster's state directory, where mesh.json records the relay (env MESH_DEV_STATE_DIR)").default(DEFAULT_STATE_DIR))
    .option('--server <host:port>', 'the flow relay to ask (default: the one in mesh.json; on a cluster, kubectl -n mesh-system port-forward deploy/mesh-controller 4245)')
    .option('--last <n>', 'the last N flows (default 20)', count)
    .option('--first <n>', 'the first N flows still kept', count)
    .option('--all', 'every flow still kept')
    .option('-f, --follow', 'keep streaming new flows')
    .option('--since <time>', 'flows since a time (RFC 3339) or a duration ago (30s, 5m, 2h)')
    .option('--until <time>', 'flows until a time or a duration ago')
    .option('-A, --all-namespaces', 'flows in every namespace (the default)')
    .option('--not', 'leave out the flows the next filter flag matches (--not --namespace kube-system)')
    .addOption(new Option('-o, --output <format>', 'compact, table, json (one object per line), jsonpb or dict').choices([...OUTPUTS]).default('compact'))
    .option('--print-node-name', 'show which node reported each flow')
    .option('--print-policy-names', 'show which policy allowed or denied each flow')
    .addOption(new Option('--time-format <format>', 'how times print (UTC): StampMilli, RFC3339, RFC3339Milli, RFC3339Micro, RFC3339Nano, RFC1123Z').choices([...TIME_FORMATS]).default('StampMilli'))
    .addHelpText(
      'after',
      `
Examples:
  meshctl flows                                  # the last 20 flows of every node
  meshctl flows -n shop --verdict DROPPED        # what was refused in namespace shop
  meshctl flows --to-pod shop/web -f             # follow what reaches the web pods
  meshctl flows --protocol plaintext --since 5m  # who talked outside mTLS lately
  meshctl flows --type l7 --http-status 5+       # HTTP requests that failed on the server side
  meshctl flows --http-status 403 --print-policy-names   # requests a policy denied, and which
  meshctl flows --not --namespace kube-system -l app=web
  meshctl flows --from-identity shop/frontend -o json
  meshctl flows --print-node-name -o table`,
    )
    .action(async (o: FlowsOptions) => {
      if (negate) cmd.error('error: --not must be followed by a filter flag (e.g. --not --namespace kube-system)', { code: 'commander.invalidArgument', exitCode: 2 });
      for (const f of FILTER_FLAGS) (o as unknown as Record<string, unknown[]>)[f.key] ??= [];
      await run({ ...o, not });
    });
}
