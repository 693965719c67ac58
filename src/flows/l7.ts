// L7 flow records from the node's proxies to its agent, as Envoy's access logs reach the Cilium
// agent for Hubble: one JSON line per HTTP request on a unix socket beside the agent's control
// socket (MESH_L7_FLOWS_SOCKET). The waypoint writes them (fire and forget: a record that cannot
// be sent is counted and dropped, never held up a request); the agent turns each into an L7 flow
// that `meshctl flows --protocol http` shows next to the L4 flow of the same connection (the same
// source address and port, destination address and port).
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import { dirname } from 'node:path';
import { FLOW_BATCH, LineBatch } from '../common/line-batch.ts';
import { logger } from '../common/log.ts';

const log = logger('flows');
/** Records kept while the connection to the agent opens. */
const QUEUE_MAX = 256;

export interface L7Record {
  /** Start of the request, ms since the epoch. */
  startMs: number;
  /** Who reports it: "waypoint ns/name". */
  reporter: string;
  /** The client: the original source (the app's address and port, as its ztunnel forwarded it). */
  src: { ip: string; port: number; identity: string };
  /** What the client addressed (a Service's VIP, or a pod), and the Service's "ns/hostname" if any. */
  dst: { ip: string; port: number; service: string };
  /** The endpoint the waypoint sent the request to, if it got that far. */
  upstream: { ip: string; port: number } | null;
  method: string;
  /** Path and query as received. */
  url: string;
  /** "HTTP/1.1", "HTTP/2" or "gRPC". */
  protocol: string;
  status: number;
  /** Envoy's response flags as Istio reports them ("-", RBAC, UH, UT, …). */
  flags: string;
  latencyMs: number;
  /** The W3C trace id, to find the request in traces. */
  traceId: string;
  /** "namespace/name" of the authorization policy that allowed or denied the request, if one did. */
  policy?: string;
}

/** The agent's end: accepts connections and calls `onRecord` for each valid line. */
export class L7FlowServer {
  private readonly server: net.Server;
  readonly path: string;
  invalid = 0;

  private constructor(path: string, onRecord: (r: L7Record) => void) {
    this.path = path;
    this.server = net.createServer((c) => {
      let buf = '';
      c.setEncoding('utf8');
      c.on('data', (d: string) => {
        buf += d;
        // A line longer than this is not one of ours: drop the connection, not the agent.
        if (buf.length > 1 << 20) {
          this.invalid++;
          c.destroy();
          return;
        }
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          const r = parseRecord(line);
          if (r) onRecord(r);
          else this.invalid++;
        }
      });
      c.on('error', () => {});
    });
  }

  static async listen(path: string, onRecord: (r: L7Record) => void): Promise<L7FlowServer> {
    mkdirSync(dirname(path), { recursive: true });
    rmSync(path, { force: true });
    const s = new L7FlowServer(path, onRecord);
    await new Promise<void>((resolve, reject) => s.server.once('error', reject).listen(path, resolve));
    // Waypoints send here as uid 1337 (their image's user), and connecting to a unix socket needs
    // write permission on it. Who can reach the socket is decided by who gets its directory mounted.
    chmodSync(path, 0o666);
    return s;
  }

  async close(): Promise<void> {
    await new Promise((r) => this.server.close(r));
    rmSync(this.path, { force: true });
  }
}

function parseRecord(line: string): L7Record | undefined {
  try {
    const r = JSON.parse(line) as L7Record;
    if (typeof r.startMs !== 'number' || typeof r.method !== 'string' || typeof r.status !== 'number' || !r.src || !r.dst) return undefined;
    return r;
  } catch {
    return undefined;
  }
}

/**
 * The proxy's end: one connection, opened at once and reopened when lost. Records written while it
 * connects wait in a short queue; beyond it, or while the agent is away, they are dropped and
 * counted — a request is never held up for its flow.
 */
export class L7FlowSender {
  private readonly path: string;
  private sock: net.Socket | undefined;
  private connecting = false;
  private retryAt = 0;
  private readonly queue: string[] = [];
  /** Records leave batched: a write per request was a syscall and an agent wake-up each, 6% of
   * the waypoint's CPU at 1,000 rps (issue 16). */
  private readonly batch = new LineBatch((text, n) => this.write(text, n), FLOW_BATCH);
  dropped = 0;
  sent = 0;

  constructor(path: string) {
    this.path = path;
    this.connect();
  }

  private write(text: string, n: number): void {
    const s = this.sock;
    if (!s || s.destroyed) {
      this.dropped += n;
      return;
    }
    s.write(text);
    this.sent += n;
  }

  send(r: L7Record): void {
    const line = `${JSON.stringify(r)}\n`;
    const s = this.sock;
    if (!s || s.destroyed) {
      if (this.queue.length < QUEUE_MAX) this.queue.push(line);
      else this.dropped++;
      this.connect();
      return;
    }
    // Backpressure means the agent is not reading: drop rather than buffer without bound.
    if (s.writableLength > 1 << 20) {
      this.dropped++;
      return;
    }
    this.batch.push(line);
  }

  private connect(): void {
    if (this.connecting || Date.now() < this.retryAt) return;
    this.connecting = true;
    const s = net.connect(this.path);
    s.once('connect', () => {
      this.connecting = false;
      this.sock = s;
      for (const line of this.queue.splice(0)) {
        s.write(line);
        this.sent++;
      }
      log.debug({ socket: this.path }, 'sending L7 flows to the node agent');
    });
    s.once('error', (e: Error) => {
      this.connecting = false;
      this.retryAt = Date.now() + 1000;
      // The agent is away: what waited for it is dropped, and counted.
      this.dropped += this.queue.splice(0).length;
      if (this.sock !== s) log.debug({ socket: this.path, err: e.message }, 'the node agent takes no L7 flows (yet)');
    });
    s.once('close', () => {
      if (this.sock === s) this.sock = undefined;
    });
  }

  close(): void {
    this.batch.flush(); // the records still gathering
    this.sock?.end();
    this.sock = undefined;
  }
}
