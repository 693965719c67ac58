// `meshctl dev up / status / down` as a user runs them, with the real kubectl in between; `down`
// must leave nothing on the host.
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import test from 'ava';
import { devCluster } from '../helpers/dev.ts';
import { assertNothingLeaked, requireRoot } from '../helpers/topology.ts';

test('dev up, kubectl apply, dev status, dev down --purge leaves nothing behind', async (t) => {
  if (!(await requireRoot(t))) return;
  const { prefix, stateDir, meshctl, kubectl } = devCluster(t);

  // Short-lived certificates, as a user would ask to watch rotation.
  const up = await meshctl('dev', 'up', '--nodes', '1', '--workload-cert-ttl', '30s');
  t.regex(up.stdout, /ready: API server https:\/\/127\.0\.0\.1:\d+/);
  t.regex(up.stdout, new RegExp(`export KUBECONFIG=${stateDir}/kubeconfig`));
  const again = await meshctl('dev', 'up');
  t.regex(again.stdout, /already running/);

  const manifest = `${stateDir}/pod.yaml`;
  writeFileSync(
    manifest,
    `apiVersion: v1
kind: Pod
metadata: {name: sleeper, namespace: default}
spec:
  containers:
  - {name: main, image: unused, command: ["sleep", "600"]}
`,
  );
  await kubectl('apply', '-f', manifest);
  let status = '';
  for (let i = 0; i < 50 && !/sleeper\s+node1\s+Running\s+10\.100\.0\.\d+/.test(status); i++) {
    await new Promise((r) => setTimeout(r, 100));
    status = (await meshctl('dev', 'status')).stdout;
  }
  t.regex(status, /node1\s+Ready\s+10\.250\.0\.1/);
  t.regex(status, /default\s+sleeper\s+node1\s+Running\s+10\.100\.0\.\d+/);

  // The mesh's own certificates have the lifetime asked for (ztunnel's node certificate).
  const certs = JSON.parse((await meshctl('ztunnel-config', 'certificates', '-o', 'json')).stdout) as { identity: string; notAfter?: string; notBefore?: string }[];
  const own = certs.find((c) => c.identity.endsWith('/ns/mesh-system/sa/mesh-node'));
  t.truthy(own, `ztunnel shows its node certificate: ${JSON.stringify(certs)}`);
  const left = Date.parse(own!.notAfter!) - Date.now();
  t.true(left > 0 && left <= 30_000, `--workload-cert-ttl 30s: the certificate expires in ${left} ms`);

  const down = await meshctl('dev', 'down', '--purge');
  t.regex(down.stdout, /stopped/);
  t.false(existsSync(stateDir), '--purge removes the state directory');
  t.deepEqual(await assertNothingLeaked(prefix), []);
  t.deepEqual(existsSync('/etc/netns') ? readdirSync('/etc/netns').filter((d) => d.startsWith(`${prefix}-`)) : [], []);
  const bad = await meshctl('dev', 'up', '--nodes', 'lots').catch((e: { stderr: string; code: number }) => e);
  t.is((bad as { code: number }).code, 1);
  t.regex((bad as { stderr: string }).stderr, /--nodes must be a whole number from 1 to 16, got 'lots'/);
  const badTtl = await meshctl('dev', 'up', '--workload-cert-ttl', '3d').catch((e: { stderr: string; code: number }) => e);
  t.regex((badTtl as { stderr: string }).stderr, /--workload-cert-ttl must be a duration of at least 1s, such as 30s, 10m or 24h; got '3d'/);
});

test('dev up --controller-replicas 2, then dev rollout controller: new replicas, the Lease moves, the mesh keeps its config', async (t) => {
  if (!(await requireRoot(t))) return;
  const { prefix, meshctl, kubectl } = devCluster(t);
  const badReplicas = await meshctl('dev', 'up', '--controller-replicas', '0').catch((e: { stderr: string; code: number }) => e);
  t.regex((badReplicas as { stderr: string }).stderr, /--controller-replicas must be a whole number from 1 to 5, got '0'/);

  const up = await meshctl('dev', 'up', '--nodes', '1', '--controller-replicas', '2');
  t.regex(up.stdout, /controller replica mesh-controller-1 serves/);
  t.regex(up.stdout, /controller replica mesh-controller-2 serves/);
  const holder = async () => (await kubectl('get', 'lease', '-n', 'mesh-system', 'mesh-controller', '-o', 'jsonpath={.spec.holderIdentity}')).stdout.trim();
  const until = async (what: string, f: () => Promise<string | undefined>): Promise<string> => {
    for (let i = 0; i < 100; i++) {
      const v = await f();
      if (v) return v;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`timed out waiting for ${what}`);
  };
  const first = await until('a leader', async () => (await holder()) || undefined);
  t.regex(first, /^mesh-controller-[12]_[0-9a-f]{8}$/);

  const rolled = await meshctl('dev', 'rollout', 'controller');
  t.regex(rolled.stdout, /starting a new controller replica to replace mesh-controller-1/);
  t.regex(rolled.stdout, /rolled 2 controller replicas: mesh-controller-1 → mesh-controller-3, mesh-controller-2 → mesh-controller-4/);
  t.is((rolled.stdout.match(/^controller: controller pid \d+ serving; pid \d+ draining/gm) ?? []).length, 2, rolled.stdout);
  const second = await until('a new leader', async () => {
    const h = await holder();
    return /^mesh-controller-[34]_/.test(h) ? h : undefined;
  });
  t.log(`leader ${first} → ${second}`);
  // The node's ztunnel still follows the config stream, now from the new replicas.
  await kubectl('create', 'namespace', 'shop');
  await kubectl('label', 'namespace', 'shop', 'mesh.io/dataplane-mode=ambient');
  await kubectl('run', 'web', '-n', 'shop', '--image=local', '--restart=Never', '--', 'sleep', '600');
  await until('the new pod in ztunnel', async () => ((await meshctl('ztunnel-config', 'workloads', '-o', 'json')).stdout.includes('"web"') ? 'yes' : undefined));
  await meshctl('dev', 'down', '--purge');
  t.deepEqual(await assertNothingLeaked(prefix), []);
});
