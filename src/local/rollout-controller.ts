// The local cluster's controller replicas, as the controller Deployment runs them on a real
// cluster: N processes (src/controller/main.ts with --waypoint-template) that elect a leader on the Lease
// mesh-system/mesh-controller, behind one ServiceFront — the Service every node, waypoint and
// meshctl dials — so that a node's config stream may land on any replica.
//
// rollout() replaces them as a Deployment rollout with maxSurge 1 and maxUnavailable 0 does: for
// each replica, start the new one, wait until it serves, put it behind the Service, take the old
// one out, and only then SIGTERM the old one, which gives the Lease away and closes its streams;
// the nodes reconnect through the Service to a replica that serves the same model and resume
// from their versions. A replica that dies unasked is replaced, as its ReplicaSet would.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { logger } from '../common/log.ts';
import { hostEnv } from '../common/settings.ts';
import { ServiceFront } from './service-front.ts';

const log = logger('local');
const REPLICA = fileURLToPath(new URL('../controller/main.ts', import.meta.url));
/** How long a replica may take to serve (informers synced, model built, listeners up). */
const START_TIMEOUT_MS = 30_000;
/** terminationGracePeriodSeconds of the controller pod: then it is killed. */
const STOP_GRACE_MS = 15_000;

export interface ReplicaPorts {
  readonly xds: number;
  readonly ca: number;
  readonly relay: number;
  /** The service map (meshctl dashboard); 0 when it is not served. */
  readonly dashboard: number;
}

export interface ControllerReplica {
  /** The pod name it stands for (MESH_POD_NAME), e.g. mesh-controller-3. */
  readonly name: string;
  /** Its holderIdentity in the Lease. */
  readonly identity: string;
  readonly pid: number;
  readonly ports: ReplicaPorts;
  readonly child: ChildProcess;
}

/** One replica replaced by a rollout. */
export interface ReplicaReplacement {
  readonly from: string;
  readonly to: string;
  readonly fromPid: number;
  readonly toPid: number;
  /** From the new replica's start until it served (then it joined the Service). */
  readonly handoverMs: number;
  /** From the old replica's SIGTERM until it exited. */
  readonly stopMs: number;
  readonly code: number | null;
}

export interface ControllerReplicasOptions {
  readonly stateDir: string;
  /** A kubeconfig with the controller's own credential (its service account's token file). */
  readonly kubeconfig: string;
  /** The waypoint pod template (JSON) the replicas deploy waypoints with. */
  readonly waypointTemplate: string;
  /** The replicas' MESH_* settings besides the ones set here (log level, TTLs, lease timings). */
  readonly settings: Readonly<Record<string, string>>;
  readonly onProgress?: (m: string) => void;
  /** Called whenever the set of running replicas changed (the daemon records PIDs). */
  readonly onChange?: () => void;
}

export class ControllerReplicas {
  readonly front: ServiceFront;
  private readonly opts: ControllerReplicasOptions;
  private live: ControllerReplica[] = [];
  /** Replicas this code stops on purpose; any other exit is a crash, and gets a replacement. */
  private readonly leaving = new Set<ControllerReplica>();
  private serial = 0;
  private stopping = false;
  private rolling: Promise<unknown> = Promise.resolve();

  private constructor(front: ServiceFront, opts: ControllerReplicasOptions) {
    this.front = front;
    this.opts = opts;
  }

  /** Starts `count` replicas behind a new front, and waits until they all serve. */
  static async start(count: number, opts: ControllerReplicasOptions): Promise<ControllerReplicas> {
    if (!Number.isInteger(count) || count < 1) throw new Error(`controller replicas must be a whole number ≥ 1, not ${count}`);
    const front = await ServiceFront.listen({ xds: 0, ca: 0, relay: 0, dashboard: 0 });
    const r = new ControllerReplicas(front, opts);
    try {
      const started = await Promise.all(Array.from({ length: count }, () => r.spawnReplica()));
      r.live.push(...started);
      r.publish();
    } catch (e) {
      await r.stop();
      throw e;
    }
    return r;
  }

  get replicas(): readonly ControllerReplica[] {
    return this.live;
  }

  /** The Service's ports, which the nodes and waypoints dial. */
  get ports(): ReplicaPorts {
    return { xds: this.front.port('xds'), ca: this.front.port('ca'), relay: this.front.port('relay'), dashboard: this.front.port('dashboard') };
  }

  private publish(): void {
    // A replica without the service map (it could not listen) is not sent its connections.
    this.front.setEndpoints(this.live.filter((r) => !this.leaving.has(r)).map((r) => ({ id: r.name, ports: Object.fromEntries(Object.entries(r.ports).filter(([, p]) => p > 0)) })));
    this.opts.onChange?.();
  }

  private progress(m: string): void {
    log.info(m);
    this.opts.onProgress?.(m);
  }

