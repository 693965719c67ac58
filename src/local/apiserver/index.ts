// The local cluster's API server: a Kubernetes-API-compatible HTTPS server that real kubectl and
// @kubernetes/client-node talk to (see ../../../ARCHITECTURE.md and issue 3). Objects persist
// under dataDir; the CA, serving certificate and tokens are made on first start and reused.
import { mkdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { dirname } from 'node:path';
import * as yaml from 'js-yaml';
import { logger } from '../../common/log.ts';
import { CrdController } from './crds.ts';
import { writeFileAtomic } from './files.ts';
import { EndpointsMirror } from './endpoints.ts';
import { EndpointSliceController } from './endpointslices.ts';
import { GarbageCollector } from './gc.ts';
import { createHandler, createUpgradeHandler, type HandlerContext } from './http.ts';
import { Kinds } from './kinds.ts';
import { loadOrCreatePki } from './pki.ts';
import { Authorizer } from './rbac.ts';
import { bootstrapRbac } from './rbac-policy.ts';
import { Registry } from './registry.ts';
import { byKind } from './resources.ts';
import { Store } from './store.ts';
import type { PodStreams } from './streaming.ts';
import { Tokens } from './tokens.ts';

export { ApiError } from './errors.ts';
export { KUBERNETES_SERVICE_IP } from './pki.ts';
export type { StatusCause } from './errors.ts';
export type { KubeObject } from './types.ts';
export type { ExecRequest, ExecSession, ForwardConnection, LogRequest, PodStreams, StartExec, TerminalSize } from './streaming.ts';

const log = logger('apiserver');

export interface ApiServerOptions {
  dataDir: string;
  host?: '127.0.0.1';
  /** 0 (default) picks a free port; pass the old port to restart in place. */
  port?: number;
  /** Reported by /version; kubectl's dispatcher picks its bundled client by the minor. */
  kubernetesVersion?: { major: number; minor: number };
  /** Events kept for watches to resume from; older resourceVersions get 410 Gone. */
  eventWindow?: number;
  /** BOOKMARK cadence for watches that allow them (keep-alive otherwise). */
  bookmarkIntervalMs?: number;
  /** Watch duration when the client sets no timeoutSeconds. */
  maxWatchSeconds?: number;
}

export interface KubeconfigOptions {
  /** The kubeconfig user's name (default "admin"). */
  user?: string;
  /** Bearer token for that user (default: the admin token). */
  token?: string;
  namespace?: string;
}

export interface ApiServer {
  /** https://127.0.0.1:PORT */
  readonly url: string;
  readonly port: number;
  readonly caCertPem: string;
  readonly adminToken: string;
  /** Writes a kubeconfig (mode 0600) for this server with the CA embedded. */
  writeKubeconfig(path: string, opts?: KubeconfigOptions): Promise<void>;
  /** A token for an existing ServiceAccount, as TokenRequest would issue (default 24 h). */
  issueServiceAccountToken(namespace: string, name: string, opts?: { audiences?: string[]; expirationSeconds?: number }): string;
  /** Connects pods/log, exec and attach to the kubelets that run the pods. */
  setPodStreams(streams: PodStreams): void;
  /** Ends watches, closes connections and waits for pending writes. */
  stop(): Promise<void>;
}

const DEFAULTS = {
  version: { major: 1, minor: 32 }, // kubectl on our machines bundles 1.32
  eventWindow: 10_000,
  bookmarkIntervalMs: 5_000, // client-node gives up on a silent watch after 30 s
  maxWatchSeconds: 1800,
};

export async function startApiServer(opts: ApiServerOptions): Promise<ApiServer> {
  const started = performance.now();
  await mkdir(opts.dataDir, { recursive: true });
  const [pki, tokens, store] = await Promise.all([
    loadOrCreatePki(opts.dataDir),
    Tokens.open(opts.dataDir),
    Store.open({ dataDir: opts.dataDir, eventWindow: opts.eventWindow ?? DEFAULTS.eventWindow }),
  ]);
  const kinds = new Kinds();
  const registry = new Registry(store, tokens, kinds);
  const crds = new CrdController(store, kinds, registry);
  await registry.bootstrap();
  await bootstrapRbac(registry, { clusterRole: byKind('ClusterRole'), clusterRoleBinding: byKind('ClusterRoleBinding') });
  const slices = new EndpointSliceController(registry);
  await slices.start();
  const endpoints = new EndpointsMirror(registry);
  await endpoints.start();
  const gc = new GarbageCollector(registry);
  // Every kind served now, CRD-defined ones included (the CRD controller defined them above).
  gc.start(kinds.all());

  const ctx: HandlerContext = {
    registry,
    tokens,
    authorizer: new Authorizer(store),
    version: opts.kubernetesVersion ?? DEFAULTS.version,
    watch: { bookmarkIntervalMs: opts.bookmarkIntervalMs ?? DEFAULTS.bookmarkIntervalMs, maxBufferedBytes: 16 * 1024 * 1024 },
    maxWatchSeconds: opts.maxWatchSeconds ?? DEFAULTS.maxWatchSeconds,
    watches: new Set(),
  };
  const server: Server = createServer({ key: pki.keyPem, cert: pki.certPem, keepAliveTimeout: 65_000 }, createHandler(ctx));
  server.on('upgrade', createUpgradeHandler(ctx));
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const url = `https://127.0.0.1:${port}`;
  log.info({ url, ms: Math.round(performance.now() - started), resourceVersion: store.resourceVersion }, 'API server listening');

  let stopping: Promise<void> | undefined;
  return {
    url,
    port,
    caCertPem: pki.caCertPem,
    adminToken: tokens.adminToken,
    async writeKubeconfig(path, k = {}) {
      const user = k.user ?? 'admin';
      const config = {
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'mesh-local', cluster: { server: url, 'certificate-authority-data': Buffer.from(pki.caCertPem).toString('base64') } }],
        users: [{ name: user, user: { token: k.token ?? tokens.adminToken } }],
        contexts: [{ name: 'mesh-local', context: { cluster: 'mesh-local', user, ...(k.namespace ? { namespace: k.namespace } : {}) } }],
        'current-context': 'mesh-local',
        preferences: {},
      };
      await mkdir(dirname(path), { recursive: true });
      await writeFileAtomic(path, yaml.dump(config), 0o600);
    },
    issueServiceAccountToken(namespace, name, o = {}) {
      const sa = registry.get(byKind('ServiceAccount'), namespace, name);
      return tokens.issue({ namespace, name, uid: sa.metadata.uid! }, { audiences: o.audiences, expirationSeconds: o.expirationSeconds ?? 24 * 3600 }).token;
    },
    setPodStreams(streams) {
      ctx.streams = streams;
    },
    stop() {
      stopping ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const stopWatch of [...ctx.watches]) stopWatch();
        server.closeIdleConnections();
        // Give in-flight requests a moment, then cut what is left (kept-alive sockets, slow bodies).
        const cut = setTimeout(() => {
          for (const s of sockets) s.destroy();
        }, 1000);
        await closed;
        clearTimeout(cut);
        await slices.stop();
        await gc.stop();
        await endpoints.stop();
        await crds.stop();
        await store.close();
        log.info({ url }, 'API server stopped');
      })();
      return stopping;
    },
  };
}
