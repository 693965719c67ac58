// ClusterIP services for the local cluster, as kube-proxy's nftables mode does them: in every
// node's network namespace, DNAT from ClusterIP:port to a random ready endpoint. Pod traffic is
// routed through its node (see topology.ts), so the node's conntrack reverses the translation.
// The whole table is replaced in one `nft -f` transaction, which is atomic.
import { logger } from '../../common/log.ts';
import { run, systemTool } from '../run.ts';

const log = logger('proxy');
const TABLE = 'mesh-services';

export interface ServiceRule {
  clusterIP: string;
  port: number;
  protocol: 'TCP' | 'UDP';
  /** Ready endpoints as address and target port. None: connections are refused, as kube-proxy does. */
  endpoints: { ip: string; port: number }[];
}

/** The nft script that defines the table for these rules (IPv4 services). */
export function renderRuleset(rules: ServiceRule[]): string {
  const lines = rules
    .filter((r) => r.clusterIP && r.clusterIP !== 'None' && !r.clusterIP.includes(':'))
    .map((r) => {
      const proto = r.protocol.toLowerCase();
      const match = `ip daddr ${r.clusterIP} ${proto} dport ${r.port}`;
      const eps = r.endpoints.filter((e) => !e.ip.includes(':'));
      if (eps.length === 0) return `    ${match} ${proto === 'tcp' ? 'reject with tcp reset' : 'reject'}`;
      if (eps.length === 1) return `    ${match} dnat ip to ${eps[0]!.ip}:${eps[0]!.port}`;
      const map = eps.map((e, i) => `${i} : ${e.ip} . ${e.port}`).join(', ');
      return `    ${match} dnat ip to numgen random mod ${eps.length} map { ${map} }`;
    });
  return [
    `table ip ${TABLE}`,
    `delete table ip ${TABLE}`,
    `table ip ${TABLE} {`,
    '  chain prerouting { type nat hook prerouting priority dstnat; policy accept; jump services; }',
    // nft 1.0.6 names no "dstnat" priority for the output hook; -100 is its value.
    '  chain output { type nat hook output priority -100; policy accept; jump services; }',
    '  chain services {',
    ...lines,
    '  }',
    '}',
    '',
  ].join('\n');
}

/** Applies service rules to a set of node namespaces; coalesces bursts of changes. */
export class ServiceProxy {
  private readonly netns: string[];
  private rules: ServiceRule[] = [];
  private timer: NodeJS.Timeout | undefined;
  private applying: Promise<void> = Promise.resolve();

  constructor(nodeNetns: string[]) {
    this.netns = nodeNetns;
  }

  update(rules: ServiceRule[]): void {
    this.rules = rules;
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const script = renderRuleset(this.rules);
      this.applying = this.applying.then(() => this.apply(script));
    }, 20);
  }

  private async apply(script: string): Promise<void> {
    log.debug({ rules: this.rules.length, nodes: this.netns.length }, 'programming service rules');
    await Promise.all(
      this.netns.map((ns) =>
        run('ip', ['netns', 'exec', ns, systemTool('nft', 'nftables'), '-f', '-'], script).catch((e: Error) =>
          log.error({ netns: ns, err: e.message }, 'programming service rules failed'),
        ),
      ),
    );
  }

  /** Waits for pending updates to reach the kernel. */
  async flush(): Promise<void> {
    while (this.timer) await new Promise((r) => setTimeout(r, 25));
    await this.applying;
  }
}
