// The Helm chart (daemonset/chart) rendered by the real helm: it lints strictly, refuses wrong
// values with the schema's message, sets on each container only settings its process reads (any
// other MESH_* variable makes a process refuse to start), and ships the RBAC of files/rbac.yaml.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import * as yaml from 'js-yaml';
import { AGENT_SETTINGS } from '../../src/agent/config.ts';
import { CONTROLLER_SETTINGS } from '../../src/controller/config.ts';
import { MESH_RBAC_MANIFEST } from '../../src/local/mesh-rbac.ts';
import { ZTUNNEL_ENTRY, ZTUNNEL_NODE_FLAGS, ZTUNNEL_PROCESS_ENV, ZTUNNEL_SETTINGS } from '../../src/ztunnel/config.ts';
import { CHART, helm, type Manifest, renderChart } from '../helpers/helm.ts';
import { checkKubernetesTypes } from '../helpers/k8s-types.ts';

// Every value that adds a variable, so that conditional ones are checked too.
const ALL_ON = { trace: '{xds,enrol}', 'controller.relay.service': 'true', 'controller.workloadCertTtl': '12h', 'controller.maxWorkloadCertTtl': '720h', 'tracing.endpoint': 'http://otel-collector.observability:4318/v1/traces', 'tracing.sampling': '2.5', 'tracing.l4': 'true' };

const find = (docs: Manifest[], kind: string, name: string): Manifest => {
  const d = docs.find((x) => x.kind === kind && x.metadata.name === name);
  if (!d) throw new Error(`no ${kind} ${name} in the rendered chart`);
  return d;
};

type Schema = { names: readonly string[]; read(env: Record<string, string>): unknown };

/** The CNI installer's settings schema, where src/cni is present. */
async function cniInstallSettings(): Promise<Schema | undefined> {
  const module = '../../src/cni/install.ts';
  if (!existsSync(new URL(module, import.meta.url))) return undefined;
  return ((await import(module)) as { CNI_INSTALL_SETTINGS: Schema }).CNI_INSTALL_SETTINGS;
}

/** A container's environment as the kubelet would give it: downward-API fields filled with
 * plausible values, $(VAR) references expanded. */
function containerEnv(c: Manifest): Record<string, string> {
  const fields: Record<string, string> = { 'spec.nodeName': 'node-a', 'status.hostIP': '192.168.1.10', 'status.podIP': '10.244.0.5', 'metadata.namespace': 'mesh-system', 'metadata.name': 'mesh-controller-5d9c7-x2x4q', 'spec.serviceAccountName': 'mesh-node' };
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    const v = e.valueFrom ? fields[e.valueFrom.fieldRef?.fieldPath] : e.value;
    if (v === undefined) throw new Error(`${c.name}: ${e.name} has a source this test does not know`);
    env[e.name] = String(v).replace(/\$\((\w+)\)/g, (_, n: string) => env[n] ?? '');
  }
  return env;
}

test('helm lint --strict passes, with helm 4 and helm 3', async (t) => {
  for (const major of [4, 3] as const) {
    const r = await helm(['lint', '--strict', CHART, '-n', 'mesh-system'], {}, major);
    t.is(r.code, 0, `helm ${major}: ${r.stdout}${r.stderr}`);
  }
});

test('helm 3 renders what helm 4 renders, and refuses a wrong value with the schema message', async (t) => {
  for (const set of [{}, { ...ALL_ON, 'gatewayAPI.install': 'true', 'controller.replicas': '2' }]) {
    t.deepEqual(await renderChart(set, 3), await renderChart(set, 4));
  }
  const e = await t.throwsAsync(renderChart({ logLevel: 'verbose' }, 3));
  t.regex(e!.message, /logLevel must be one of the following: "trace", "debug", "info"/);
});

