// A pod's life on the local kubelet, driven with the real kubectl against image pods built from
// busybox-static: graceful deletion (preStop exec/httpGet, SIGTERM, SIGKILL after the grace period,
// Terminating pods leave their Service's ready endpoints), force deletion. One one-node cluster
// shared by the tests in order. Needs root, podman and runc; run under the shared netns lock.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import * as k8s from '@kubernetes/client-node';
import { LocalCluster } from '../../src/local/runtime/cluster.ts';
import { containerLogPath } from '../../src/local/runtime/kubelet.ts';
import { listContainers } from '../../src/local/runtime/oci.ts';
import { BUSYBOX_IMAGE, buildBusyboxImage } from '../helpers/images.ts';
import { assertNothingLeaked, requireRoot, uniquePrefix } from '../helpers/topology.ts';
import { waitFor } from '../helpers/wait.ts';

let cluster: LocalCluster;
let core: k8s.CoreV1Api;
let prefix = '';
let stateDir = '';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function kubectl(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile('kubectl', args, { env: { ...process.env, KUBECONFIG: cluster.kubeconfigPath, KUBECACHEDIR: join(stateDir, 'kube-cache'), HOME: stateDir }, timeout: 90_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

async function apply(name: string, yaml: string): Promise<void> {
  const f = join(stateDir, `${name}.yaml`);
  writeFileSync(f, yaml);
  const r = await kubectl('apply', '-f', f);
  if (r.code !== 0) throw new Error(r.stderr);
}

const logOf = (pod: string, c = 'main') => {
  try {
    return readFileSync(containerLogPath(join(stateDir, 'logs'), 'default', pod, c), 'utf8');
  } catch {
    return '';
  }
};
const readPod = (name: string) => core.readNamespacedPod({ namespace: 'default', name });
const isReady = (p: k8s.V1Pod) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
const readyPod = (name: string) => waitFor(`${name} Ready`, async () => {
  const p = await readPod(name);
  return p.status?.phase === 'Running' && isReady(p) ? p : undefined;
});
const gone = (name: string) => waitFor(`${name} gone`, () => readPod(name).then(() => undefined, (e: { code?: number }) => (e.code === 404 ? true : undefined)));
const containersOf = async (uid: string) => (await listContainers(prefix)).filter((n) => n.includes(uid));
const eventsOf = async (name: string) => (await core.listNamespacedEvent({ namespace: 'default', fieldSelector: `involvedObject.name=${name}` })).items;

const cleanups: (() => Promise<void> | void)[] = [];
let stopped = false; // the last test stops the cluster itself, to time it
test.after.always(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

test.before(async (t) => {
  if (!(await requireRoot(t))) return;
  prefix = uniquePrefix();
  stateDir = mkdtempSync(`/tmp/mesh-${prefix}-state-`);
  cleanups.push(async () => {
    rmSync(stateDir, { recursive: true, force: true });
    const left = await assertNothingLeaked(prefix);
    if (left.length) throw new Error(`left on the host: ${left.join('; ')}`);
  });
  buildBusyboxImage(stateDir);
  cluster = await LocalCluster.start({ stateDir, nodes: 1, prefix });
  cleanups.push(async () => {
    if (!stopped) await cluster.stop();
  });
  core = cluster.kc.makeApiClient(k8s.CoreV1Api);
});

// PID 1 is a shell that traps SIGTERM; it serves HTTP with nc so that the preStop GET shows in the log.
const TRAPPING = `trap 'echo got SIGTERM; exit 0' TERM; while true; do sleep 1; done`;

test.serial('graceful-delete: preStop exec runs, then SIGTERM; the pod is Terminating and out of its Service until the kubelet removes it', async (t) => {
  await apply('graceful', `apiVersion: v1
kind: Pod
metadata: {name: graceful, namespace: default, labels: {app: graceful}}
spec:
  terminationGracePeriodSeconds: 20
  containers:
  - name: main
    image: ${BUSYBOX_IMAGE}
    command: [sh, -c, "${TRAPPING}"]
    readinessProbe: {exec: {command: ["true"]}, periodSeconds: 1}
    lifecycle:
      preStop: {exec: {command: [sh, -c, "echo preStop ran > /proc/1/fd/1; sleep 3"]}}
---
apiVersion: v1
kind: Service
metadata: {name: graceful, namespace: default}
spec:
  selector: {app: graceful}
  ports: [{port: 80, targetPort: 8080}]
`);
  const pod = await readyPod('graceful');
  const endpoint = async () => (await cluster.kc.makeApiClient(k8s.DiscoveryV1Api).readNamespacedEndpointSlice({ namespace: 'default', name: 'graceful' })).endpoints?.[0];
  await waitFor('a ready endpoint', async () => ((await endpoint())?.conditions?.ready ? true : undefined));
  const t0 = Date.now();
  const deleting = kubectl('delete', 'pod', 'graceful');
  // While preStop sleeps: Terminating, and the endpoint is not ready but terminating.
  await waitFor('Terminating', async () => ((await kubectl('get', 'pod', 'graceful')).stdout.includes('Terminating') ? true : undefined), 5000);
  const ep = await waitFor('a terminating endpoint', async () => {
    const e = await endpoint();
    return e?.conditions?.terminating ? e : undefined;
  }, 5000);
  t.false(ep.conditions?.ready);
  t.true(Date.now() - t0 < 3000, 'seen within the preStop hook');
  t.is((await deleting).code, 0);
  const ms = Date.now() - t0;
  t.log(`graceful delete (preStop sleep 3 s, then SIGTERM handled): ${ms} ms`);
  t.true(ms >= 3000 && ms < 15_000, `${ms} ms`);
  t.regex(logOf('graceful'), /preStop ran\n(.|\n)*got SIGTERM\n/);
  t.deepEqual(await containersOf(pod.metadata!.uid!), []);
  const killing = (await eventsOf('graceful')).find((e) => e.reason === 'Killing');
  t.regex(killing?.message ?? '', /Stopping container main/);
});

test.serial('grace-period-kill: a PID 1 that ignores SIGTERM is killed when the grace period ends; preStop httpGet reaches the container', async (t) => {
  await apply('stubborn', `apiVersion: v1
kind: Pod
metadata: {name: stubborn, namespace: default}
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - name: main
    image: ${BUSYBOX_IMAGE}
    command: [sh, -c, "while true; do printf 'HTTP/1.0 200 OK\\\\r\\\\n\\\\r\\\\nok' | nc -l -p 8080; done"]
    ports: [{name: http, containerPort: 8080}]
    lifecycle:
      preStop: {httpGet: {path: /drain, port: http}}
`);
  await readyPod('stubborn');
  await waitFor('listening', async () => {
    const r = await kubectl('exec', 'stubborn', '--', 'cat', '/proc/net/tcp', '/proc/net/tcp6');
    return /:1F90 [0-9A-F]+:0000 0A/.test(r.stdout) ? true : undefined; // 8080, LISTEN
  });
  const t0 = Date.now();
  const r = await kubectl('delete', 'pod', 'stubborn');
  const ms = Date.now() - t0;
  t.is(r.code, 0, r.stderr);
  t.log(`graceful delete of a SIGTERM-ignoring pod with terminationGracePeriodSeconds 3: ${ms} ms`);
  t.true(ms >= 2500 && ms < 10_000, `${ms} ms`);
  t.regex(logOf('stubborn'), /GET \/drain HTTP\/1\.1/);
});

test.serial('force-delete: --force --grace-period=0 removes the pod at once and kills it, even mid-termination', async (t) => {
  await apply('forced', `apiVersion: v1
kind: Pod
metadata: {name: forced, namespace: default}
spec:
  terminationGracePeriodSeconds: 60
  containers:
  - {name: main, image: ${BUSYBOX_IMAGE}, command: [sleep, "3600"]}
`);
  const pod = await readyPod('forced');
  t.is((await kubectl('delete', 'pod', 'forced', '--wait=false')).code, 0);
  t.truthy((await readPod('forced')).metadata?.deletionTimestamp);
  const t0 = Date.now();
  const r = await kubectl('delete', 'pod', 'forced', '--force', '--grace-period=0');
  t.is(r.code, 0, r.stderr);
  await gone('forced');
  await waitFor('container gone', async () => ((await containersOf(pod.metadata!.uid!)).length === 0 ? true : undefined), 10_000);
  const ms = Date.now() - t0;
  t.log(`force delete → container gone: ${ms} ms`);
  t.true(ms < 8000, `${ms} ms`);
});

test.serial('orphan-delete: a pod bound to a node that is not in the cluster is removed, not left Terminating', async (t) => {
  await apply('orphan', `apiVersion: v1
kind: Pod
metadata: {name: orphan, namespace: default}
spec:
  nodeName: node9
  containers:
  - {name: main, image: ${BUSYBOX_IMAGE}, command: [sleep, "3600"]}
`);
  const r = await kubectl('delete', 'pod', 'orphan', '--timeout=20s');
  t.is(r.code, 0, r.stderr);
  t.is(await gone('orphan'), true);
});

test.serial('delete-while-initializing: a pod deleted while an init container runs stops within its grace period; nothing of it is left', async (t) => {
  await apply('stuck-init', `apiVersion: v1
kind: Pod
metadata: {name: stuck-init, namespace: default}
spec:
  terminationGracePeriodSeconds: 2
  initContainers:
  - {name: wait, image: ${BUSYBOX_IMAGE}, command: [sleep, "3600"]}
  containers:
  - {name: main, image: ${BUSYBOX_IMAGE}, command: [sleep, "3600"]}
`);
  const pod = await waitFor('Init:0/1', async () => {
    const p = await readPod('stuck-init');
    return p.status?.initContainerStatuses?.[0]?.state?.running ? p : undefined;
  }, 20_000);
  t.regex((await kubectl('get', 'pod', 'stuck-init')).stdout, /Init:0\/1/);
  await waitFor('the init container up', async () => ((await kubectl('exec', 'stuck-init', '-c', 'wait', '--', 'true')).code === 0 ? true : undefined), 20_000);
  const t0 = Date.now();
  t.is((await kubectl('delete', 'pod', 'stuck-init')).code, 0);
  const ms = Date.now() - t0;
  t.log(`delete during init (sleep as PID 1 ignores SIGTERM, grace 2 s): ${ms} ms`);
  t.true(ms >= 1800 && ms < 8000, `${ms} ms`);
  t.deepEqual(await containersOf(pod.metadata!.uid!), []);

  // Deleted while `podman run` may still be setting the container up: none is left behind.
  for (let i = 0; i < 3; i++) {
    await apply('racer', `apiVersion: v1
kind: Pod
metadata: {name: racer, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: ${BUSYBOX_IMAGE}, command: [sleep, "3600"]}
`);
    const uid = (await waitFor('racer bound', async () => {
      const p = await readPod('racer');
      return p.status?.containerStatuses?.[0]?.state?.running ? p : undefined;
    })).metadata!.uid!;
    t.is((await kubectl('delete', 'pod', 'racer')).code, 0);
    t.deepEqual(await containersOf(uid), []);
  }
});

test.serial('probes: a startup probe gates readiness; a failing liveness probe restarts the container with an Event; exec, httpGet and tcpSocket', async (t) => {
  // httpd comes up 2 s after the container starts, with /www/healthz written; /www is an emptyDir,
  // so removing healthz fails both the exec readiness and the httpGet liveness probe.
  await apply('probed', `apiVersion: v1
kind: Pod
metadata: {name: probed, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: ${BUSYBOX_IMAGE}
    command: [sh, -c, "sleep 2; echo ok > /www/healthz; exec httpd -f -p 8080 -h /www"]
    volumeMounts: [{name: www, mountPath: /www}]
    startupProbe: {tcpSocket: {port: 8080}, periodSeconds: 1, failureThreshold: 30}
    livenessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1, failureThreshold: 2}
    readinessProbe: {exec: {command: [test, -f, /www/healthz]}, periodSeconds: 1}
  volumes: [{name: www, emptyDir: {}}]
`);
  const early = await waitFor('running', async () => {
    const p = await readPod('probed');
    return p.status?.containerStatuses?.[0]?.state?.running ? p : undefined;
  });
  t.false(early.status!.containerStatuses![0]!.started, 'not started before the startup probe succeeds');
  t.false(isReady(early));
  const t0 = Date.now();
  const ready = await readyPod('probed');
  t.log(`running → Ready through the startup then readiness probe: ${Date.now() - t0} ms`);
  t.true(ready.status!.containerStatuses![0]!.started);
  t.is(ready.status!.containerStatuses![0]!.restartCount, 0);

  t.is((await kubectl('exec', 'probed', '--', 'rm', '/www/healthz')).code, 0);
  const restarted = await waitFor('a restart', async () => {
    const p = await readPod('probed');
    return (p.status?.containerStatuses?.[0]?.restartCount ?? 0) >= 1 ? p : undefined;
  }, 30_000);
  t.truthy(restarted.status!.containerStatuses![0]!.lastState?.terminated);
  await readyPod('probed');
  const events = await eventsOf('probed');
  t.true(events.some((e) => e.reason === 'Unhealthy' && /^Liveness probe failed: HTTP probe failed with statuscode: 404/.test(e.message ?? '')), JSON.stringify(events.map((e) => e.message)));
  t.true(events.some((e) => e.reason === 'Unhealthy' && /^Readiness probe failed: /.test(e.message ?? '')));
  t.true(events.some((e) => e.reason === 'Killing' && e.message === 'Container main failed liveness probe, will be restarted'));
  t.regex((await kubectl('get', 'pod', 'probed')).stdout, /\nprobed\s+1\/1\s+Running\s+1 \(\d+s ago\)\s/);
  t.is((await kubectl('delete', 'pod', 'probed')).code, 0);
});

test.serial('startup-probe-failure: a container whose startup probe keeps failing is killed; restartPolicy Never leaves it Failed', async (t) => {
  await apply('nostart', `apiVersion: v1
kind: Pod
metadata: {name: nostart, namespace: default}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: ${BUSYBOX_IMAGE}
    command: [sleep, "3600"]
    startupProbe: {exec: {command: ["false"]}, periodSeconds: 1, failureThreshold: 2}
`);
  const failed = await waitFor('Failed', async () => {
    const p = await readPod('nostart');
    return p.status?.phase === 'Failed' ? p : undefined;
  }, 30_000);
  t.is(failed.status!.containerStatuses![0]!.restartCount, 0);
  t.true((await eventsOf('nostart')).some((e) => e.reason === 'Killing' && /failed startup probe/.test(e.message ?? '')));
  t.is((await kubectl('delete', 'pod', 'nostart')).code, 0);
});

test.serial('init-containers: run in order to completion before the containers; a failed one restarts with backoff; Init:N/M in kubectl get', async (t) => {
  const t0 = Date.now();
  await apply('inited', `apiVersion: v1
kind: Pod
metadata: {name: inited, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - {name: fails-once, image: ${BUSYBOX_IMAGE}, command: [sh, -c, "echo one >> /work/order; test -f /work/ok || { touch /work/ok; exit 1; }"], volumeMounts: [{name: work, mountPath: /work}]}
  - {name: slow, image: ${BUSYBOX_IMAGE}, command: [sh, -c, "sleep 2; echo two >> /work/order"], volumeMounts: [{name: work, mountPath: /work}]}
  containers:
  - {name: main, image: ${BUSYBOX_IMAGE}, command: [sh, -c, "cat /work/order; exec sleep 3600"], volumeMounts: [{name: work, mountPath: /work}]}
  volumes: [{name: work, emptyDir: {}}]
`);
  await waitFor('Init:1/2', async () => ((await kubectl('get', 'pod', 'inited')).stdout.match(/\ninited\s+0\/1\s+Init:1\/2\s+1\s/) ? true : undefined), 20_000);
  const p = await readyPod('inited');
  t.log(`pod with two init containers (one failing once, one of 2 s) created → Ready: ${Date.now() - t0} ms`);
  const inits = p.status!.initContainerStatuses!;
  t.deepEqual(inits.map((s) => [s.name, s.state?.terminated?.exitCode, s.restartCount]), [['fails-once', 0, 1], ['slow', 0, 0]]);
  t.true(p.status!.conditions!.some((c) => c.type === 'Initialized' && c.status === 'True'));
  await waitFor('main output', () => (logOf('inited') ? true : undefined));
  t.is(logOf('inited'), 'one\none\ntwo\n');
  t.is((await kubectl('logs', 'inited', '-c', 'slow')).code, 0);
  t.is((await kubectl('delete', 'pod', 'inited')).code, 0);

  await apply('initfail', `apiVersion: v1
kind: Pod
metadata: {name: initfail, namespace: default}
spec:
  restartPolicy: Never
  initContainers:
  - {name: broken, image: ${BUSYBOX_IMAGE}, command: [sh, -c, "exit 3"]}
  containers:
  - {name: main, image: ${BUSYBOX_IMAGE}, command: [sleep, "3600"]}
`);
  await waitFor('Failed', async () => ((await readPod('initfail')).status?.phase === 'Failed' ? true : undefined), 20_000);
  t.regex((await kubectl('get', 'pod', 'initfail')).stdout, /\ninitfail\s+0\/1\s+Init:Error\s+0\s/);
  t.is((await readPod('initfail')).status!.containerStatuses![0]!.state?.waiting?.reason, 'PodInitializing');
  t.is((await kubectl('delete', 'pod', 'initfail')).code, 0);
});

test.serial('limits: an image container gets memory and cpu limits in its cgroup; a host command pod gets them on its cgroup or an Event naming them', async (t) => {
  await apply('limited', `apiVersion: v1
kind: Pod
metadata: {name: limited, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: ${BUSYBOX_IMAGE}
    command: [sleep, "3600"]
    resources: {limits: {memory: 64Mi, cpu: 500m, ephemeral-storage: 1Gi}}
  - name: host
    image: local
    command: [sleep, "3600"]
    resources: {limits: {memory: 32Mi}}
`);
  const pod = await readyPod('limited');
  // cgroup v2 (namespaced) or v1 (hybrid hosts: runc writes the v1 hierarchies), whichever the host has.
  const read = async (v2: string, v1: string) => (await kubectl('exec', 'limited', '-c', 'main', '--', 'sh', '-c', `cat /sys/fs/cgroup/${v2} 2>/dev/null || cat /sys/fs/cgroup/${v1}`)).stdout.trim();
  t.is(await read('memory.max', 'memory/memory.limit_in_bytes'), '67108864');
  t.regex(await read('cpu.max', 'cpu/cpu.cfs_quota_us'), /^50000( 100000)?$/);
  const event = await waitFor('FieldNotHonoured', async () => (await eventsOf('limited')).find((e) => e.reason === 'FieldNotHonoured'));
  t.regex(event.message!, /spec\.containers\{main\}\.resources\.limits\.ephemeral-storage/);
  // The host command's pod cgroup: memory.max when cgroup v2 has the memory controller, else named.
  const cgroup = cluster.kubelets[0]!.runtimes().find((r) => r.uid === pod.metadata!.uid)!.cgroup;
  let memoryMax: string | undefined;
  try {
    memoryMax = readFileSync(join(cgroup, 'memory.max'), 'utf8').trim();
  } catch {
    // no memory controller in this host's cgroup v2 hierarchy
  }
  if (memoryMax !== undefined) t.is(memoryMax, String(32 * 2 ** 20));
  else t.regex(event.message!, /spec\.containers\{host\}\.resources\.limits\.memory \(no memory controller in the cgroup v2 hierarchy/);
  t.log(memoryMax !== undefined ? `host-command pod cgroup memory.max ${memoryMax}` : `host-command limits named: ${event.message!}`);
  t.is((await kubectl('delete', 'pod', 'limited')).code, 0);
});

test.serial('logs-times: kubectl logs --timestamps stamps each line; --since and --since-time keep the later ones; kubectl attach streams new output', async (t) => {
  await apply('ticker', `apiVersion: v1
kind: Pod
metadata: {name: ticker, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: ${BUSYBOX_IMAGE}, command: [sh, -c, "echo first; sleep 2; echo second; while true; do sleep 1; echo tick; done"]}
`);
  await readyPod('ticker');
  await waitFor('second', async () => ((await kubectl('logs', 'ticker')).stdout.includes('second') ? true : undefined), 20_000);
  const stamped = (await kubectl('logs', 'ticker', '--timestamps')).stdout.split('\n').slice(0, 2);
  const m = stamped.map((l) => /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) (.*)$/.exec(l));
  t.deepEqual(m.map((x) => x?.[2]), ['first', 'second'], stamped.join('\n'));
  const [t1, t2] = m.map((x) => Date.parse(x![1]!));
  t.true(t2! - t1! >= 1800 && t2! - t1! < 4000, `${t2! - t1!} ms between the lines`);
  const between = new Date((t1! + t2!) / 2).toISOString();
  const since = await kubectl('logs', 'ticker', `--since-time=${between}`);
  t.is(since.code, 0, since.stderr);
  t.true(since.stdout.startsWith('second\n'), since.stdout);
  t.true((await kubectl('logs', 'ticker', '--since=1h')).stdout.startsWith('first\nsecond\n'));

  const attach = execFile('kubectl', ['attach', 'ticker'], { env: { ...process.env, KUBECONFIG: cluster.kubeconfigPath, KUBECACHEDIR: join(stateDir, 'kube-cache'), HOME: stateDir } });
  let attached = '';
  attach.stdout!.on('data', (d: Buffer) => (attached += d.toString()));
  await waitFor('attached ticks', () => (attached.split('\n').filter((l) => l === 'tick').length >= 2 ? true : undefined), 10_000);
  t.false(attached.includes('first'), 'attach shows output from now on');
  attach.kill();
  const refused = await kubectl('attach', '-i', 'ticker');
  t.not(refused.code, 0);
  t.regex(refused.stderr, /runs without stdin or a terminal/);
  t.is((await kubectl('delete', 'pod', 'ticker')).code, 0);
});

test.serial('user-flow: create deployment from an image, expose, exec, port-forward, a rollout with no failed request, then stop leaves nothing', async (t) => {
  const t0 = Date.now();
  let r = await kubectl('create', 'deployment', 'web', `--image=${BUSYBOX_IMAGE}`, '--', 'httpd', '-f', '-p', '8080');
  t.is(r.code, 0, r.stderr);
  t.is((await kubectl('expose', 'deployment', 'web', '--port', '80', '--target-port', '8080')).code, 0);
  r = await kubectl('rollout', 'status', 'deployment/web', '--timeout=60s');
  t.regex(r.stdout, /successfully rolled out/);
  t.log(`kubectl create deployment → rollout status done: ${Date.now() - t0} ms`);
  const [pod] = (await core.listNamespacedPod({ namespace: 'default', labelSelector: 'app=web' })).items;
  const name = pod!.metadata!.name!;

  r = await kubectl('exec', name, '--', 'cat', '/etc/hostname');
  t.is(r.stdout.trim(), name, r.stderr); // podman writes the file without a newline

  // port-forward to the Service (kubectl picks the pod), then a GET from this host.
  const pf = spawn('kubectl', ['port-forward', 'svc/web', ':80'], { env: { ...process.env, KUBECONFIG: cluster.kubeconfigPath, KUBECACHEDIR: join(stateDir, 'kube-cache'), HOME: stateDir } });
  let pfOut = '';
  pf.stdout.on('data', (d: Buffer) => (pfOut += d.toString()));
  try {
    const port = await waitFor('port-forward', () => /Forwarding from 127\.0\.0\.1:(\d+) -> 8080/.exec(pfOut)?.[1], 20_000);
    const res = await fetch(`http://127.0.0.1:${port}/etc/hostname`);
    t.is(res.status, 200);
    t.is((await res.text()).trim(), name);
  } finally {
    pf.kill();
  }

  // A readiness probe (so a new pod gets traffic only once httpd listens) and a short grace period.
  r = await kubectl('patch', 'deployment', 'web', '--type=json', '-p', JSON.stringify([
    { op: 'add', path: '/spec/template/spec/terminationGracePeriodSeconds', value: 3 },
    { op: 'add', path: '/spec/template/spec/containers/0/readinessProbe', value: { tcpSocket: { port: 8080 }, periodSeconds: 1 } },
  ]));
  t.is(r.code, 0, r.stderr);
  t.regex((await kubectl('rollout', 'status', 'deployment/web', '--timeout=60s')).stdout, /successfully rolled out/);

  // A client pod loops through the Service while `kubectl set env` rolls the Deployment: the old
  // pod leaves the Service as it starts terminating and serves out its grace period (httpd ignores
  // SIGTERM) before it is killed, so no request fails.
  const ip = (await core.readNamespacedService({ namespace: 'default', name: 'web' })).spec!.clusterIP!;
  await apply('client', `apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: ${BUSYBOX_IMAGE}
    # (no wget -T: busybox-static's wget segfaults with it)
    command: [sh, -c, "while true; do if wget -q -O /dev/null http://${ip}/etc/hostname; then echo ok; else echo fail; fi; sleep 0.1; done"]
`);
  await waitFor('client answers', () => (logOf('client').split('\n').filter((l) => l === 'ok').length >= 5 ? true : undefined), 20_000).catch((e: Error) => {
    throw new Error(`${e.message}; the client wrote: ${logOf('client').slice(-300)}`);
  });
  const before = (await core.listNamespacedPod({ namespace: 'default', labelSelector: 'app=web' })).items.filter((p) => !p.metadata?.deletionTimestamp).map((p) => p.metadata!.name!);
  const r0 = Date.now();
  t.is((await kubectl('set', 'env', 'deployment/web', 'VERSION=2')).code, 0);
  t.regex((await kubectl('rollout', 'status', 'deployment/web', '--timeout=60s')).stdout, /successfully rolled out/);
  await waitFor('the old pod gone', async () => {
    const names = (await core.listNamespacedPod({ namespace: 'default', labelSelector: 'app=web' })).items.map((p) => p.metadata!.name!);
    return before.every((n) => !names.includes(n)) ? true : undefined;
  }, 30_000);
  t.log(`set env → old pod gone (grace 3 s): ${Date.now() - r0} ms`);
  const results = logOf('client').split('\n').filter(Boolean);
  t.log(`${results.length} requests through the Service during the rollout`);
  t.true(results.length > 20);
  t.deepEqual(results.filter((l) => l !== 'ok'), []);

  // The harness's stop is meshctl dev down's: nothing of the cluster may stay on the host.
  const s0 = Date.now();
  stopped = true;
  await cluster.stop();
  t.log(`cluster stop with 3 image pods running: ${Date.now() - s0} ms`);
  const containers = execFileSync('podman', ['ps', '-a', '--filter', `label=io.mesh.local.cluster=${prefix}`, '--format', '{{.Names}}'], { encoding: 'utf8' });
  t.is(containers, '');
  const left = (await assertNothingLeaked(prefix)).filter((l) => !l.startsWith('directory /tmp/'));
  t.deepEqual(left, []);
});
