// The agent's local control API: newline-delimited JSON over a unix socket. One request per line,
// {"id":1,"op":"enrol","pod":{...}}; one reply per request, {"id":1,"ok":true,"result":...} or
// {"id":1,"ok":false,"error":{"code":"...","message":"..."}}. The control-plane stream will drive
// enrolment later; this is how tests and `meshctl` talk to an agent directly.
import { chmodSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import { dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { logger } from '../common/log.ts';
import type { Agent } from './agent.ts';
import type { PodSpec } from './enrolment.ts';

const log = logger('control');

type Request =
  | { id?: unknown; op: 'enrol'; pod: PodSpec }
  | { id?: unknown; op: 'cni-add'; pod: PodSpec; waitZtunnelMs?: number }
  | { id?: unknown; op: 'unenrol'; uid: string }
  | { id?: unknown; op: 'reconcile'; pods: PodSpec[] }
  | { id?: unknown; op: 'list' | 'status' }
  | { id?: unknown; op: 'events'; last?: number };

function toJson(v: unknown): unknown {
  return JSON.parse(JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x)));
}

export interface ControlHooks {
  /** See ZdsServer.waitServed. */
  waitServed?: (uid: string, timeoutMs: number) => Promise<string>;
}

async function handle(agent: Agent, req: Request, hooks: ControlHooks): Promise<unknown> {
  switch (req.op) {
    case 'enrol':
      return agent.enrol(req.pod);
    case 'cni-add': {
      // At sandbox creation, before the pod's first instruction (Istio's CNI plugin): enrol now,
      // then wait until ztunnel serves it, so that its very first connection is captured and
      // answered. The config stream confirms the pod later; see MeshSync for the grace period.
      const pod = agent.enrol(req.pod);
      agent.enrolledAtSandbox.set(req.pod.uid, Date.now());
      const ztunnel = hooks.waitServed ? await hooks.waitServed(req.pod.uid, req.waitZtunnelMs ?? 5000) : 'no-ztunnel';
      return { pod, ztunnel };
    }
    case 'unenrol':
      return { removed: agent.unenrol(req.uid) };
    case 'reconcile':
      return agent.enrolment.reconcile(req.pods);
    case 'list':
      return agent.enrolment.list();
    case 'status':
      return agent.status();
    case 'events':
      return agent.recentEvents(req.last ?? 100);
    default:
      throw Object.assign(
        new Error(
          `unknown op '${(req as { op: unknown }).op}' (known: enrol, cni-add, unenrol, reconcile, list, status, events)`,
        ),
        {
          code: 'MESH_ERR_BAD_REQUEST',
        },
      );
  }
}

export function serveControl(agent: Agent, path: string, hooks: ControlHooks = {}): Promise<net.Server> {
  mkdirSync(dirname(path), { recursive: true });
  if (existsSync(path)) rmSync(path); // a previous agent's socket; we own this path
  const server = net.createServer((conn) => {
    const lines = createInterface({ input: conn, crlfDelay: Number.POSITIVE_INFINITY });
    lines.on('line', (line) => {
      if (!line.trim()) return;
      let req: Request;
      try {
        req = JSON.parse(line) as Request;
      } catch (e) {
        conn.write(
          `${JSON.stringify({ ok: false, error: { code: 'MESH_ERR_BAD_REQUEST', message: `not JSON: ${(e as Error).message}` } })}\n`,
        );
        return;
      }
      handle(agent, req, hooks).then(
        (result) => conn.write(`${JSON.stringify({ id: req.id, ok: true, result: toJson(result) })}\n`),
        (e: Error & { code?: string }) => {
          log.warn({ op: req.op, err: e.message }, 'control request failed');
          conn.write(`${JSON.stringify({ id: req.id, ok: false, error: { code: e.code ?? 'MESH_ERR_INTERNAL', message: e.message } })}\n`);
        },
      );
    });
    conn.on('error', () => conn.destroy());
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      chmodSync(path, 0o600);
      resolve(server);
    });
  });
}

/** A client for the control API (tests, meshctl). */
export async function controlRequest(
  path: string,
  req: Record<string, unknown>,
  timeoutMs = 10_000,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const conn = net.connect(path);
    const timer = setTimeout(() => {
      conn.destroy();
      reject(new Error(`agent at ${path} did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    conn.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot reach the agent at ${path}: ${e.message} — is it running?`));
    });
    // readline re-emits the socket's errors, which the 'error' listener above reports.
    const lines = createInterface({ input: conn });
    lines.on('error', () => {});
    lines.once('line', (line) => {
      clearTimeout(timer);
      conn.end();
      const reply = JSON.parse(line) as {
        ok: boolean;
        result?: unknown;
        error?: { code: string; message: string };
      };
      if (reply.ok) resolve(reply.result);
      else reject(Object.assign(new Error(reply.error?.message), { code: reply.error?.code }));
    });
    conn.write(`${JSON.stringify(req)}\n`);
  });
}
