// A Service in front of several replicas, for components that run on the host's loopback (the
// local cluster's controller replicas): one listener per port name, each new connection sent to
// the next ready endpoint, as kube-proxy balances a ClusterIP. Taking an endpoint out leaves its
// established connections alone (conntrack does the same); they end when the replica closes them.
// The bytes are TLS end to end: the front only sees ciphertext.
import net from 'node:net';
import { logger } from '../common/log.ts';

const log = logger('local');

export interface FrontEndpoint {
  readonly id: string;
  /** Port name → the replica's port on 127.0.0.1. */
  readonly ports: Readonly<Record<string, number>>;
}

export class ServiceFront {
  private readonly servers = new Map<string, net.Server>();
  private endpoints: FrontEndpoint[] = [];
  private next = 0;
  private readonly open = new Set<net.Socket>();

  private constructor() {}

  /** Listens on 127.0.0.1 for each name (port 0: a free one). */
  static async listen(ports: Readonly<Record<string, number>>): Promise<ServiceFront> {
    const f = new ServiceFront();
    try {
      for (const [name, port] of Object.entries(ports)) {
        const server = net.createServer((client) => f.forward(name, client));
        await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolve));
        f.servers.set(name, server);
      }
    } catch (e) {
      await f.close();
      throw e;
    }
    return f;
  }

  port(name: string): number {
    const a = this.servers.get(name)?.address();
    if (!a || typeof a === 'string') throw new Error(`the front has no listener named ${name}`);
    return a.port;
  }

  setEndpoints(endpoints: readonly FrontEndpoint[]): void {
    this.endpoints = [...endpoints];
  }

  get ready(): readonly FrontEndpoint[] {
    return this.endpoints;
  }

  private forward(name: string, client: net.Socket): void {
    this.open.add(client);
    client.once('close', () => this.open.delete(client));
    const candidates = this.endpoints.filter((e) => e.ports[name]);
    // No ready endpoint: refused, as a Service without endpoints rejects the connection.
    if (candidates.length === 0) {
      client.destroy();
      return;
    }
    const ep = candidates[this.next++ % candidates.length]!;
    const up = net.connect({ host: '127.0.0.1', port: ep.ports[name]! });
    this.open.add(up);
    up.once('close', () => this.open.delete(up));
    client.pipe(up).pipe(client);
    const end = () => {
      client.destroy();
      up.destroy();
    };
    client.on('error', end).on('close', end);
    up.on('error', (e) => {
      log.debug({ endpoint: ep.id, port: name, err: e.message }, 'forwarding to a replica failed');
      end();
    });
    up.on('close', end);
  }

  async close(): Promise<void> {
    for (const s of this.open) s.destroy();
    await Promise.all([...this.servers.values()].map((s) => new Promise((r) => s.close(r))));
    this.servers.clear();
  }
}
