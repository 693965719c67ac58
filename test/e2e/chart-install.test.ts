// `helm install` of the chart onto a plain local cluster (`meshctl dev up --no-mesh`'s: API
// server, controllers, scheduler, kubelets), as onto a real one: the API server takes every
// object under RBAC, the DaemonSets put a node pod and a CNI installer on every node and the
// Deployment its controller pod, each with the chart's spec; `helm uninstall` takes them away
// and leaves nothing on the host. The images are set to a tag that does not exist, so nothing of the mesh runs here:
// running from `make images` is the images' test.
import * as k8s from '@kubernetes/client-node';
import test from 'ava';
import { CHART, helm } from '../helpers/helm.ts';
import { requireRoot } from '../helpers/topology.ts';
import { startTestCluster } from '../helpers/cluster.ts';
import { waitFor } from '../helpers/wait.ts';

test('helm install onto the local cluster: a node pod and a CNI installer on every node, the controller pod, all gone on uninstall', async (t) => {
  if (!(await requireRoot(t))) return;
  const { cluster, prefix, stateDir } = await startTestCluster(t, 2);
  const env = { KUBECONFIG: cluster.kubeconfigPath, HOME: stateDir, HELM_CACHE_HOME: `${stateDir}/helm/cache`, HELM_CONFIG_HOME: `${stateDir}/helm/config`, HELM_DATA_HOME: `${stateDir}/helm/data` };
  const absent = ['controller', 'node'].flatMap((c) => ['--set', `${c}.image.tag=absent-${prefix}`, '--set', `${c}.image.pullPolicy=Never`]);
  // The CNI installer's host directories in the state dir, not the host's own.
  absent.push('--set', `cni.binDir=${stateDir}/cni/bin`, '--set', `cni.confDir=${stateDir}/cni/net.d`);
  const install = await helm(['install', 'mesh', CHART, '-n', 'mesh-system', '--create-namespace', ...absent], env);
  t.is(install.code, 0, install.stderr);

  const core = cluster.kc.makeApiClient(k8s.CoreV1Api);
  const pods = (component: string) => core.listNamespacedPod({ namespace: 'mesh-system', labelSelector: `app.kubernetes.io/component=${component}` });
  const nodePods = await waitFor('a node pod on each node', async () => {
    const l = (await pods('node')).items.filter((p) => p.spec?.nodeName);
    return l.length === 2 ? l : undefined;
  });
  t.deepEqual(nodePods.map((p) => p.spec!.nodeName).sort(), cluster.kubelets.map((k) => k.node.name).sort());
  for (const p of nodePods) {
    t.true(p.spec!.hostPID);
    t.falsy(p.spec!.hostNetwork);
    t.is(p.spec!.serviceAccountName, 'mesh-node');
    t.deepEqual(p.spec!.containers.map((c) => c.name), ['agent', 'ztunnel']);
  }
  const cniPods = await waitFor('a CNI installer pod on each node', async () => {
    const l = (await pods('cni')).items.filter((p) => p.spec?.nodeName);
    return l.length === 2 ? l : undefined;
  });
  t.true(cniPods.every((p) => p.spec!.serviceAccountName === 'mesh-cni'));
  // The kubelet sets up the pod's volumes: only the trust bundle is missing, which the controller
  // (not running here) publishes — the pod waits for it, as on a real node.
  const events = await waitFor("the node pod's events", async () => {
    const l = await core.listNamespacedEvent({ namespace: 'mesh-system', fieldSelector: `involvedObject.name=${nodePods[0]!.metadata!.name}` });
    return l.items.length >= 2 ? l.items.map((e) => `${e.reason}: ${e.message}`) : undefined;
  });
  t.log(events.join('\n'));
  const mountFailures = events.filter((e) => e.includes('MountVolume.SetUp failed'));
  t.true(mountFailures.length > 0);
  t.true(mountFailures.every((e) => e.includes('volume "mesh-ca-root-cert"')), mountFailures.join('\n'));
  const ctl = await waitFor('the controller pod', async () => (await pods('controller')).items.find((p) => p.spec?.nodeName));
  t.is(ctl.spec!.serviceAccountName, 'mesh-controller');

  const uninstall = await helm(['uninstall', 'mesh', '-n', 'mesh-system'], env);
  t.is(uninstall.code, 0, uninstall.stderr);
  await waitFor('the mesh pods gone', async () => ((await core.listNamespacedPod({ namespace: 'mesh-system' })).items.length === 0 ? true : undefined), 60_000);
  t.pass();
});
