// The pods' streaming subresources with the real kubectl: `kubectl logs` (tail, follow,
// previous), `kubectl exec` (exit code, stdin, runs in the pod's netns with its env) and RBAC on
// pods/exec. Pods here run host commands in their netns (the local kubelet's host-command mode).
// Needs root (pods are network namespaces); run under the shared netns lock.
import { execFile, spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import * as k8s from '@kubernetes/client-node';
import { LocalCluster } from '../../src/local/runtime/cluster.ts';
import { requireRoot } from '../helpers/topology.ts';
import { startTestCluster } from '../helpers/cluster.ts';
import { waitFor } from '../helpers/wait.ts';

const NODE = process.execPath;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

interface Env {
  cluster: LocalCluster;
  dir: string;
  core: k8s.CoreV1Api;
}

function kubectl(env: Env, args: string[], opts: { input?: string; kubeconfig?: string; version?: string } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      'kubectl',
      args,
      { env: { ...process.env, KUBECONFIG: opts.kubeconfig ?? env.cluster.kubeconfigPath, KUBECACHEDIR: join(env.dir, 'kube-cache'), HOME: env.dir }, timeout: 30_000 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    else child.stdin!.end();
  });
}

async function withCluster(t: ExecutionContext, body: (env: Env) => Promise<void>): Promise<void> {
  if (!(await requireRoot(t))) return;
  const { cluster, stateDir: dir } = await startTestCluster(t, 1);
  await body({ cluster, dir, core: cluster.kc.makeApiClient(k8s.CoreV1Api) });
}

async function runningPod(env: Env, name: string, container: Partial<k8s.V1Container>, spec: Partial<k8s.V1PodSpec> = {}): Promise<k8s.V1Pod> {
  await env.core.createNamespacedPod({ namespace: 'default', body: { metadata: { name }, spec: { ...spec, containers: [{ name: 'app', image: 'local', ...container }] } } });
  return waitFor(`pod ${name} running`, async () => {
    const p = await env.core.readNamespacedPod({ name, namespace: 'default' });
    return p.status?.containerStatuses?.[0]?.state?.running ? p : undefined;
  });
}

// Prints "line N" every 100 ms.
const TALKER = [NODE, '-e', 'let i = 0; setInterval(() => console.log(`line ${i++}`), 100)'];

test('kubectl logs prints, tails and follows a container log; --previous shows the last instance', async (t) => {
  await withCluster(t, async (env) => {
    await runningPod(env, 'talker', { command: TALKER });
    await waitFor('three lines', async () => ((await kubectl(env, ['logs', 'talker'])).stdout.includes('line 2') ? true : undefined));
    const all = await kubectl(env, ['logs', 'talker']);
    t.is(all.code, 0, all.stderr);
    t.true(all.stdout.startsWith('line 0\nline 1\nline 2\n'));
    const tail = await kubectl(env, ['logs', 'talker', '--tail=2']);
    t.regex(tail.stdout, /^line \d+\nline \d+\n$/);

    // -f: lines written after the command started arrive while it runs.
    const follow = spawn('kubectl', ['logs', '-f', '--tail=1', 'talker'], { env: { ...process.env, KUBECONFIG: env.cluster.kubeconfigPath, KUBECACHEDIR: join(env.dir, 'kube-cache'), HOME: env.dir } });
    t.teardown(() => follow.kill());
    let followed = '';
    follow.stdout.on('data', (d: Buffer) => (followed += d.toString()));
    const lines = await waitFor('five followed lines', async () => {
      const got = followed.split('\n').filter(Boolean);
      return got.length >= 5 ? got : undefined;
    }, 10_000);
    const numbers = lines.map((l) => Number(/^line (\d+)$/.exec(l)?.[1]));
    t.deepEqual(numbers.slice(1, 5), [numbers[0]! + 1, numbers[0]! + 2, numbers[0]! + 3, numbers[0]! + 4]);
    follow.kill();

    const noPrevious = await kubectl(env, ['logs', 'talker', '--previous']);
    t.is(noPrevious.code, 1);
    t.regex(noPrevious.stderr, /previous terminated container "app" in pod "talker" not found/);

    // A container that exits and is restarted: --previous is the output of the instance before.
    await runningPod(env, 'counter', { command: ['sh', '-c', 'n=$(cat /tmp/$RUN_ID 2>/dev/null || echo 0); echo "run $n"; echo $((n+1)) > /tmp/$RUN_ID; sleep 0.5'], env: [{ name: 'RUN_ID', value: `mesh-stream-${process.pid}` }] });
    t.teardown(() => rmSync(`/tmp/mesh-stream-${process.pid}`, { force: true }));
    await waitFor('a restart', async () => ((await env.core.readNamespacedPod({ name: 'counter', namespace: 'default' })).status?.containerStatuses?.[0]?.restartCount ?? 0) >= 1 ? true : undefined);
    await waitFor('the new instance logging', async () => ((await kubectl(env, ['logs', 'counter'])).stdout === 'run 1\n' ? true : undefined));
    const previous = await kubectl(env, ['logs', 'counter', '-p']);
    t.is(previous.stdout, 'run 0\n', previous.stderr);
  });
});