test('the defaults render the controller, the node DaemonSet and the RBAC, and nothing else', async (t) => {
  const docs = await renderChart();
  t.deepEqual(docs.map((d) => `${d.kind}/${d.metadata.name}`).sort(), [
    'ClusterRole/mesh-cni',
    'ClusterRole/mesh-controller',
    'ClusterRoleBinding/mesh-cni',
    'ClusterRoleBinding/mesh-controller',
    'DaemonSet/mesh-cni',
    'DaemonSet/mesh-node',
    'Deployment/mesh-controller',
    'Role/mesh-controller',
    'Role/mesh-node',
    'RoleBinding/mesh-controller',
    'RoleBinding/mesh-node',
    'Service/mesh-controller',
    'ServiceAccount/mesh-cni',
    'ServiceAccount/mesh-controller',
    'ServiceAccount/mesh-node',
  ]);
  const ds = find(docs, 'DaemonSet', 'mesh-node');
  t.deepEqual(ds.spec.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } });
  const pod = ds.spec.template.spec;
  t.is(pod.priorityClassName, 'system-node-critical');
  t.deepEqual(pod.tolerations, [{ operator: 'Exists' }]);
  t.falsy(pod.hostNetwork, 'ztunnel runs in its own pod netns');
  t.deepEqual(pod.containers.map((c: Manifest) => c.name), ['agent', 'ztunnel']);
  t.true(pod.containers.every((c: Manifest) => c.securityContext.privileged === false));
  // The CNI installer: its own DaemonSet and account, on every node too, with no capability.
  const cni = find(docs, 'DaemonSet', 'mesh-cni').spec.template.spec;
  t.is(cni.serviceAccountName, 'mesh-cni');
  t.deepEqual(cni.tolerations, [{ operator: 'Exists' }]);
  t.deepEqual(cni.containers[0].securityContext.capabilities, { drop: ['ALL'] });
  t.false((await renderChart({ 'cni.enabled': 'false' })).some((d) => d.metadata.name === 'mesh-cni' && d.kind === 'DaemonSet'));
  t.deepEqual(pod.volumes.find((v: Manifest) => v.name === 'mesh-token').projected.sources[0].serviceAccountToken.audience, 'mesh-ca');
  t.is(ds.spec.template.metadata.annotations['prometheus.io/port'], '15020');
  // ztunnel's compile cache lives in an emptyDir (outlives a container restart), not in the
  // read-only image, and holds no secrets.
  const zt = pod.containers.find((c: Manifest) => c.name === 'ztunnel');
  // The heap flags the local cluster gives ztunnel, and the benchmark measured.
  t.deepEqual(zt.args, [...ZTUNNEL_NODE_FLAGS, ZTUNNEL_ENTRY]);
  // And the process environment it starts with (glibc's malloc tunables).
  for (const [k, v] of Object.entries(ZTUNNEL_PROCESS_ENV)) t.is(containerEnv(zt)[k], v, k);
  t.true(zt.securityContext.readOnlyRootFilesystem);
  const cacheMount = zt.volumeMounts.find((m: Manifest) => containerEnv(zt).NODE_COMPILE_CACHE?.startsWith(`${m.mountPath}/`));
  t.truthy(cacheMount, 'NODE_COMPILE_CACHE is under a mounted volume');
  t.truthy(pod.volumes.find((v: Manifest) => v.name === cacheMount.name).emptyDir);
  const svc = find(docs, 'Service', 'mesh-controller');
  t.deepEqual(svc.spec.ports.map((p: Manifest) => p.port), [15010, 15012]);
  const ctl = find(docs, 'Deployment', 'mesh-controller').spec.template.spec.containers[0];
  t.is(containerEnv(ctl).MESH_WAYPOINT_IMAGE, 'localhost/mesh-waypoint:latest');
});

