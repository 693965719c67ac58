// The whole mesh on a local cluster, for end-to-end tests: the cluster, and the mesh as
// `meshctl dev up` runs it (src/local/mesh.ts: the controller in this process, per node the agent
// and ztunnel as real processes). Everything is torn down after the test and checked for leftovers.
import type { TracingSettings } from '../../src/tracing/index.ts';
import type { ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { promisify } from 'node:util';
import type * as k8s from '@kubernetes/client-node';
import type { Controller } from '../../src/controller/controller.ts';
import { layout, openPinnedMap } from '../../src/datapath/index.ts';
import { LocalMesh, waitFor } from '../../src/local/mesh.ts';
import { LocalCluster } from '../../src/local/runtime/cluster.ts';
import { assertNothingLeaked, uniquePrefix } from './topology.ts';

export { SERVER_NAME } from '../../src/local/mesh.ts';
export { waitFor };

const execFileP = promisify(execFile);

export interface Mesh {
  prefix: string;
  stateDir: string;
  cluster: LocalCluster;
  core: k8s.CoreV1Api;
  controller: Controller;
  root: string;
  local: LocalMesh;
  kubectl(...args: string[]): Promise<{ stdout: string; stderr: string }>;
  tokenFor(node: string): Promise<string>;
  bpffs(node: string): string;
  enrolledUids(node: string): string[];
  /** (Re)starts the controller on the same ports. */
  restartController(): Promise<void>;
  processes: Map<string, ChildProcess>;
  logs: Map<string, string>;
  startProcess(kind: 'agent' | 'ztunnel', node: string, opts?: { drainTimeoutMs?: number }): Promise<ChildProcess>;
  /** A ztunnel's metrics or readiness port, from its log. */
  ztunnelPort(node: string, which: 'admin' | 'metrics' | 'readiness'): number;
}

/** Where cleanups go: an ava test's `t`, or anything with a teardown(fn) (the demo). */
export interface Teardown {
  teardown(fn: () => Promise<void> | void): void;
}

export async function startMesh(
  t: Teardown,
  opts: {
    nodes?: number;
    ztunnel?: boolean;
    prefix?: string;
    workloadCertTtlMs?: number;
    mark?: number;
    tracing?: Partial<TracingSettings>;
    l4SpansEndpoint?: string;
    ztunnelNodeOptions?: string;
    ztunnelEnv?: Readonly<Record<string, string>>;
    waypointNodeFlags?: readonly string[];
    waypointEnv?: Readonly<Record<string, string>>;
    ztunnelFromSource?: boolean;
    controllerReplicas?: number;
    controllerSettings?: Record<string, string>;
  } = {},
): Promise<Mesh> {
  const prefix = opts.prefix ?? uniquePrefix();
  const stateDir = mkdtempSync(`/tmp/mesh-${prefix}-mesh-`);
  const held: { cluster?: LocalCluster; local?: LocalMesh } = {};
  t.teardown(async () => {
    await held.local?.stop();
    await held.cluster?.stop();
    rmSync(stateDir, { recursive: true, force: true });
    const left = await assertNothingLeaked(prefix);
    if (left.length) throw new Error(`left on the host: ${left.join('; ')}`);
  });
  const cluster = await LocalCluster.start({ stateDir, nodes: opts.nodes ?? 2, prefix });
  held.cluster = cluster;
  const local = await LocalMesh.start(cluster, {
    stateDir,
    prefix,
    ztunnel: opts.ztunnel ?? false,
    ...(opts.workloadCertTtlMs ? { workloadCertTtlMs: opts.workloadCertTtlMs } : {}),
    ...(opts.mark !== undefined ? { mark: opts.mark } : {}),
    ...(opts.tracing ? { tracing: opts.tracing } : {}),
    ...(opts.l4SpansEndpoint ? { l4SpansEndpoint: opts.l4SpansEndpoint } : {}),
    ...(opts.ztunnelNodeOptions ? { ztunnelNodeOptions: opts.ztunnelNodeOptions } : {}),
    ...(opts.ztunnelEnv ? { ztunnelEnv: opts.ztunnelEnv } : {}),
    ...(opts.waypointNodeFlags ? { waypointNodeFlags: opts.waypointNodeFlags } : {}),
    ...(opts.waypointEnv ? { waypointEnv: opts.waypointEnv } : {}),
    ...(opts.ztunnelFromSource ? { ztunnelFromSource: true } : {}),
    ...(opts.controllerReplicas ? { controllerReplicas: opts.controllerReplicas, controllerSettings: opts.controllerSettings ?? {} } : {}),
  });
  held.local = local;
  const env = { ...process.env, KUBECONFIG: cluster.kubeconfigPath };
  return {
    prefix,
    stateDir,
    cluster,
    core: local.core,
    get controller() {
      return local.controller;
    },
    root: local.root,
    local,
    kubectl: (...args: string[]) => execFileP('kubectl', args, { env }),
    tokenFor: (node: string) => local.tokenFor(node),
    bpffs: (node: string) => local.bpffs(node),
    enrolledUids: (node: string) => {
      const uids = openPinnedMap(`${local.bpffs(node)}/maps/mesh_pod_uids`);
      const pods = openPinnedMap(`${local.bpffs(node)}/maps/mesh_pods`);
      try {
        return uids
          .keys()
          .filter((k) => pods.get(k))
          .map((k) => layout.decodeUid(uids.get(k)!))
          .sort();
      } finally {
        uids.close();
        pods.close();
      }
    },
    restartController: () => local.restartController(),
    processes: local.processes,
    logs: local.logs,
    startProcess: (kind, node, opts) => local.startProcess(kind, node, opts),
    ztunnelPort: (node, which) => local.ztunnelPort(node, which),
  };
}
