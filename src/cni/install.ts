// The CNI installer (istio-cni's install-cni, in our terms): runs in the node DaemonSet with the
// host's CNI conf and bin dirs mounted. It puts the self-contained plugin (bundle.ts: Node, its
// libraries and the plugin's files, behind a small launcher) in the bin dir, writes the
// plugin's kubeconfig (the API server and this service account's token) beside the conf files,
// and appends our entry to the primary network's chain. The primary CNI may rewrite its file at
// any time (Calico and Cilium do when they restart): the installer watches the dir and puts the
// entry back. On SIGTERM (uninstall) it takes the entry and its files out again.
import { type FSWatcher, chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, watch, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { logger } from '../common/log.ts';
import { NODE_SETTINGS } from '../common/shared-settings.ts';
import { ConfigError, defineSettings, duration, type Env, list, str } from '../common/settings.ts';
import { type BundlePlan, launcherScript, loadManifest, planBundle } from './bundle.ts';
import { asConflist, conflistName, hasPlugin, insertPlugin, PLUGIN_TYPE, primaryConfFile, removePlugin } from './conflist.ts';

const log = logger('cni-install');

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
/** How long an old plugin version stays after the launcher moved on: an ADD that read the old
 * launcher a moment before the switch still finds its files. */
const RETIRE_AFTER_MS = 30_000;

let ownBundle: BundlePlan | undefined;
/** This installation's plugin bundle (the node image's, or this checkout's), planned once. */
function defaultBundle(): BundlePlan {
  ownBundle ??= planBundle(loadManifest());
  return ownBundle;
}

export const CNI_INSTALL_SETTINGS = defineSettings('the CNI installer', {
  confDir: str('MESH_CNI_CONF_DIR', "the node's CNI network configuration dir, where the primary conflist is", {
    default: '/etc/cni/net.d',
    why: 'where containerd and CRI-O look by default',
  }),
  binDir: str('MESH_CNI_BIN_DIR', "the node's CNI plugin dir, where the `mesh-cni` launcher and its bundle (`mesh-cni.d/`) go", {
    default: '/opt/cni/bin',
    why: 'where containerd and CRI-O look by default',
  }),
  kubeconfig: str('MESH_CNI_KUBECONFIG', "the plugin's kubeconfig that the installer writes (a host path the plugin reads)", {
    default: (v) => join(v.confDir as string, 'mesh-cni-kubeconfig'),
    why: "beside the conf files, as istio-cni's ZZZ-istio-cni-kubeconfig; no .conf suffix, so runtimes skip it",
    shown: '`mesh-cni-kubeconfig` in `MESH_CNI_CONF_DIR`',
  }),
  apiServer: str('MESH_CNI_API_SERVER', 'the API server URL written into the kubeconfig', {
    optional: true,
    shown: '`https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`',
  }),
  tokenFile: str('MESH_CNI_TOKEN_FILE', "the service account token copied into the kubeconfig (re-copied when it rotates)", {
    default: `${SA_DIR}/token`,
    why: "the pod's projected service account token",
  }),
  caFile: str('MESH_CNI_CA_FILE', "the API server's CA certificate written into the kubeconfig", {
    default: `${SA_DIR}/ca.crt`,
    why: "the pod's projected cluster CA",
  }),
  agentSocket: NODE_SETTINGS.controlSocket,
  excludeNamespaces: list('MESH_CNI_EXCLUDE_NAMESPACES', 'namespaces whose pods the plugin passes through without asking the API', {
    default: Object.freeze(['kube-system', 'mesh-system']) as readonly string[],
    why: "the cluster's own pods and the mesh's: never enrolled, and they must start when the mesh cannot",
  }),
  waitZtunnel: duration('MESH_CNI_WAIT_ZTUNNEL', 'how long the plugin waits for ztunnel to serve a pod before ADD fails (and the runtime retries); `0s` enrols without waiting', { minMs: 0, maxMs: 600_000 }, {
    default: 5000,
    why: 'ztunnel serves a new pod in milliseconds and restarts in ~0.5 s; longer means something is wrong',
  }),
  recheck: duration('MESH_CNI_RECHECK', 'how often the installer checks its entry and the token besides watching the dir', { minMs: 100 }, {
    default: 5000,
    why: 'a safety net for missed watch events; the token rotates hourly at most',
  }),
});

export interface InstallConfig {
  readonly confDir: string;
  readonly binDir: string;
  readonly kubeconfig: string;
  readonly apiServer: string;
  readonly tokenFile: string;
  readonly caFile: string;
  readonly agentSocket: string;
  readonly excludeNamespaces: readonly string[];
  readonly waitZtunnelMs: number;
  readonly recheckMs: number;
  /** The plugin to install: the node image's bundle, or this checkout's. */
  readonly bundle: BundlePlan;
}

export function loadInstallConfig(env: Env = process.env, bundle?: BundlePlan): InstallConfig {
  const s = CNI_INSTALL_SETTINGS.read(env);
  const host = env['KUBERNETES_SERVICE_HOST'];
  const port = env['KUBERNETES_SERVICE_PORT'] ?? '443';
  const apiServer = s.apiServer ?? (host ? `https://${host.includes(':') ? `[${host}]` : host}:${port}` : undefined);
  if (!apiServer) throw new ConfigError('MESH_CNI_API_SERVER is not set and neither is KUBERNETES_SERVICE_HOST: the installer needs the API server the plugin talks to');
  return Object.freeze({
    confDir: s.confDir,
    binDir: s.binDir,
    kubeconfig: s.kubeconfig,
    apiServer,
    tokenFile: s.tokenFile,
    caFile: s.caFile,
    agentSocket: s.agentSocket,
    excludeNamespaces: s.excludeNamespaces,
    waitZtunnelMs: s.waitZtunnel,
    recheckMs: s.recheck,
    bundle: bundle ?? defaultBundle(),
  });
}

/** Our entry in the chain. */
export function pluginEntry(cfg: InstallConfig): Record<string, unknown> {
  return { type: PLUGIN_TYPE, agentSocket: cfg.agentSocket, kubeconfig: cfg.kubeconfig, excludeNamespaces: cfg.excludeNamespaces, waitZtunnelMs: cfg.waitZtunnelMs };
}

/** Written aside and renamed: a runtime never reads half a file. The temporary name starts with a
 * dot and has no .conf suffix, so no runtime takes it for a network. */
function writeAtomic(path: string, text: string, mode: number): void {
  const dir = path.slice(0, path.lastIndexOf('/') + 1);
  const tmp = `${dir}.${path.slice(dir.length)}.mesh-tmp`;
  writeFileSync(tmp, text, { mode });
  renameSync(tmp, path);
}

function readIf(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

export function kubeconfigText(cfg: InstallConfig): string {
  const token = readFileSync(cfg.tokenFile, 'utf8').trim();
  const ca = readFileSync(cfg.caFile);
  // JSON is YAML: no YAML writer needed.
  return `${JSON.stringify(
    {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'mesh-cni', cluster: { server: cfg.apiServer, 'certificate-authority-data': ca.toString('base64') } }],
      users: [{ name: 'mesh-cni', user: { token } }],
      contexts: [{ name: 'mesh-cni', context: { cluster: 'mesh-cni', user: 'mesh-cni' } }],
      'current-context': 'mesh-cni',
    },
    null,
    2,
  )}\n`;
}

export interface InstallState {
  /** The conf file that holds our entry, if any yet. */
  conflist?: string;
  /** What this pass changed. */
  changed: string[];
}

export class Installer {
  readonly cfg: InstallConfig;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private pending: NodeJS.Timeout | undefined;
  private waitingLogged = false;
  /** Plugin versions the launcher no longer names, and since when. */
  private readonly retired = new Map<string, number>();
  private readonly retireAfterMs: number;

  constructor(cfg: InstallConfig, opts: { retireAfterMs?: number } = {}) {
    this.cfg = cfg;
    this.retireAfterMs = opts.retireAfterMs ?? RETIRE_AFTER_MS;
  }

  /** The bundle's version dir: copied aside and renamed into place, so a launcher never names a half-copied bundle. */
  private ensureBundle(changed: string[]): void {
    const plan = this.cfg.bundle;
    const store = join(this.cfg.binDir, `${PLUGIN_TYPE}.d`);
    const dir = join(store, plan.version);
    if (!existsSync(dir)) {
      const tmp = join(store, `.tmp-${plan.version}-${process.pid}`);
      rmSync(tmp, { recursive: true, force: true });
      for (const f of plan.files) {
        const to = join(tmp, f.target);
        mkdirSync(dirname(to), { recursive: true });
        // A copy, never a link: the host's bin dir is on another filesystem than the image on a
        // real node, and a link would let a change to one change the other.
        copyFileSync(f.source, to);
        chmodSync(to, f.mode);
      }
      renameSync(tmp, dir);
      changed.push(dir);
      log.info({ version: plan.version, dir, mbytes: Math.round(plan.bytes / 1e6) }, 'installed the mesh CNI plugin bundle');
    }
    const bin = join(this.cfg.binDir, PLUGIN_TYPE);
    const launcher = launcherScript(plan, PLUGIN_TYPE);
    if (readIf(bin) !== launcher) {
      writeAtomic(bin, launcher, 0o755);
      changed.push(bin);
    }
    // Older versions (an upgrade's) and copies an interrupted installer left: gone once nothing can
    // be starting from them.
    const now = Date.now();
    for (const name of readdirSync(store)) {
      if (name === plan.version) continue;
      const since = this.retired.get(name) ?? now;
      this.retired.set(name, since);
      if (now - since >= this.retireAfterMs) {
        rmSync(join(store, name), { recursive: true, force: true });
        this.retired.delete(name);
        changed.push(join(store, name));
        log.info({ version: name }, 'removed an old mesh CNI plugin version');
      }
    }
  }

  /**
   * One pass: the plugin, the kubeconfig and our entry in the primary conflist, each written
   * only when it differs. Idempotent: a second pass changes nothing.
   */
  ensure(): InstallState {
    const c = this.cfg;
    const changed: string[] = [];
    // The plugin before the conf entry: a runtime never finds the entry without the plugin.
    this.ensureBundle(changed);
    const kc = kubeconfigText(c);
    if (readIf(c.kubeconfig) !== kc) {
      writeAtomic(c.kubeconfig, kc, 0o600);
      changed.push(c.kubeconfig);
    }
    const primary = primaryConfFile(readdirSync(c.confDir));
    if (!primary) {
      if (!this.waitingLogged) log.info({ confDir: c.confDir }, 'no CNI network configuration yet; waiting for the primary CNI to write one');
      this.waitingLogged = true;
      return { changed };
    }
    this.waitingLogged = false;
    const path = join(c.confDir, primary);
    // The primary network moved to another file (a CNI replaced by another): our entry goes with it.
    for (const name of readdirSync(c.confDir)) {
      if (name === primary || !/\.(conflist|conf|json)$/.test(name)) continue;
      const other = join(c.confDir, name);
      const t = readIf(other);
      if (t === undefined) continue;
      const without = (() => {
        try {
          return removePlugin(t, other);
        } catch {
          return t;
        }
      })();
      if (without !== t) {
        writeAtomic(other, without, 0o644);
        changed.push(other);
      }
    }
    const text = readFileSync(path, 'utf8');
    const next = insertPlugin(text, path, pluginEntry(c));
    // libcni reads a chain only from a .conflist: a .conf becomes one (and the .conf goes).
    const target = primary.endsWith('.conflist') ? path : join(c.confDir, conflistName(primary));
    if (target !== path) {
      writeAtomic(target, next, 0o644);
      rmSync(path);
      changed.push(target);
      log.info({ from: path, to: target }, 'converted the primary network configuration to a conflist to chain the mesh plugin');
    } else if (next !== text) {
      writeAtomic(target, next, 0o644);
      changed.push(target);
    }
    return { conflist: target, changed };
  }

  /** Installs, then keeps the install in place until stop(). */
  start(): InstallState {
    const first = this.ensure();
    log.info({ conflist: first.conflist, changed: first.changed }, 'mesh CNI plugin installed');
    const again = () => {
      try {
        const s = this.ensure();
        if (s.changed.length) log.info({ conflist: s.conflist, changed: s.changed }, 'mesh CNI plugin re-installed');
      } catch (e) {
        log.warn({ err: (e as Error).message }, 'could not re-install the mesh CNI plugin; retrying');
      }
    };
    // Watch events come in bursts (write + rename): one pass shortly after the last.
    this.watcher = watch(this.cfg.confDir, () => {
      if (this.pending) clearTimeout(this.pending);
      this.pending = setTimeout(again, 50);
    });
    this.timer = setInterval(again, this.cfg.recheckMs);
    return first;
  }

  /** Stops watching (the install stays). */
  stop(): void {
    this.watcher?.close();
    if (this.timer) clearInterval(this.timer);
    if (this.pending) clearTimeout(this.pending);
  }

  /** Takes our entry out of every conf file that has it, and removes our files. */
  uninstall(): string[] {
    this.stop();
    const c = this.cfg;
    const removed: string[] = [];
    for (const name of readdirSync(c.confDir)) {
      if (!/\.(conflist|conf|json)$/.test(name)) continue;
      const path = join(c.confDir, name);
      const text = readIf(path);
      if (text === undefined) continue;
      try {
        if (!hasPlugin(asConflist(text, path))) continue;
        writeAtomic(path, removePlugin(text, path), 0o644);
        removed.push(path);
      } catch {
        // not ours to judge: a file we cannot parse holds no entry we wrote
      }
    }
    for (const f of [join(c.binDir, PLUGIN_TYPE), join(c.binDir, `${PLUGIN_TYPE}.d`), c.kubeconfig]) {
      if (existsSync(f)) {
        rmSync(f, { recursive: true, force: true });
        removed.push(f);
      }
    }
    log.info({ removed }, 'mesh CNI plugin uninstalled');
    return removed;
  }
}