test('every MESH_* variable of each container is a setting its process reads, with a value it accepts', async (t) => {
  for (const set of [{}, ALL_ON]) {
    const docs = await renderChart(set);
    const containers = [
      ...find(docs, 'Deployment', 'mesh-controller').spec.template.spec.containers,
      ...find(docs, 'DaemonSet', 'mesh-node').spec.template.spec.containers,
      ...find(docs, 'DaemonSet', 'mesh-cni').spec.template.spec.containers,
    ];
    const schemas: Record<string, Schema | undefined> = { controller: CONTROLLER_SETTINGS, agent: AGENT_SETTINGS, ztunnel: ZTUNNEL_SETTINGS, 'install-cni': await cniInstallSettings() };
    for (const c of containers) {
      t.true(c.name in schemas, `a container the test does not know: ${c.name}`);
      const env = containerEnv(c);
      const schema = schemas[c.name];
      if (!schema) {
        // The CNI installer's schema (src/cni/install.ts) comes with the CNI plugin; until then
        // its names are at least MESH_CNI_* or the shared log settings.
        for (const k of Object.keys(env)) t.regex(k, /^MESH_(CNI_[A-Z_]+|LOG_LEVEL|TRACE)$/);
        continue;
      }
      for (const k of Object.keys(env).filter((k) => k.startsWith('MESH_'))) t.true(schema.names.includes(k), `${c.name}: ${k} is not one of its settings (${schema.names.join(', ')})`);
      t.notThrows(() => schema.read(env), `${c.name} refuses the chart's environment`);
    }
  }
  // The conditional ones did render.
  const ctl = containerEnv(find(await renderChart(ALL_ON), 'Deployment', 'mesh-controller').spec.template.spec.containers[0]);
  t.like(ctl, { MESH_TRACE: 'xds,enrol', MESH_RELAY_HOST: '0.0.0.0', MESH_WORKLOAD_CERT_TTL: '12h', MESH_TRACING_OTLP_ENDPOINT: 'http://otel-collector.observability:4318/v1/traces', MESH_TRACING_OTLP_PROTOCOL: 'http/protobuf', MESH_TRACING_SAMPLING: '2.5' });
  t.like(CONTROLLER_SETTINGS.read(ctl), { tracingSampling: 2.5 });
  // One replica elects nothing (it has no Lease rights); more than one elect on the Lease.
  t.is(ctl.MESH_LEADER_ELECTION, 'false');
  const two = containerEnv(find(await renderChart({ 'controller.replicas': '2' }), 'Deployment', 'mesh-controller').spec.template.spec.containers[0]);
  t.is(two.MESH_LEADER_ELECTION, 'true');
  t.is(two.MESH_POD_NAME, 'mesh-controller-5d9c7-x2x4q');
  const zt = containerEnv(find(await renderChart(ALL_ON), 'DaemonSet', 'mesh-node').spec.template.spec.containers.find((c: Manifest) => c.name === 'ztunnel'));
  t.like(ZTUNNEL_SETTINGS.read(zt), { tracingEndpoint: 'http://otel-collector.observability:4318/v1/traces', tracingSampling: 2.5 });
  const ztOff = containerEnv(find(await renderChart({}), 'DaemonSet', 'mesh-node').spec.template.spec.containers.find((c: Manifest) => c.name === 'ztunnel'));
  t.is(ztOff.MESH_TRACING_OTLP_ENDPOINT, undefined);
});

