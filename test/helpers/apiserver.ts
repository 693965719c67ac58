// Test helpers for the local API server: a server on a temp dir that is always cleaned up, an
// HTTPS client that trusts its CA, and real kubectl run against a written kubeconfig.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import * as yaml from 'js-yaml';
import { type ApiServer, type ApiServerOptions, startApiServer } from '../../src/local/apiserver/index.ts';

export interface Harness {
  dir: string;
  server: ApiServer;
  kubeconfig: string;
  /** Stops the current server and starts another on the same data dir and port. */
  restart(opts?: Partial<ApiServerOptions>): Promise<ApiServer>;
}

/** Starts a server in a fresh temp dir; stops it and removes the dir when the test ends. */
export async function harness(t: ExecutionContext, opts: Partial<ApiServerOptions> = {}): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-apiserver-'));
  const h: Harness = {
    dir,
    server: undefined as unknown as ApiServer,
    kubeconfig: join(dir, 'kubeconfig'),
    async restart(more = {}) {
      await h.server.stop();
      h.server = await startApiServer({ dataDir: join(dir, 'data'), ...opts, ...more, port: h.server.port });
      return h.server;
    },
  };
  t.teardown(async () => {
    await h.server?.stop().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  });
  h.server = await startApiServer({ dataDir: join(dir, 'data'), ...opts });
  await h.server.writeKubeconfig(h.kubeconfig);
  return h;
}

/** The chart's CRDs for security.mesh.io (AuthorizationPolicy, PeerAuthentication). */
export const SECURITY_CRDS = fileURLToPath(new URL('../../daemonset/chart/crds/security.mesh.io.yaml', import.meta.url));
/** The chart's CRDs for networking.mesh.io (TrafficPolicy). */
export const NETWORKING_CRDS = fileURLToPath(new URL('../../daemonset/chart/crds/networking.mesh.io.yaml', import.meta.url));

/** Creates every CRD in a YAML file, as the chart (or `kubectl apply -f`) would. */
export async function applyCrds(server: ApiServer, file = SECURITY_CRDS): Promise<void> {
  for (const doc of yaml.loadAll(await readFile(file, 'utf8'))) {
    if (!doc) continue;
    const r = await call(server, 'POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', doc);
    if (r.status !== 201) throw new Error(`creating a CRD from ${file} failed: ${r.status} ${r.text}`);
  }
}

/** Parsed JSON as tests read it: loosely typed on purpose, tests assert on the shape. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  body: Loose;
}

export interface WatchEvent {
  type: string;
  object: Loose;
}

/** One HTTPS request to the server; `token: null` sends none. */
export function call(
  server: ApiServer,
  method: string,
  path: string,
  body?: unknown,
  opts: { token?: string | null; contentType?: string; accept?: string } = {},
): Promise<Reply> {
  const data = body === undefined ? undefined : typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
  const token = opts.token === undefined ? server.adminToken : opts.token;
  return new Promise((resolve, reject) => {
    const req = request(
      `${server.url}${path}`,
      {
        method,
        ca: server.caCertPem,
        headers: {
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(data !== undefined ? { 'content-type': opts.contentType ?? 'application/json', 'content-length': Buffer.byteLength(data) } : {}),
          ...(opts.accept ? { accept: opts.accept } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body: parsed });
        });
      },
    );
    req.on('error', reject);
    if (data !== undefined) req.write(data);
    req.end();
  });
}

/** Reads a watch stream for `ms`, returning the parsed events (the request is then aborted). */
export function watchFor(server: ApiServer, path: string, ms: number, during?: () => Promise<void>): Promise<{ status: number; events: WatchEvent[] }> {
  return new Promise((resolve, reject) => {
    const events: WatchEvent[] = [];
    let buf = '';
    const req = request(`${server.url}${path}`, { ca: server.caCertPem, headers: { authorization: `Bearer ${server.adminToken}` } }, (res) => {
      res.on('data', (c: Buffer) => {
        buf += c.toString('utf8');
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line) events.push(JSON.parse(line));
        }
      });
      res.on('error', () => {});
      void (async () => {
        await during?.();
        setTimeout(() => {
          req.destroy();
          resolve({ status: res.statusCode ?? 0, events });
        }, ms);
      })().catch(reject);
    });
    req.on('error', (err) => {
      if (!req.destroyed) reject(err);
    });
    req.end();
  });
}

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real kubectl against the harness's kubeconfig, with a private discovery cache. */
export function kubectl(h: Harness, args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<KubectlResult> {
  return new Promise((resolve) => {
    const child = execFile(
      'kubectl',
      args,
      { env: { ...process.env, KUBECONFIG: h.kubeconfig, KUBECACHEDIR: join(h.dir, 'kube-cache'), HOME: h.dir }, timeout: opts.timeoutMs ?? 30_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    if (opts.input !== undefined) child.stdin!.end(opts.input);
  });
}
