// `meshctl check --pre-install`: reads the cluster (version, access reviews, listed objects) and
// runs `meshctl check` on each node in a short-lived privileged pod, deleted afterwards.
import type * as k8s from '@kubernetes/client-node';
import type { CheckResult } from './checks.ts';
import { apiError, apiMessage, httpStatus } from './kube.ts';
import { checkConflicts, checkKubernetesVersion, checkRbac, imagePullProblem, installPermissions, nodeResults, nodeSkipped } from './precheck.ts';

export interface PreInstallOptions {
  namespace: string;
  nodeImage: string;
  timeoutMs: number;
  cniConfDir: string;
}

export async function preInstall(kc: k8s.KubeConfig, o: PreInstallOptions): Promise<CheckResult[]> {
  const k = await import('@kubernetes/client-node');
  const results: CheckResult[] = [];
  try {
    results.push(checkKubernetesVersion(await kc.makeApiClient(k.VersionApi).getCode()));
  } catch (e) {
    return [{ name: 'kubernetes-version', status: 'fail', detail: apiError('reading /version', kc, e).message, fix: 'check --kubeconfig/--context and that the API server is reachable' }];
  }
  const authz = kc.makeApiClient(k.AuthorizationV1Api);
  const answers = await Promise.all(
    installPermissions().map(async (permission) => {
      try {
        const r = await authz.createSelfSubjectAccessReview({
          body: { apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectAccessReview', spec: { resourceAttributes: { verb: permission.verb, group: permission.group, resource: permission.resource, ...(permission.namespaced ? { namespace: o.namespace } : {}) } } },
        });
        return { permission, allowed: r.status?.allowed === true };
      } catch (e) {
        return { permission, allowed: false, error: (e as Error).message };
      }
    }),
  );
  results.push(checkRbac(answers, o.namespace));
  const core = kc.makeApiClient(k.CoreV1Api);
  const apps = kc.makeApiClient(k.AppsV1Api);
  try {
    const [ns, ds] = await Promise.all([core.listNamespace(), apps.listDaemonSetForAllNamespaces()]);
    let ciliumConfig: Record<string, string> | undefined;
    try {
      ciliumConfig = (await core.readNamespacedConfigMap({ name: 'cilium-config', namespace: 'kube-system' })).data;
    } catch {
      ciliumConfig = undefined;
    }
    results.push(
      ...checkConflicts(
        {
          namespaces: ns.items.map((n) => n.metadata?.name ?? ''),
          daemonSets: ds.items.map((d) => ({ namespace: d.metadata?.namespace ?? '', name: d.metadata?.name ?? '' })),
          ...(ciliumConfig ? { ciliumConfig } : {}),
        },
        o.namespace,
      ),
    );
  } catch (e) {
    results.push({ name: 'conflicts', status: 'warn', detail: `existing installs, Istio and Cilium not checked: ${apiMessage(e)}`, fix: 'allow listing namespaces and DaemonSets (a cluster admin can)' });
  }
  try {
    // The install namespace when it exists already, else default (it is created by the install).
    const podNs = await core.readNamespace({ name: o.namespace }).then(() => o.namespace, () => 'default');
    results.push(...(await nodeChecks(core, o, podNs)));
  } catch (e) {
    results.push(nodeSkipped('*', `cannot list the nodes: ${apiMessage(e)}`, 'allow listing nodes (a cluster admin can)'));
  }
  return results;
}

async function nodeChecks(core: k8s.CoreV1Api, o: PreInstallOptions, namespace: string): Promise<CheckResult[]> {
  const nodes = (await core.listNode()).items.map((n) => n.metadata?.name ?? '').filter(Boolean);
  // No node registered: one unpinned pod still says whether anything schedules it.
  const targets: Array<string | undefined> = nodes.length ? nodes : [undefined];
  // Ctrl-C while waiting must not leave privileged pods behind.
  const live = new Set<string>();
  const interrupted = (signal: NodeJS.Signals) => {
    void Promise.allSettled([...live].map((name) => core.deleteNamespacedPod({ name, namespace, gracePeriodSeconds: 0 }))).then(() => {
      process.stderr.write(`meshctl: interrupted; deleted ${live.size} node pod(s) in ${namespace}\n`);
      process.exit(signal === 'SIGINT' ? 130 : 143);
    });
  };
  process.once('SIGINT', interrupted).once('SIGTERM', interrupted);
  try {
    const per = await Promise.all(targets.map((node) => onNode(core, o, namespace, node, live)));
    return per.flat();
  } finally {
    process.off('SIGINT', interrupted).off('SIGTERM', interrupted);
  }
}

async function onNode(core: k8s.CoreV1Api, o: PreInstallOptions, namespace: string, node: string | undefined, live: Set<string>): Promise<CheckResult[]> {
  const label = node ?? '(any)';
  const name = `mesh-precheck-${(node ?? 'any').replace(/[^a-z0-9-]/g, '-').slice(0, 40)}-${Math.random().toString(36).slice(2, 7)}`;
  const hostPath = (n: string, path: string, mountPath: string) => ({ vol: { name: n, hostPath: { path } }, mount: { name: n, mountPath, readOnly: true } });
  const mounts = [hostPath('cni', o.cniConfDir, '/host/cni'), hostPath('bpffs', '/sys/fs/bpf', '/sys/fs/bpf')];
  const pod: k8s.V1Pod = {
    metadata: { name, namespace, labels: { 'app.kubernetes.io/name': 'mesh-precheck' } },
    spec: {
      ...(node ? { nodeName: node } : {}),
      hostPID: true,
      hostNetwork: true,
      restartPolicy: 'Never',
      tolerations: [{ operator: 'Exists' }],
      volumes: mounts.map((m) => m.vol),
      containers: [
        {
          name: 'check',
          image: o.nodeImage,
          // The node image runs node (ENTRYPOINT) on the entry given here; node-check.ts is in it (src/images/build.ts).
          args: ['src/cli/node-check.ts', '--cni-conf-dir', '/host/cni'],
          securityContext: { privileged: true },
          volumeMounts: mounts.map((m) => m.mount),
        },
      ],
    },
  };
  try {
    await core.createNamespacedPod({ namespace, body: pod });
    live.add(name);
  } catch (e) {
    return [nodeSkipped(label, `cannot create the node pod in ${namespace}: ${(e as Error).message}`, 'allow creating privileged pods (Pod Security admission: privileged) in that namespace')];
  }
  const deadline = Date.now() + o.timeoutMs;
  try {
    for (;;) {
      const p = await core.readNamespacedPod({ name, namespace });
      const phase = p.status?.phase;
      if (phase === 'Succeeded' || phase === 'Failed') {
        const logs = await core.readNamespacedPodLog({ name, namespace, container: 'check' });
        return nodeResults(node ?? p.spec?.nodeName ?? 'node', String(logs));
      }
      const pull = imagePullProblem(p.status?.containerStatuses);
      if (pull) return [nodeSkipped(label, `the node image ${o.nodeImage} is not available (${pull})`, 'push the node image where the nodes can pull it (make images), or pass --node-image')];
      if (Date.now() >= deadline) {
        const secs = o.timeoutMs / 1000;
        const why =
          phase && phase !== 'Pending'
            ? `the pod did not finish within ${secs}s (phase ${phase})`
            : node
              ? `the pod on ${node} did not start within ${secs}s (phase ${phase ?? 'none'}: no kubelet ran it)`
              : p.spec?.nodeName
                ? `the pod on ${p.spec.nodeName} did not start within ${secs}s`
                : `the pod was not scheduled within ${secs}s (no nodes registered)`;
        const fix = node || p.spec?.nodeName ? 'check that the node is Ready and its kubelet runs pods, or raise --timeout' : 'the cluster has no nodes (an API server alone runs no pods): join nodes, then rerun';
        return [nodeSkipped(label, why, fix)];
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  } catch (e) {
    return [nodeSkipped(label, `reading the node pod failed: ${(e as Error).message}`, 'rerun; check the API server')];
  } finally {
    await core.deleteNamespacedPod({ name, namespace, gracePeriodSeconds: 0 }).catch((e: unknown) => {
      if (httpStatus(e) !== 404) process.stderr.write(`meshctl: could not delete pod ${namespace}/${name}: ${(e as Error).message}\n`);
    });
    live.delete(name);
  }
}
