// The agent's side of ZDS (src/zds/protocol.ts): tells every connected ztunnel about the pods of
// this node that are enrolled, so it can open its listeners inside them. A ztunnel that restarts
// reconnects and gets the full snapshot again; capture itself never waits for it (fail closed).
import { chmodSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import { dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { logger } from '../common/log.ts';
import type { ZdsMessage, ZdsPod, ZdsReport } from '../zds/protocol.ts';
import type { ConnectionRecord } from '../zds/protocol.ts';
import type { EnrolledPod, Enrolment } from './enrolment.ts';

const log = logger('zds');

function toZds(p: EnrolledPod, netnsPath: string): ZdsPod {
  return {
    uid: p.uid,
    netnsPath,
    netnsCookie: String(p.netnsCookie),
    addresses: p.addresses,
    ...(p.workload ? { workload: p.workload } : {}),
    ...(p.transparent ? { transparent: true } : {}),
  };
}

/** Where ztunnel's connection records go (the agent's flows). */
export interface ZdsReports {
  onRecord(r: ConnectionRecord): void;
  onLost(n: number): void;
}

export class ZdsServer {
  private readonly server: net.Server;
  private readonly clients = new Set<net.Socket>();
  private readonly unsubscribe: () => void;

  /** Connection records ztunnel reported it could not hand over. */
  ztunnelLost = 0;
  /** Pods a ztunnel has acknowledged serving (its listeners are open). */
  private readonly served = new Set<string>();
  private readonly waiters = new Map<string, Set<(ok: boolean) => void>>();

  get ztunnels(): number {
    return this.clients.size;
  }

  private constructor(enrolment: Enrolment, server: net.Server, reports?: ZdsReports) {
    this.server = server;
    const send = (m: ZdsMessage) => {
      for (const c of this.clients) c.write(`${JSON.stringify(m)}\n`);
    };
    this.unsubscribe = enrolment.onChange((ch) => {
      if (ch.type === 'add') {
        this.served.delete(ch.pod.uid);
        send({ type: 'add', pod: toZds(ch.pod, ch.netnsPath) });
      } else {
        this.served.delete(ch.uid);
        send({ type: 'del', uid: ch.uid, netnsCookie: String(ch.netnsCookie) });
      }
    });
    server.on('connection', (c) => {
      this.clients.add(c);
      // Every enrolled pod, also one whose netns this agent has not located yet (restored from
      // the pins after a restart: its path comes with the next 'add'). ztunnel stops serving
      // the pods a snapshot leaves out, which would reset their connections.
      const pods = enrolment.list().map((p) => toZds(p, enrolment.netnsPathOf(p.uid) ?? ''));
      c.write(`${JSON.stringify({ type: 'snapshot', pods } satisfies ZdsMessage)}\n`);
      log.info({ pods: pods.length }, 'ztunnel connected');
      // readline re-emits the socket's errors; 'error' below handles them (an unheard one would
      // crash the agent when a ztunnel dies mid-write).
      const lines = createInterface({ input: c });
      lines.on('error', () => {});
      lines.on('line', (line) => {
        let m: ZdsReport;
        try {
          m = JSON.parse(line) as ZdsReport;
        } catch {
          log.warn({ line: line.slice(0, 200) }, 'unreadable message from ztunnel');
          return;
        }
        if (m.type === 'flow') reports?.onRecord(m.record);
        else if (m.type === 'lost') {
          this.ztunnelLost += m.count;
          reports?.onLost(m.count);
        } else if (m.type === 'ack') {
          if (!m.ok) {
            log.warn({ uid: m.uid, err: m.error }, 'ztunnel could not set up a pod; telling it again in 1 s');
            const uid = m.uid;
            setTimeout(() => {
              const pod = enrolment.list().find((p) => p.uid === uid);
              const path = enrolment.netnsPathOf(uid);
              if (pod && path && !c.destroyed) c.write(`${JSON.stringify({ type: 'add', pod: toZds(pod, path) } satisfies ZdsMessage)}\n`);
            }, 1000).unref();
          }
          else if (enrolment.list().some((p) => p.uid === m.uid)) this.served.add(m.uid);
          for (const w of this.waiters.get(m.uid) ?? []) w(m.ok);
          this.waiters.delete(m.uid);
        }
      });
      c.on('close', () => this.clients.delete(c));
      c.on('error', () => c.destroy());
    });
  }

  /**
   * Resolves when a ztunnel serves the pod (now, or on its acknowledgement): 'served', 'failed'
   * (ztunnel could not open its listeners), or 'timeout' (no ztunnel answered in time: the pod is
   * enrolled all the same, and its connections are refused until one does — fail closed).
   */
  waitServed(uid: string, timeoutMs: number): Promise<'served' | 'failed' | 'timeout'> {
    if (this.served.has(uid)) return Promise.resolve('served');
    return new Promise((resolve) => {
      const set = this.waiters.get(uid) ?? new Set();
      this.waiters.set(uid, set);
      const done = (ok: boolean) => {
        clearTimeout(timer);
        resolve(ok ? 'served' : 'failed');
      };
      const timer = setTimeout(() => {
        set.delete(done);
        resolve('timeout');
      }, timeoutMs);
      set.add(done);
    });
  }

  static async listen(enrolment: Enrolment, path: string, reports?: ZdsReports): Promise<ZdsServer> {
    mkdirSync(dirname(path), { recursive: true });
    if (existsSync(path)) rmSync(path);
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    chmodSync(path, 0o600);
    return new ZdsServer(enrolment, server, reports);
  }

  close(): void {
    this.unsubscribe();
    for (const c of this.clients) c.destroy();
    this.server.close();
  }
}