test('a wrong value fails helm template with the schema message', async (t) => {
  const cases: [Record<string, string>, RegExp][] = [
    [{ logLevel: 'verbose' }, /at '\/logLevel': value must be one of 'trace', 'debug', 'info'/],
    [{ 'controller.replica': '2' }, /at '\/controller': additional properties 'replica' not allowed/],
    [{ 'cni.binDir': 'opt/cni/bin' }, /at '\/cni\/binDir'/],
    [{ 'controller.workloadCertTtl': '1d' }, /at '\/controller\/workloadCertTtl'/],
    [{ 'node.image.pullPolicy': 'Sometimes' }, /at '\/node\/image\/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'/],
    [{ 'node.agent.resources.limits.memory': 'lots' }, /at '\/node\/agent\/resources\/limits\/memory'/],
    [{ 'tracing.endpoint': 'otel-collector:4318' }, /at '\/tracing\/endpoint'/],
    [{ 'tracing.sampling': '150' }, /at '\/tracing\/sampling'/],
  ];
  for (const [set, message] of cases) {
    const e = await t.throwsAsync(renderChart(set));
    t.regex(e!.message, /values don't meet the specifications of the schema/);
    t.regex(e!.message, message);
  }
});

test('another namespace than mesh-system is refused with the reason', async (t) => {
  const r = await helm(['template', 'mesh', CHART, '-n', 'default']);
  t.not(r.code, 0);
  t.regex(r.stderr, /installs into namespace mesh-system .* not "default"/);
});

test("the chart's RBAC is files/rbac.yaml, the one the local cluster runs the controller with", async (t) => {
  t.is(MESH_RBAC_MANIFEST, join(CHART, 'files', 'rbac.yaml'));
  const file = yaml.loadAll(readFileSync(MESH_RBAC_MANIFEST, 'utf8')).filter((d) => d) as Manifest[];
  const docs = await renderChart();
  for (const kind of ['ClusterRole', 'Role']) {
    t.deepEqual(find(docs, kind, 'mesh-controller').rules, find(file, kind, 'mesh-controller').rules, kind);
  }
  for (const d of file) t.deepEqual(find(docs, d.kind, d.metadata.name), d);
  // The node account may read its own DaemonSet and nothing else (the agent's uninstall check);
  // only the agent container mounts an API token.
  const bound = docs.filter((d) => d.subjects?.some((s: Manifest) => s.name === 'mesh-node'));
  t.deepEqual(bound.map((d) => `${d.kind}/${d.roleRef.kind}/${d.roleRef.name}`), ['RoleBinding/Role/mesh-node']);
  t.deepEqual(find(docs, 'Role', 'mesh-node').rules, [{ apiGroups: ['apps'], resources: ['daemonsets'], resourceNames: ['mesh-node'], verbs: ['get'] }]);
  const pod = find(docs, 'DaemonSet', 'mesh-node').spec.template.spec;
  t.false(pod.automountServiceAccountToken);
  const apiMounts = pod.containers.filter((c: Manifest) => c.volumeMounts.some((m: Manifest) => m.mountPath === '/var/run/secrets/kubernetes.io/serviceaccount'));
  t.deepEqual(apiMounts.map((c: Manifest) => c.name), ['agent']);
});

test('more than one controller gets the Lease rights for leader election', async (t) => {
  const docs = await renderChart({ 'controller.replicas': '2' });
  const role = find(docs, 'Role', 'mesh-controller-leader-election');
  t.deepEqual(role.rules[0], { apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: ['mesh-controller'], verbs: ['get', 'update'] });
  t.truthy(find(docs, 'RoleBinding', 'mesh-controller-leader-election'));
});

test('gatewayAPI.install renders the Gateway API CRDs of files/, kept on uninstall', async (t) => {
  const file = yaml.loadAll(readFileSync(join(CHART, 'files', 'gateway-api-crds.yaml'), 'utf8')).filter((d) => d) as Manifest[];
  const docs = await renderChart({ 'gatewayAPI.install': 'true' });
  for (const d of file) {
    const r = find(docs, d.kind, d.metadata.name);
    if (d.kind === 'CustomResourceDefinition') {
      t.is(r.metadata.annotations['helm.sh/resource-policy'], 'keep');
      delete r.metadata.annotations['helm.sh/resource-policy'];
    }
    t.deepEqual(r, d, `${d.kind} ${d.metadata.name} renders as the file has it`);
  }
  t.true(file.filter((d) => d.kind === 'CustomResourceDefinition').length >= 5);
});

test('every rendered object is valid for its Kubernetes kind: no unknown field, no wrong type', async (t) => {
  const docs = await renderChart({ ...ALL_ON, 'gatewayAPI.install': 'true', 'controller.replicas': '2' });
  // And one broken on purpose, to show the check sees what a strict API server would refuse.
  const broken = structuredClone(find(docs, 'DaemonSet', 'mesh-node'));
  broken.metadata.name = 'broken';
  broken.spec.template.spec.hostPID = 'yes';
  broken.spec.template.spec.containers[0].securityContex = {};
  const { unchecked, problems } = checkKubernetesTypes([...docs, broken]);
  t.deepEqual(problems.filter((p) => p.object !== 'DaemonSet/broken'), []);
  t.is(problems.filter((p) => p.object === 'DaemonSet/broken').length, 2, JSON.stringify(problems));
  // CRDs are left to the API server, which validates them (test/local/chart-install.test.ts).
  t.true(unchecked.every((u) => u.startsWith('CustomResourceDefinition/')), unchecked.join(', '));
});
