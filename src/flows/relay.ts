// The relay: the Observer API for the whole cluster, served by the controller (Hubble Relay's
// job). It dials every node agent's flows API (their addresses come with their config-stream
// subscriptions), merges their flows by time, and reports nodes it cannot reach — as
// NodeStatusEvents in a flow stream and in ServerStatus / GetNodes — instead of hiding them.
import * as grpc from '@grpc/grpc-js';
import { logger } from '../common/log.ts';
import { requestMatches, validateRequest } from './filter.ts';
import { type ObserverClient, observerClient, unary } from './server.ts';
import type { GetFlowsRequest, GetFlowsResponse, NodeInfo, ServerStatus } from './types.ts';
import { nowNs } from './types.ts';

const log = logger('relay');

export interface RelayPeer {
  name: string;
  address: string;
  configClients: NodeInfo['configClients'];
}

export interface RelayOptions {
  /** The node agents to relay, now. */
  peers(): RelayPeer[];
  /** Checks the agent's certificate; its checkServerIdentity is called with the peer's node name. */
  credentials: grpc.ChannelCredentials;
  version: string;
  /** Per-node deadline for unary calls and for a history (non-follow) stream, ms. */
  timeoutMs?: number;
}

/** Sorts follow-mode responses from several nodes within this window before sending them. */
const SORT_WINDOW_MS = 100;

export class Relay {
  private readonly o: RelayOptions;
  private readonly clients = new Map<string, { address: string; client: ObserverClient }>();
  private readonly started = nowNs();

  constructor(o: RelayOptions) {
    this.o = o;
  }

  private client(p: RelayPeer): ObserverClient {
    const have = this.clients.get(p.name);
    if (have && have.address === p.address) return have.client;
    have?.client.close();
    // Agents are named by their node credential, not by a host name: the TLS server name is the
    // node's name, which the credentials' identity check compares with the node the agent's
    // certificate is bound to (and it keeps IP addresses out of SNI).
    const client = observerClient(p.address, this.o.credentials, { 'grpc.ssl_target_name_override': p.name });
    this.clients.set(p.name, { address: p.address, client });
    return client;
  }

  private get timeout(): number {
    return this.o.timeoutMs ?? 5000;
  }

  service(): grpc.UntypedServiceImplementation {
    return {
      GetFlows: (call: grpc.ServerWritableStream<GetFlowsRequest, GetFlowsResponse>) => this.getFlows(call),
      ServerStatus: (_call: unknown, cb: grpc.sendUnaryData<ServerStatus>) => {
        this.serverStatus().then((s) => cb(null, s), (e: Error) => cb({ code: grpc.status.INTERNAL, details: e.message }));
      },
      GetNodes: (_call: unknown, cb: grpc.sendUnaryData<{ nodes: NodeInfo[] }>) => {
        this.nodes().then((nodes) => cb(null, { nodes }), (e: Error) => cb({ code: grpc.status.INTERNAL, details: e.message }));
      },
    };
  }

  async nodes(): Promise<NodeInfo[]> {
    return Promise.all(
      this.o.peers().map(async (p): Promise<NodeInfo> => {
        try {
          const r = await unary<{ nodes: NodeInfo[] }>((opts, cb) => this.client(p).GetNodes({}, opts, cb), this.timeout);
          const n = r.nodes[0];
          if (!n) throw new Error('the agent reported no node');
          return { ...n, name: p.name, address: p.address, configClients: p.configClients };
        } catch (e) {
          return {
            name: p.name, address: p.address, state: 'UNAVAILABLE', version: '', numFlows: 0, maxFlows: 0, seenFlows: 0, uptimeNs: 0,
            error: (e as Error).message, enrolledPods: 0, ztunnelConnected: false, configClients: p.configClients,
          };
        }
      }),
    );
  }

