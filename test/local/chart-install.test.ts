// `helm install` of the chart onto the local API server with the real helm, as a user would onto
// a cluster (the objects only: nothing runs them here): the server takes every object, CRDs
// first; the controller's service account holds exactly the chart's rights; `helm upgrade` rolls
// a new image into the node DaemonSet; `helm uninstall` leaves only the CRDs (and the objects
// the controller made, which are its own to clean up).
import test from 'ava';
import { call, harness, kubectl } from '../helpers/apiserver.ts';
import { CHART, helm } from '../helpers/helm.ts';

const CONTROLLER = '--as=system:serviceaccount:mesh-system:mesh-controller';

test('helm install, upgrade and uninstall of the chart on the local cluster', async (t) => {
  const h = await harness(t);
  const env = { KUBECONFIG: h.kubeconfig, HOME: h.dir, HELM_CACHE_HOME: `${h.dir}/helm/cache`, HELM_CONFIG_HOME: `${h.dir}/helm/config`, HELM_DATA_HOME: `${h.dir}/helm/data` };
  const install = await helm(['install', 'mesh', CHART, '-n', 'mesh-system', '--create-namespace', '--set', 'gatewayAPI.install=true', '--set', 'controller.replicas=2'], env);
  t.is(install.code, 0, install.stderr);
  t.regex(install.stdout, /STATUS: deployed/);
  t.regex(install.stdout, /kubectl label ns X mesh\.io\/dataplane-mode=ambient/);

  // Our CRDs (crds/) and the Gateway API's (gatewayAPI.install) are served.
  for (const crd of ['authorizationpolicies.security.mesh.io', 'peerauthentications.security.mesh.io', 'trafficpolicies.networking.mesh.io', 'gateways.gateway.networking.k8s.io', 'httproutes.gateway.networking.k8s.io']) {
    t.is((await call(h.server, 'GET', `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd}`)).status, 200, crd);
  }
  const ds = (await call(h.server, 'GET', '/apis/apps/v1/namespaces/mesh-system/daemonsets/mesh-node')).body;
  t.deepEqual(ds.spec.template.spec.containers.map((c: { name: string }) => c.name), ['agent', 'ztunnel']);
  t.is((await call(h.server, 'GET', '/apis/apps/v1/namespaces/mesh-system/daemonsets/mesh-cni')).body.spec.template.spec.serviceAccountName, 'mesh-cni');
  t.is((await call(h.server, 'GET', '/apis/apps/v1/namespaces/mesh-system/deployments/mesh-controller')).body.spec.replicas, 2);

  // The controller's account: what the chart grants, and nothing more.
  const can = async (...args: string[]) => (await kubectl(h, ['auth', 'can-i', ...args, CONTROLLER])).stdout.trim();
  t.is(await can('create', 'tokenreviews.authentication.k8s.io'), 'yes');
  t.is(await can('watch', 'pods', '-A'), 'yes');
  t.is(await can('update', 'leases.coordination.k8s.io/mesh-controller', '-n', 'mesh-system'), 'yes');
  t.is(await can('get', 'secrets/mesh-ca', '-n', 'mesh-system'), 'yes');
  t.is(await can('list', 'secrets', '-n', 'mesh-system'), 'no');
  t.is(await can('get', 'secrets', '-n', 'default'), 'no');
  t.is(await can('delete', 'pods', '-A'), 'no');
  // The node account has no API rights at all; the CNI plugin's may only get pods and namespaces.
  t.is((await kubectl(h, ['auth', 'can-i', 'list', 'pods', '--as=system:serviceaccount:mesh-system:mesh-node'])).stdout.trim(), 'no');
  const cni = async (...args: string[]) => (await kubectl(h, ['auth', 'can-i', ...args, '--as=system:serviceaccount:mesh-system:mesh-cni'])).stdout.trim();
  t.is(await cni('get', 'pods', '-n', 'default'), 'yes');
  t.is(await cni('get', 'namespaces'), 'yes');
  t.is(await cni('list', 'pods', '-A'), 'no');

  // An upgrade with a new tag changes the node pods' image (the DaemonSet rolls them).
  const upgrade = await helm(['upgrade', 'mesh', CHART, '-n', 'mesh-system', '--reuse-values', '--set', 'node.image.tag=v2'], env);
  t.is(upgrade.code, 0, upgrade.stderr);
  const after = (await call(h.server, 'GET', '/apis/apps/v1/namespaces/mesh-system/daemonsets/mesh-node')).body;
  t.true(after.spec.template.spec.containers.every((c: { image: string }) => c.image === 'localhost/mesh-node:v2'));

  // A wrong value is refused before anything changes.
  const bad = await helm(['upgrade', 'mesh', CHART, '-n', 'mesh-system', '--reuse-values', '--set', 'logLevel=loud'], env);
  t.not(bad.code, 0);
  t.regex(bad.stderr, /at '\/logLevel': value must be one of/);

  // --wait: helm 4 watches the objects go (streaming lists) before it returns.
  const uninstall = await helm(['uninstall', 'mesh', '-n', 'mesh-system', '--wait', '--timeout', '30s'], env);
  t.is(uninstall.code, 0, uninstall.stderr);
  for (const path of ['/apis/apps/v1/namespaces/mesh-system/daemonsets/mesh-node', '/apis/apps/v1/namespaces/mesh-system/deployments/mesh-controller', '/api/v1/namespaces/mesh-system/services/mesh-controller', '/apis/rbac.authorization.k8s.io/v1/clusterroles/mesh-controller', '/api/v1/namespaces/mesh-system/serviceaccounts/mesh-node']) {
    t.is((await call(h.server, 'GET', path)).status, 404, path);
  }
  // CRDs stay (Helm never deletes crds/; the Gateway API's are kept by resource policy), and so do
  // the policies in them.
  t.is((await call(h.server, 'GET', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/authorizationpolicies.security.mesh.io')).status, 200);
  t.is((await call(h.server, 'GET', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gateways.gateway.networking.k8s.io')).status, 200);
});