  private async spawnReplica(): Promise<ControllerReplica> {
    const name = `mesh-controller-${++this.serial}`;
    const child = spawn(process.execPath, [REPLICA, '--waypoint-template', this.opts.waypointTemplate], {
      env: {
        ...hostEnv(),
        ...this.opts.settings,
        KUBECONFIG: this.opts.kubeconfig,
        MESH_POD_NAME: name,
        MESH_LEADER_ELECTION: 'true',
        // Each replica on free loopback ports; the front is what others dial.
        MESH_LISTEN_HOST: '127.0.0.1',
        MESH_XDS_PORT: '0',
        MESH_CA_PORT: '0',
        MESH_RELAY_HOST: '127.0.0.1',
        MESH_RELAY_PORT: '0',
        MESH_DASHBOARD_PORT: '0',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const file = join(this.opts.stateDir, 'logs', 'mesh', `${name}.log`);
    const sink = createWriteStream(file, { flags: 'a' });
    let tail = '';
    const take = (d: Buffer) => {
      sink.write(d);
      if (tail.length < 1 << 20) tail += String(d);
    };
    child.stdout!.on('data', take);
    child.stderr!.on('data', take);
    child.once('close', () => sink.end());
    const listening = await new Promise<{ xdsPort: number; caPort: number; relayPort: number; dashboardPort?: number; identity: string }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`controller replica ${name} did not serve within ${START_TIMEOUT_MS / 1000} s (log: ${file}): ${tail.slice(-1500)}`)), START_TIMEOUT_MS);
      const look = () => {
        const line = tail.split('\n').find((l) => l.includes('"msg":"listening"') && l.includes('xdsPort'));
        if (!line) return;
        clearTimeout(timer);
        child.stdout!.off('data', look);
        resolve(JSON.parse(line) as { xdsPort: number; caPort: number; relayPort: number; dashboardPort?: number; identity: string });
      };
      child.stdout!.on('data', look);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`controller replica ${name} exited (${signal ?? code}) before it served (log: ${file}): ${tail.slice(-1500)}`));
      });
    }).catch((e: Error) => {
      child.kill('SIGKILL');
      throw e;
    });
    tail = '';
    const replica: ControllerReplica = { name, identity: listening.identity, pid: child.pid!, ports: { xds: listening.xdsPort, ca: listening.caPort, relay: listening.relayPort, dashboard: listening.dashboardPort ?? 0 }, child };
    child.once('exit', (code, signal) => this.exited(replica, code, signal));
    this.progress(`controller replica ${name} serves (pid ${child.pid}, lease identity ${replica.identity})`);
    return replica;
  }

  private exited(r: ControllerReplica, code: number | null, signal: NodeJS.Signals | null): void {
    const wasLive = this.live.includes(r);
    this.live = this.live.filter((x) => x !== r);
    if (this.leaving.delete(r) || this.stopping || !wasLive) {
      this.publish();
      return;
    }
    // Out of the Service at once (its readiness would fail), and replaced, as a ReplicaSet does.
    this.publish();
    this.progress(`controller replica ${r.name} exited unasked (${signal ?? `code ${code}`}); starting a replacement`);
    this.rolling = this.rolling
      .then(async () => {
        if (this.stopping) return;
        const fresh = await this.spawnReplica();
        if (this.stopping) return this.terminate(fresh);
        this.live.push(fresh);
        this.publish();
      })
      .catch((e: Error) => this.progress(`replacing controller replica ${r.name} failed: ${e.message}`));
  }

  /** Sends `signal` to a replica (tests: SIGKILL the leader). */
  kill(name: string, signal: NodeJS.Signals): void {
    const r = this.live.find((x) => x.name === name);
    if (!r) throw new Error(`no controller replica ${name} (running: ${this.live.map((x) => x.name).join(', ') || 'none'})`);
    r.child.kill(signal);
  }

  /** The replica whose Lease identity is `identity`. */
  byIdentity(identity: string): ControllerReplica | undefined {
    return this.live.find((r) => r.identity === identity);
  }

  /**
   * Replaces every replica, one at a time: new one serving and behind the Service before the old
   * one leaves it and is stopped. Returns the replacements in order.
   */
  rollout(onProgress?: (m: string) => void): Promise<ReplicaReplacement[]> {
    const run = async () => {
      const say = (m: string) => {
        this.progress(m);
        onProgress?.(m);
      };
      const done: ReplicaReplacement[] = [];
      for (const old of [...this.live]) {
        if (this.stopping) break;
        if (!this.live.includes(old)) continue; // it crashed meanwhile and was replaced
        say(`starting a new controller replica to replace ${old.name}`);
        const started = Date.now();
        const fresh = await this.spawnReplica();
        const handoverMs = Date.now() - started;
        this.live.push(fresh);
        this.leaving.add(old);
        this.publish();
        say(`${fresh.name} is behind the Service; stopping ${old.name} (SIGTERM: it releases the Lease and closes its streams)`);
        const stopping = Date.now();
        await this.terminate(old);
        done.push({ from: old.name, to: fresh.name, fromPid: old.pid, toPid: fresh.pid, handoverMs, stopMs: Date.now() - stopping, code: old.child.exitCode });
      }
      say(`rolled ${done.length} controller replica${done.length === 1 ? '' : 's'}: ${done.map((d) => `${d.from} → ${d.to}`).join(', ')}`);
      return done;
    };
    const p = this.rolling.then(run);
    this.rolling = p.catch(() => undefined);
    return p;
  }

  private async terminate(r: ControllerReplica): Promise<void> {
    this.leaving.add(r);
    if (r.child.exitCode !== null || r.child.signalCode !== null) return;
    const exited = once(r.child, 'exit');
    r.child.kill('SIGTERM');
    const timer = setTimeout(() => r.child.kill('SIGKILL'), STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);
  }

  pids(): number[] {
    return this.live.map((r) => r.pid);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.rolling.catch(() => undefined);
    await Promise.all(this.live.map((r) => this.terminate(r)));
    this.live = [];
    await this.front.close();
  }
}