  async serverStatus(): Promise<ServerStatus> {
    const peers = this.o.peers();
    const all = await Promise.all(
      peers.map((p) =>
        unary<ServerStatus>((opts, cb) => this.client(p).ServerStatus({}, opts, cb), this.timeout).then(
          (s) => ({ p, s }),
          () => ({ p, s: undefined }),
        ),
      ),
    );
    const ok = all.filter((x) => x.s);
    const sum = (k: keyof ServerStatus) => ok.reduce((a, x) => a + Number(x.s![k]), 0);
    return {
      numFlows: sum('numFlows'),
      maxFlows: sum('maxFlows'),
      seenFlows: sum('seenFlows'),
      flowsRate: sum('flowsRate'),
      uptimeNs: nowNs() - this.started,
      numConnectedNodes: ok.length,
      numUnavailableNodes: all.length - ok.length,
      unavailableNodes: all.filter((x) => !x.s).map((x) => x.p.name),
      kernelEventsLost: sum('kernelEventsLost'),
      ztunnelRecordsLost: sum('ztunnelRecordsLost'),
      flowsOverwritten: sum('flowsOverwritten'),
      version: this.o.version,
    };
  }

  private getFlows(call: grpc.ServerWritableStream<GetFlowsRequest, GetFlowsResponse>): void {
    const req = call.request;
    // A filter no node could apply is the caller's mistake: say so once, not once per node.
    try {
      validateRequest(req);
    } catch (e) {
      call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: (e as Error).message });
      return;
    }
    const peers = this.o.peers();
    const streams: grpc.ClientReadableStream<unknown>[] = [];
    const unavailable = (name: string, why: string) => {
      call.write({ responseTypes: 'nodeStatus', nodeStatus: { state: 'UNAVAILABLE', nodeNames: [name], message: why }, nodeName: '', timeUnixNano: nowNs() });
    };
    if (peers.length === 0) {
      call.write({ responseTypes: 'nodeStatus', nodeStatus: { state: 'UNAVAILABLE', nodeNames: [], message: 'no node agent has announced a flows API to the controller yet' }, nodeName: '', timeUnixNano: nowNs() });
    }
    let open = peers.length;
    // History: everything from every node, merged by time, then cut to the request's number.
    const collected: GetFlowsResponse[] = [];
    let buffer: GetFlowsResponse[] = [];
    let flushing: NodeJS.Timeout | undefined;
    const time = (r: GetFlowsResponse) => r.timeUnixNano;
    const flush = () => {
      flushing = undefined;
      buffer.sort((a, b) => time(a) - time(b));
      for (const r of buffer) call.write(r);
      buffer = [];
    };
    const finishHistory = () => {
      // Each node gave its own last (first) N: merged by time, the number applies to them all.
      collected.sort((a, b) => time(a) - time(b));
      const flows = collected.filter((r) => r.responseTypes === 'flow');
      const n = req.number && req.number > 0 ? req.number : flows.length;
      for (const r of collected) if (r.responseTypes !== 'flow') call.write(r);
      for (const r of req.first ? flows.slice(0, n) : flows.slice(-n)) call.write(r);
      call.end();
    };
    for (const p of peers) {
      let s: grpc.ClientReadableStream<unknown>;
      try {
        s = this.client(p).GetFlows(req, req.follow ? {} : { deadline: Date.now() + this.timeout * 2 });
      } catch (e) {
        unavailable(p.name, (e as Error).message);
        open--;
        continue;
      }
      streams.push(s);
      s.on('data', (d: GetFlowsResponse) => {
        // An agent of an older version ignores filter fields it does not know and sends flows that
        // do not match: filtering again here keeps the answer right during an upgrade.
        if (d.responseTypes === 'flow' && !requestMatches(d.flow, req)) return;
        const r = { ...d, nodeName: d.nodeName || p.name };
        if (!req.follow) collected.push(r);
        else {
          buffer.push(r);
          flushing ??= setTimeout(flush, SORT_WINDOW_MS);
        }
      });
      s.on('error', (e: grpc.ServiceError) => {
        if (e.code === grpc.status.CANCELLED && call.cancelled) return;
        log.info({ node: p.name, err: e.details || e.message }, 'a node did not answer the flow request');
        unavailable(p.name, `${p.address}: ${e.details || e.message}`);
      });
      s.on('close', () => {
        open--;
        if (!req.follow && open === 0) finishHistory();
      });
    }
    if (!req.follow && open === 0) finishHistory();
    call.on('cancelled', () => {
      if (flushing) clearTimeout(flushing);
      for (const s of streams) s.cancel();
    });
  }

  close(): void {
    for (const { client } of this.clients.values()) client.close();
    this.clients.clear();
  }
}
