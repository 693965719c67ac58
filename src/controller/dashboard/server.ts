// The dashboard's HTTP server: the page and its scripts (static/, and the graph library from
// node_modules — the cluster may have no internet, so no CDN), the map as JSON (/api/graph) and as
// a live stream (/api/events, Server-Sent Events: one-way, plain HTTP, reconnects by itself, so it
// passes kubectl port-forward and needs no WebSocket library), and recent flows with meshctl flows'
// filters (/api/flows). While someone looks at the map, it follows the relay and folds every flow
// into the ServiceGraph; when no one has for a while, it stops (see IDLE_MS).
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { logger } from '../../common/log.ts';
import type { Flow, GetFlowsRequest, GetFlowsResponse } from '../../flows/types.ts';
import { nowNs } from '../../flows/types.ts';
import { GRAPH_DEFAULTS, type Inventory, ServiceGraph } from './graph.ts';
import { DashboardQueryError, flowsRequest } from './query.ts';
import type { FlowSource } from './source.ts';

const log = logger('dashboard');

export interface DashboardOptions {
  host: string;
  /** 0 picks a free port (tests, the local cluster). */
  port: number;
  source: FlowSource;
  /** The workloads and services the controller's model holds now. */
  inventory(): Inventory;
  /** Changes when the set of nodes the relay follows changes: the follow stream is reopened to take them in. */
  peersKey(): string;
  /** How often the live stream sends the map, ms. */
  pushMs?: number;
  windowMs?: number;
  /** Stop following flows after this long with no viewer (default IDLE_MS). */
  idleMs?: number;
}

/**
 * The flow stream stops when no page has been open and no map asked for in this long, and starts
 * again (with a history fill of the map's window, which the nodes' rings still hold) at the next
 * request. Every flow the relay streams costs each node agent a protobuf encoding and a gRPC
 * message, and the controller two decodings: under connection churn that was ~40% of each agent's
 * CPU (bench:profile --load churn, issue 16), paid whether anyone looked or not. Hubble UI follows
 * only while a browser is connected; five minutes keeps a map that is reloaded or polled warm.
 */
const IDLE_MS = 5 * 60_000;

export class DashboardListenError extends Error {
  readonly code = 'MESH_ERR_DASHBOARD_LISTEN';
}

export interface RunningDashboard {
  readonly port: number;
  readonly url: string;
  readonly graph: ServiceGraph;
  close(): Promise<void>;
}

const STATIC_DIR = fileURLToPath(new URL('./static/', import.meta.url));
const STATIC: Record<string, string> = { 'index.html': 'text/html', 'app.js': 'text/javascript', 'style.css': 'text/css' };

/** The browser builds of the graph library and its layered (dagre) layout, served as they install. */
function libraries(): Record<string, string> {
  const require = createRequire(import.meta.url);
  return {
    'cytoscape.min.js': require.resolve('cytoscape/dist/cytoscape.min.js'),
    // cytoscape-dagre's build bundles dagre; only its package root is exported.
    'cytoscape-dagre.min.js': join(dirname(require.resolve('cytoscape-dagre')), 'cytoscape-dagre.min.js'),
  };
}

