// ztunnel's side of ZDS (src/zds/protocol.ts): connects to the node agent's socket, learns which
// pods to serve (snapshot, add, del — each acknowledged once handled), and sends each completed
// connection back for the node's flows. Reconnects for as long as ztunnel runs.
import net from 'node:net';
import { createInterface } from 'node:readline';
import { FLOW_BATCH, LineBatch } from '../common/line-batch.ts';
import type { ConnectionRecord, ZdsAck, ZdsMessage, ZdsPod, ZdsReport } from '../zds/protocol.ts';

/** Flow records wait in the socket's buffer up to this much; beyond it they are counted lost. */
const FLOW_BACKLOG_BYTES = 4 << 20;
const RECONNECT_MS = 500;

export interface ZdsHandlers {
  /** The agent's full list: serve these, stop serving the others. */
  snapshot(pods: ZdsPod[]): void;
  add(pod: ZdsPod): Promise<void>;
  del(uid: string): Promise<void>;
}

export class ZdsClient {
  private readonly path: string;
  private readonly handlers: ZdsHandlers;
  private sock: net.Socket | undefined;
  private lost = 0;
  /** Flow records gathering to be written together (see report). */
  private readonly pending = new LineBatch((lines, n) => this.send(lines, n), FLOW_BATCH);
  private closed = false;
  /** Draining: a newer ztunnel serves the node's pods; this one only reports its flows. */
  private ignoring = false;
  connected = false;

  constructor(path: string, handlers: ZdsHandlers) {
    this.path = path;
    this.handlers = handlers;
  }

  start(): this {
    this.connect();
    return this;
  }

  /** Hands a completed connection to the agent's flows; counted as lost when it cannot. */
  report(record: ConnectionRecord): void {
    const sock = this.sock;
    if (!this.connected || !sock || sock.writableLength + this.pending.chars > FLOW_BACKLOG_BYTES) {
      this.lost++;
      return;
    }
    // Records gather for up to 100 ms or 64 KiB (FLOW_BATCH) and go out as one string in
    // one write. A write per event-loop turn — at first a corked writev of one string per
    // record — was a syscall and an agent wake-up per connection under churn (7–11% of
    // ztunnel's time in its profile, issue 16); flows lose nothing by arriving 100 ms later. At
    // 20 ms each write still cost ~0.6 ms of event loop on a loaded node (the agent it wakes
    // takes the core): ~45 µs per connection under churn, ~15 µs at 100 ms (bench:profile).
    this.pending.push(`${JSON.stringify({ type: 'flow', record } satisfies ZdsReport)}\n`);
  }

  private send(lines: string, n: number): void {
    const sock = this.sock;
    if (!this.connected || !sock || sock.destroyed) {
      this.lost += n;
      return;
    }
    this.flushLost(sock);
    sock.write(lines);
  }

  /** From now on, snapshots and adds are left to the ztunnel that took over (no ack from here:
   * the agent counts the new one's). Deletions still reach this one. */
  ignorePods(): void {
    this.ignoring = true;
  }

  close(): void {
    this.pending.flush(); // the records still gathering
    this.closed = true;
    this.sock?.destroy();
  }

  private flushLost(sock: net.Socket): void {
    if (this.lost === 0) return;
    sock.write(`${JSON.stringify({ type: 'lost', count: this.lost } satisfies ZdsReport)}\n`);
    this.lost = 0;
  }

  private connect(): void {
    if (this.closed) return;
    const sock = net.connect(this.path);
    this.sock = sock;
    sock.on('connect', () => {
      this.connected = true;
      this.flushLost(sock);
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      this.connected = false;
      if (!this.closed) setTimeout(() => this.connect(), RECONNECT_MS);
    });
    const ack = (uid: string, error?: string) => sock.write(`${JSON.stringify({ type: 'ack', uid, ok: !error, ...(error ? { error } : {}) } satisfies ZdsAck)}\n`);
    const served = (uid: string, p: Promise<void>) => void p.then(() => ack(uid), (e: Error) => ack(uid, e.message));
    // readline re-emits its input's errors: without a listener, a refused connect (the agent
    // restarting: its socket is gone for a moment) would crash ztunnel. The socket's own
    // 'close' schedules the reconnect.
    const lines = createInterface({ input: sock });
    lines.on('error', () => {});
    lines.on('line', (line) => {
      let msg: ZdsMessage;
      try {
        msg = JSON.parse(line) as ZdsMessage;
      } catch {
        return;
      }
      if (this.ignoring && msg.type !== 'del') return;
      if (msg.type === 'snapshot') {
        this.handlers.snapshot(msg.pods);
        for (const p of msg.pods) served(p.uid, this.handlers.add(p));
      } else if (msg.type === 'add') served(msg.pod.uid, this.handlers.add(msg.pod));
      else if (msg.type === 'del') {
        const uid = msg.uid;
        void this.handlers.del(uid).then(() => ack(uid));
      }
    });
  }
}