test('kubectl exec runs in the pod with its env, propagates the exit code and passes stdin', async (t) => {
  await withCluster(t, async (env) => {
    const pod = await runningPod(env, 'shell', { command: ['sleep', '1000'], env: [{ name: 'POD_MARKER', value: 'marker-7f3a' }] });
    const marked = await kubectl(env, ['exec', 'shell', '--', 'sh', '-c', 'echo $POD_MARKER; echo oops >&2; exit 3']);
    t.is(marked.stdout, 'marker-7f3a\n');
    t.regex(marked.stderr, /oops/);
    t.is(marked.code, 3);

    const addr = await kubectl(env, ['exec', 'shell', '--', 'ip', '-o', '-4', 'addr', 'show', 'dev', 'eth0']);
    t.is(addr.code, 0, addr.stderr);
    t.true(addr.stdout.includes(`inet ${pod.status!.podIP}/`), addr.stdout);

    const upper = await kubectl(env, ['exec', '-i', 'shell', '--', 'tr', 'a-z', 'A-Z'], { input: 'hello from stdin\n' });
    t.is(upper.code, 0, upper.stderr);
    t.is(upper.stdout, 'HELLO FROM STDIN\n');

    // -it: the command gets a terminal of kubectl's terminal's size (kubectl itself runs under
    // script(1) here, so that its stdin is a terminal).
    const kenv = `KUBECONFIG=${env.cluster.kubeconfigPath} KUBECACHEDIR=${join(env.dir, 'kube-cache')} HOME=${env.dir}`;
    const inner = `stty rows 40 cols 100; ${kenv} kubectl exec -it shell -- sh -c 'tty; stty size; exit 4'`;
    const tty = await new Promise<Run>((resolve) => {
      execFile('script', ['-q', '-e', '-c', inner, '/dev/null'], { timeout: 30_000 }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
    });
    t.regex(tty.stdout, /\/dev\/pts\/\d+\r?\n40 100\r?\n/);
    t.is(tty.code, 4, tty.stdout + tty.stderr);

    // kubectl cp is exec of tar (a host-command pod sees the host's files).
    writeFileSync(join(env.dir, 'src.txt'), 'copied through tar\n');
    const cp = await kubectl(env, ['cp', `shell:${join(env.dir, 'src.txt')}`, join(env.dir, 'dst.txt')]);
    t.is(cp.code, 0, cp.stderr);
    t.is(readFileSync(join(env.dir, 'dst.txt'), 'utf8'), 'copied through tar\n');

    const missing = await kubectl(env, ['exec', 'nosuchpod', '--', 'true']);
    t.is(missing.code, 1);
    t.regex(missing.stderr, /pods "nosuchpod" not found/);
  });
});

test('kubectl port-forward to a pod and to a service reaches the server in the pod', async (t) => {
  await withCluster(t, async (env) => {
    const server = `require('node:http').createServer((q, s) => s.end('served by ' + process.env.POD_MARKER + ' for ' + q.url)).listen(8080)`;
    await runningPod(env, 'web', { command: [NODE, '-e', server], env: [{ name: 'POD_MARKER', value: 'web-pod' }] });
    await env.core.patchNamespacedPod({ name: 'web', namespace: 'default', body: { metadata: { labels: { app: 'web' } } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    await env.core.createNamespacedService({ namespace: 'default', body: { metadata: { name: 'web' }, spec: { selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 as unknown as k8s.IntOrString }] } } });
    for (const target of ['pod/web', 'svc/web']) {
      const pf = spawn('kubectl', ['port-forward', target, `:${target === 'svc/web' ? 80 : 8080}`], { env: { ...process.env, KUBECONFIG: env.cluster.kubeconfigPath, KUBECACHEDIR: join(env.dir, 'kube-cache'), HOME: env.dir } });
      t.teardown(() => pf.kill());
      const local = await new Promise<number>((resolve, reject) => {
        let out = '';
        pf.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /Forwarding from 127\.0\.0\.1:(\d+)/.exec(out);
          if (m) resolve(Number(m[1]));
        });
        pf.stderr.on('data', (d: Buffer) => (out += d.toString()));
        pf.once('exit', () => reject(new Error(`kubectl port-forward ${target} exited: ${out}`)));
      });
      const body = await waitFor('the server in the pod', () => fetch(`http://127.0.0.1:${local}/via-${target}`).then((r) => r.text()));
      t.is(body, `served by web-pod for /via-${target}`);
      pf.kill();
    }
  });
});

test('a service account without pods/exec and pods/portforward is refused them (403) but may read logs', async (t) => {
  await withCluster(t, async (env) => {
    await runningPod(env, 'talker', { command: TALKER });
    await env.core.createNamespacedServiceAccount({ namespace: 'default', body: { metadata: { name: 'viewer' } } });
    const rbac = env.cluster.kc.makeApiClient(k8s.RbacAuthorizationV1Api);
    await rbac.createNamespacedRole({ namespace: 'default', body: { metadata: { name: 'log-reader' }, rules: [{ apiGroups: [''], resources: ['pods', 'pods/log'], verbs: ['get', 'list'] }] } });
    await rbac.createNamespacedRoleBinding({ namespace: 'default', body: { metadata: { name: 'viewer-logs' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'log-reader' }, subjects: [{ kind: 'ServiceAccount', name: 'viewer', namespace: 'default' }] } });
    const kubeconfig = join(env.dir, 'viewer.kubeconfig');
    await env.cluster.api.writeKubeconfig(kubeconfig, { user: 'viewer', token: env.cluster.api.issueServiceAccountToken('default', 'viewer') });

    const logs = await waitFor('logs as viewer', async () => {
      const r = await kubectl(env, ['logs', 'talker', '--tail=1'], { kubeconfig });
      return r.code === 0 ? r : undefined;
    });
    t.regex(logs.stdout, /^line \d+\n$/);
    const exec = await kubectl(env, ['exec', 'talker', '--', 'true'], { kubeconfig });
    t.is(exec.code, 1);
    t.regex(exec.stderr, /cannot create resource "pods\/exec" in API group "" in the namespace "default"/);
    const pf = await kubectl(env, ['port-forward', 'pod/talker', ':8080'], { kubeconfig });
    t.is(pf.code, 1);
    t.regex(pf.stderr, /cannot create resource "pods\/portforward" in API group "" in the namespace "default"/);
  });
});
