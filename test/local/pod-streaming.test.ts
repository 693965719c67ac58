// The API server's side of pods/log and pods/exec with the real kubectl, without root: the
// kubelets are replaced by PodStreams that run commands as plain host processes. Covers the
// WebSocket channel protocol (v5.channel.k8s.io) and SPDY (kubectl 1.27), exit codes, stdin,
// and port-forward both ways.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { Readable } from 'node:stream';
import test from 'ava';
import { ApiError, type PodStreams } from '../../src/local/apiserver/index.ts';
import { call, harness, type Harness, kubectl } from '../helpers/apiserver.ts';
import { join } from 'node:path';

const hostStreams: PodStreams = {
  async *logs(pod, req) {
    yield Buffer.from(`log of ${pod.metadata.name}/${req.container}\nsecond line\n`);
  },
  portForward: () => (port) => {
    const s = connect(port, '127.0.0.1');
    const failed = new Promise<string | undefined>((resolve) => {
      s.once('error', (e) => resolve(e.message));
      s.once('close', () => resolve(undefined));
    });
    s.on('error', () => {});
    return { input: s, output: s, failed, close: () => s.destroy() };
  },
  exec(pod, req) {
    if (pod.metadata.name === 'stopped') throw new ApiError(400, 'BadRequest', `container ${req.container} is not running in pod stopped`);
    return () => {
      const [cmd, ...args] = req.command;
      const child = spawn(cmd!, args, { stdio: 'pipe' });
      if (!req.stdin) child.stdin.end();
      return {
        stdin: req.stdin ? child.stdin : undefined,
        stdout: child.stdout,
        stderr: child.stderr ?? Readable.from([]),
        exited: new Promise((resolve) => child.once('exit', (code) => resolve(code ?? 1))),
        resize: () => {},
        kill: () => child.kill(),
      };
    };
  },
};

async function withPods(h: Harness): Promise<void> {
  h.server.setPodStreams(hostStreams);
  for (const name of ['app', 'stopped']) {
    const r = await call(h.server, 'POST', '/api/v1/namespaces/default/pods', { metadata: { name }, spec: { containers: [{ name: 'main', image: 'local' }] } });
    if (r.status !== 201) throw new Error(`creating pod ${name}: ${r.status} ${r.text}`);
    // kubectl port-forward refuses a pod that is not Running.
    await call(h.server, 'PATCH', `/api/v1/namespaces/default/pods/${name}/status`, { status: { phase: 'Running' } }, { contentType: 'application/merge-patch+json' });
  }
}

test('kubectl exec speaks v5.channel.k8s.io: output, stderr, stdin and the exit code', async (t) => {
  const h = await harness(t);
  await withPods(h);
  const r = await kubectl(h, ['exec', 'app', '--', 'sh', '-c', 'echo out; echo err >&2; exit 7']);
  t.is(r.stdout, 'out\n');
  t.regex(r.stderr, /err/);
  t.is(r.code, 7);
  const big = await kubectl(h, ['exec', '-i', 'app', '--', 'wc', '-c'], { input: 'x'.repeat(300_000) });
  t.is(big.stdout.trim(), '300000');
  t.is(big.code, 0);
  const logs = await kubectl(h, ['logs', 'app']);
  t.is(logs.stdout, 'log of app/main\nsecond line\n');
});

test('when exec cannot run, kubectl shows why, not the failure of its SPDY fallback', async (t) => {
  const h = await harness(t);
  await withPods(h);
  const r = await kubectl(h, ['exec', 'stopped', '--', 'true']);
  t.is(r.code, 1);
  t.regex(r.stderr, /container main is not running in pod stopped/);
});

test('kubectl 1.27 (SPDY only) execs over SPDY: output, stdin and the exit code', async (t) => {
  const h = await harness(t, { kubernetesVersion: { major: 1, minor: 27 } });
  await withPods(h);
  const r = await kubectl(h, ['exec', 'app', '--', 'sh', '-c', 'echo out; echo err >&2; exit 5']);
  t.is(r.stdout, 'out\n');
  t.regex(r.stderr, /err/);
  t.is(r.code, 5);
  const big = await kubectl(h, ['exec', '-i', 'app', '--', 'wc', '-c'], { input: 'y'.repeat(200_000) });
  t.is(big.stdout.trim(), '200000');
  t.is(big.code, 0);
  const stopped = await kubectl(h, ['exec', 'stopped', '--', 'true']);
  t.regex(stopped.stderr, /container main is not running in pod stopped/);
});

test('pods/log reports a missing container and bad since options as 400s', async (t) => {
  const h = await harness(t);
  await withPods(h);
  const wrong = await call(h.server, 'GET', '/api/v1/namespaces/default/pods/app/log?container=nope');
  t.is(wrong.status, 400);
  t.is(wrong.body.message, 'container nope is not valid for pod app');
  const both = await call(h.server, 'GET', '/api/v1/namespaces/default/pods/app/log?sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z');
  t.is(both.status, 400);
  t.is(both.body.message, 'at most one of sinceTime or sinceSeconds may be specified');
  const bad = await call(h.server, 'GET', '/api/v1/namespaces/default/pods/app/log?sinceTime=yesterday');
  t.is(bad.status, 400);
  t.regex(bad.body.message as string, /sinceTime: Invalid value: "yesterday"/);
});

for (const minor of [32, 27]) {
  test(`kubectl 1.${minor} port-forward reaches the pod's port (SPDY${minor >= 31 ? ' tunnelled in a WebSocket' : ''})`, async (t) => {
    const h = await harness(t, { kubernetesVersion: { major: 1, minor } });
    await withPods(h);
    const app = createServer((q, s) => s.end(`hello from ${q.url}`));
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    t.teardown(() => app.close());
    const appPort = (app.address() as AddressInfo).port;
    const pf = spawn('kubectl', ['port-forward', 'pod/app', `:${appPort}`], { env: { ...process.env, KUBECONFIG: h.kubeconfig, KUBECACHEDIR: join(h.dir, 'kube-cache'), HOME: h.dir } });
    t.teardown(() => pf.kill());
    const local = await new Promise<number>((resolve, reject) => {
      let out = '';
      pf.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /Forwarding from 127\.0\.0\.1:(\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      let err = '';
      pf.stderr.on('data', (d: Buffer) => (err += d.toString()));
      pf.once('exit', () => reject(new Error(`kubectl port-forward exited: ${out} ${err}`)));
    });
    for (const path of ['/one', '/two']) {
      const body = await fetch(`http://127.0.0.1:${local}${path}`).then((r) => r.text());
      t.is(body, `hello from ${path}`);
    }
  });
}