export async function startDashboard(o: DashboardOptions): Promise<RunningDashboard> {
  const graph = new ServiceGraph({ windowMs: o.windowMs ?? GRAPH_DEFAULTS.windowMs });
  const libs = libraries();
  const files = new Map<string, { type: string; body: Buffer }>();
  for (const [name, type] of Object.entries(STATIC)) files.set(`/static/${name}`, { type, body: readFileSync(join(STATIC_DIR, name)) });
  for (const [name, path] of Object.entries(libs)) files.set(`/lib/${name}`, { type: 'text/javascript', body: readFileSync(path) });
  files.set('/', files.get('/static/index.html')!);

  // Flows: a history fill on each (re)subscription, then the live stream; a flow can come in both
  // (the fill and the stream overlap by design, to miss none), so uuids already folded are skipped.
  const seen = new Set<string>();
  const fold = (f: Flow) => {
    if (seen.has(f.uuid)) return;
    seen.add(f.uuid);
    if (seen.size > 200_000) for (const u of [...seen].slice(0, 100_000)) seen.delete(u);
    graph.add(f);
  };
  let following: { stop(): void } | undefined;
  let followedKey = '';
  let closed = false;
  let retry: NodeJS.Timeout | undefined;
  /** The history fill of the latest subscription: a map asked for waits for it. */
  let filled: Promise<void> = Promise.resolve();
  const clients = new Set<ServerResponse>();
  const idleMs = o.idleMs ?? IDLE_MS;
  let viewedAt = 0;
  const wanted = () => !closed && (clients.size > 0 || Date.now() - viewedAt < idleMs);
  const unsubscribe = () => {
    clearTimeout(retry);
    retry = undefined;
    following?.stop();
    following = undefined;
  };
  const subscribe = () => {
    unsubscribe();
    followedKey = o.peersKey();
    following = o.source.follow(fold, (why) => {
      following = undefined;
      if (!wanted()) return;
      log.debug({ why }, 'flow stream ended; following again in 1 s');
      retry = setTimeout(subscribe, 1000);
    });
    filled = o.source
      .history({ number: 0, sinceUnixNano: nowNs() - GRAPH_DEFAULTS.keepMs * 1e6, whitelist: [], blacklist: [] })
      .then((rs) => rs.forEach((r) => r.responseTypes === 'flow' && fold(r.flow)))
      .catch((e: Error) => log.debug({ err: e.message }, 'the history fill failed'));
  };
  /** Someone looks at the map: follow the flows (again), and say when the map is complete. */
  const viewed = (): Promise<void> => {
    viewedAt = Date.now();
    if (!following && !retry) {
      log.debug('a viewer: following the flows');
      subscribe();
    }
    return filled;
  };
  const watchPeers = setInterval(() => {
    if (closed || !following) return;
    if (!wanted()) {
      log.debug({ idleMs }, 'no viewer: the flow stream stops until the next one');
      unsubscribe();
    } else if (o.peersKey() !== followedKey) subscribe();
  }, 2000);

  const snapshot = () => {
    try {
      return graph.snapshot(o.inventory());
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'building the map failed');
      return undefined;
    }
  };
  const push = setInterval(() => {
    if (clients.size === 0) return;
    const s = snapshot();
    if (!s) return;
    const frame = `event: graph\ndata: ${JSON.stringify(s)}\n\n`;
    for (const c of clients) c.write(frame);
  }, o.pushMs ?? 1000);

  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(body));
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://dashboard');
    if (req.method !== 'GET') return json(res, 405, { error: `${req.method} is not served: the dashboard only reads` });
    const file = files.get(url.pathname);
    if (file) {
      res.writeHead(200, { 'content-type': `${file.type}; charset=utf-8`, 'cache-control': 'no-cache' });
      return res.end(file.body);
    }
    if (url.pathname === '/healthz') return json(res, 200, { ok: true });
    if (url.pathname === '/api/graph') {
      await viewed();
      return json(res, 200, snapshot() ?? { error: 'the map could not be built: see the controller log' });
    }
    if (url.pathname === '/api/events') {
      await viewed();
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
      // First frame at once, so the page draws without waiting a tick.
      const s = snapshot();
      if (s) res.write(`event: graph\ndata: ${JSON.stringify(s)}\n\n`);
      clients.add(res);
      req.on('close', () => clients.delete(res));
      return;
    }
    if (url.pathname === '/api/flows') {
      let fr: GetFlowsRequest;
      try {
        fr = flowsRequest(url.searchParams);
      } catch (e) {
        if (e instanceof DashboardQueryError) return json(res, 400, { error: e.message });
        throw e;
      }
      const rs: GetFlowsResponse[] = await o.source.history(fr);
      return json(res, 200, {
        request: fr,
        flows: rs.filter((r) => r.responseTypes === 'flow').map((r) => r.flow),
        notes: rs.filter((r) => r.responseTypes !== 'flow'),
      });
    }
    return json(res, 404, { error: `nothing at ${url.pathname}: the map is at /, its data at /api/graph, /api/events and /api/flows` });
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((e: Error) => {
      log.warn({ path: req.url, err: e.message }, 'dashboard request failed');
      if (!res.headersSent) json(res, 502, { error: e.message });
      else res.end();
    });
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => reject(new DashboardListenError(`the dashboard cannot listen on ${o.host}:${o.port}: ${e.message} — is MESH_DASHBOARD_PORT taken (by another controller on this host)? Set another port, or 0 for any`, { cause: e })));
      server.listen(o.port, o.host, resolve);
    });
  } catch (e) {
    closed = true;
    clearInterval(push);
    clearInterval(watchPeers);
    unsubscribe();
    o.source.close();
    throw e;
  }
  const port = (server.address() as { port: number }).port;
  const host = o.host === '0.0.0.0' || o.host === '::' ? '127.0.0.1' : o.host;
  log.info({ port, host: o.host }, 'dashboard listening');
  return {
    port,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}/`,
    graph,
    async close() {
      closed = true;
      clearInterval(push);
      clearInterval(watchPeers);
      unsubscribe();
      for (const c of clients) c.end();
      clients.clear();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      o.source.close();
    },
  };
}
