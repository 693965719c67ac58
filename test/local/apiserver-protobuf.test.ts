// kubectl's imperative commands against the local API server: `create namespace|configmap|secret|
// serviceaccount|service|token` send application/vnd.kubernetes.protobuf (client-go's typed
// clients); `run` and `expose` send JSON. All of them must work unchanged, with real kubectl.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import protobuf from 'protobufjs';
import { call, harness, kubectl } from '../helpers/apiserver.ts';

test('kubectl create namespace, configmap, secret generic and serviceaccount (protobuf bodies)', async (t) => {
  const h = await harness(t);
  const binary = Buffer.from([0x00, 0xff, 0xfe, 0x80, 0x0a, 0x0d, 0x41]);
  await writeFile(join(h.dir, 'blob'), binary);
  for (const [args, out] of [
    [['create', 'namespace', 'x'], 'namespace/x created'],
    [['create', 'configmap', 'c', '--from-literal=a=b', '--from-literal=empty='], 'configmap/c created'],
    [['create', 'configmap', 'bin', `--from-file=blob=${join(h.dir, 'blob')}`], 'configmap/bin created'],
    [['create', 'secret', 'generic', 's', '--from-literal=k=v', `--from-file=blob=${join(h.dir, 'blob')}`], 'secret/s created'],
    [['create', 'serviceaccount', 'sa', '-n', 'x'], 'serviceaccount/sa created'],
  ] as const) {
    const r = await kubectl(h, [...args]);
    t.is(r.code, 0, r.stderr);
    t.is(r.stdout.trim(), out);
  }
  t.regex((await kubectl(h, ['get', 'ns', 'x'])).stdout, /\nx\s+Active\s+\d+s\n/);
  t.deepEqual((await call(h.server, 'GET', '/api/v1/namespaces/default/configmaps/c')).body.data, { a: 'b', empty: '' });
  t.deepEqual((await call(h.server, 'GET', '/api/v1/namespaces/default/configmaps/bin')).body.binaryData, { blob: binary.toString('base64') });
  const secret = (await call(h.server, 'GET', '/api/v1/namespaces/default/secrets/s')).body;
  t.is(secret.type, 'Opaque');
  t.deepEqual(secret.data, { k: Buffer.from('v').toString('base64'), blob: binary.toString('base64') });
  const read = await kubectl(h, ['get', 'secret', 's', '-o', 'jsonpath={.data.blob}']);
  t.deepEqual(Buffer.from(read.stdout, 'base64'), binary);
  t.is((await call(h.server, 'GET', '/api/v1/namespaces/x/serviceaccounts/sa')).status, 200);
  const dup = await kubectl(h, ['create', 'namespace', 'x']);
  t.not(dup.code, 0);
  t.regex(dup.stderr, /namespaces "x" already exists/);
});

test('kubectl run, expose, create service and create token', async (t) => {
  const h = await harness(t);
  const run = await kubectl(h, ['run', 'p', '--image=busybox', '--', 'sleep', '1']);
  t.is(run.code, 0, run.stderr);
  t.is(run.stdout.trim(), 'pod/p created');
  const pod = (await call(h.server, 'GET', '/api/v1/namespaces/default/pods/p')).body;
  t.like(pod.spec.containers[0], { name: 'p', image: 'busybox', args: ['sleep', '1'] });
  t.deepEqual(pod.metadata.labels, { run: 'p' });

  const expose = await kubectl(h, ['expose', 'pod', 'p', '--port=80']);
  t.is(expose.code, 0, expose.stderr);
  t.is(expose.stdout.trim(), 'service/p exposed');
  const svc = (await call(h.server, 'GET', '/api/v1/namespaces/default/services/p')).body;
  t.deepEqual(svc.spec.selector, { run: 'p' });
  t.like(svc.spec.ports[0], { port: 80, targetPort: 80, protocol: 'TCP' });

  const create = await kubectl(h, ['create', 'service', 'clusterip', 'web', '--tcp=8080:http']);
  t.is(create.code, 0, create.stderr);
  t.like((await call(h.server, 'GET', '/api/v1/namespaces/default/services/web')).body.spec.ports[0], { name: '8080-http', port: 8080, targetPort: 'http' });
  t.regex((await kubectl(h, ['get', 'svc', 'web'])).stdout, /\nweb\s+ClusterIP\s+10\.96\.\d+\.\d+\s+<none>\s+8080\/TCP\s/);

  t.is((await kubectl(h, ['create', 'serviceaccount', 'robot'])).code, 0);
  const token = await kubectl(h, ['create', 'token', 'robot']);
  t.is(token.code, 0, token.stderr);
  // The token authenticates as the service account (which RBAC then gives no rights to read namespaces).
  const ns = await call(h.server, 'GET', '/api/v1/namespaces/default', undefined, { token: token.stdout.trim() });
  t.is(ns.status, 403);
  t.regex(ns.body.message, /"system:serviceaccount:default:robot" cannot get resource "namespaces"/);
  const short = await kubectl(h, ['create', 'token', 'robot', '--duration=10m', '--audience=mesh']);
  t.is(short.code, 0, short.stderr);
  const claims = JSON.parse(Buffer.from(short.stdout.trim().split('.')[1]!, 'base64url').toString());
  t.is(claims.exp - claims.iat, 600);
  t.deepEqual(claims.aud, ['mesh']);
});

for (const minor of [27, 33]) {
  test(`kubectl 1.${minor} create namespace and secret generic, whichever format it sends`, async (t) => {
    const h = await harness(t, { kubernetesVersion: { major: 1, minor } });
    const version = await kubectl(h, ['version', '--client', '-o', 'json']);
    t.is(JSON.parse(version.stdout).clientVersion.minor, String(minor));
    const ns = await kubectl(h, ['create', 'namespace', 'x']);
    t.is(ns.code, 0, ns.stderr);
    const secret = await kubectl(h, ['create', 'secret', 'generic', 's', '-n', 'x', '--from-literal=password=s3cr=t']);
    t.is(secret.code, 0, secret.stderr);
    t.is((await call(h.server, 'GET', '/api/v1/namespaces/x/secrets/s')).body.data.password, Buffer.from('s3cr=t').toString('base64'));
  });
}

test('a body the server cannot read: garbage protobuf is a 400, other formats a 415 listing what it reads', async (t) => {
  const h = await harness(t);
  const proto = { contentType: 'application/vnd.kubernetes.protobuf' };
  const before = (await call(h.server, 'GET', '/api/v1/namespaces')).body.items.length;
  const garbage = await call(h.server, 'POST', '/api/v1/namespaces', Buffer.from([0xde, 0xad, 0xbe, 0xef, 1, 2, 3]), proto);
  t.is(garbage.status, 400);
  t.is(garbage.body.reason, 'BadRequest');
  t.regex(garbage.body.message, /not a Kubernetes protobuf message: it must start with the 4 bytes "k8s\\0"/);
  const truncated = await call(h.server, 'POST', '/api/v1/namespaces', Buffer.from('k8s\0\x0a\x7f\x0a', 'latin1'), proto);
  t.is(truncated.status, 400);
  t.regex(truncated.body.message, /envelope does not decode/);

  const cbor = await call(h.server, 'POST', '/api/v1/namespaces', Buffer.from([0xa1, 0x61, 0x61, 0x01]), { contentType: 'application/cbor' });
  t.is(cbor.status, 415);
  t.is(cbor.body.reason, 'UnsupportedMediaType');
  t.regex(cbor.body.message, /accepted media types include: application\/json, application\/yaml, application\/vnd\.kubernetes\.protobuf, .*\(got "application\/cbor"\)/);
  t.is((await call(h.server, 'GET', '/api/v1/namespaces')).body.items.length, before, 'nothing was created');
});

test('a typed client deleting with protobuf DeleteOptions: its preconditions are honoured', async (t) => {
  const h = await harness(t);
  const root = new protobuf.Root().loadSync(['runtime', 'meta'].map((f) => new URL(`../../proto/k8s/${f}.proto`, import.meta.url).pathname), { keepCase: true });
  const Unknown = root.lookupType('k8s.io.apimachinery.pkg.runtime.Unknown');
  const DeleteOptions = root.lookupType('k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions');
  const body = (uid: string) => {
    const raw = DeleteOptions.encode(DeleteOptions.fromObject({ preconditions: { uid }, propagationPolicy: 'Background' })).finish();
    return Buffer.concat([Buffer.from('k8s\0', 'latin1'), Unknown.encode(Unknown.fromObject({ typeMeta: { apiVersion: 'v1', kind: 'DeleteOptions' }, raw })).finish()]);
  };
  t.is((await kubectl(h, ['create', 'configmap', 'c', '--from-literal=a=b'])).code, 0);
  const uid = (await call(h.server, 'GET', '/api/v1/namespaces/default/configmaps/c')).body.metadata.uid;
  const proto = { contentType: 'application/vnd.kubernetes.protobuf' };
  const stale = await call(h.server, 'DELETE', '/api/v1/namespaces/default/configmaps/c', body('not-the-uid'), proto);
  t.is(stale.status, 409);
  t.regex(stale.body.message, /Precondition failed: UID in precondition: not-the-uid/);
  t.is((await call(h.server, 'DELETE', '/api/v1/namespaces/default/configmaps/c', body(uid), proto)).status, 200);
  t.is((await call(h.server, 'GET', '/api/v1/namespaces/default/configmaps/c')).status, 404);
});

test('kubectl create role, rolebinding and clusterrole (protobuf bodies), then auth can-i (protobuf reviews)', async (t) => {
  const h = await harness(t);
  const sa = 'system:serviceaccount:default:robot';
  t.is((await kubectl(h, ['create', 'serviceaccount', 'robot'])).code, 0);
  const canI = async (...args: string[]) => (await kubectl(h, ['auth', 'can-i', ...args, `--as=${sa}`])).stdout.trim();
  t.is(await canI('get', 'pods'), 'no');
  for (const [args, out] of [
    [['create', 'role', 'reader', '--verb=get,list', '--resource=pods'], 'role.rbac.authorization.k8s.io/reader created'],
    [['create', 'rolebinding', 'robot-reader', '--role=reader', '--serviceaccount=default:robot'], 'rolebinding.rbac.authorization.k8s.io/robot-reader created'],
    [['create', 'clusterrole', 'ns-viewer', '--verb=get', '--resource=namespaces'], 'clusterrole.rbac.authorization.k8s.io/ns-viewer created'],
    [['create', 'clusterrolebinding', 'robot-ns', '--clusterrole=ns-viewer', '--serviceaccount=default:robot'], 'clusterrolebinding.rbac.authorization.k8s.io/robot-ns created'],
  ] as const) {
    const r = await kubectl(h, [...args]);
    t.is(r.code, 0, r.stderr);
    t.is(r.stdout.trim(), out);
  }
  t.deepEqual((await call(h.server, 'GET', '/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles/reader')).body.rules, [{ verbs: ['get', 'list'], apiGroups: [''], resources: ['pods'] }]);
  t.is(await canI('list', 'pods'), 'yes');
  t.is(await canI('delete', 'pods'), 'no');
  t.is(await canI('get', 'namespaces'), 'yes');
  t.regex((await kubectl(h, ['auth', 'can-i', '--list', `--as=${sa}`])).stdout, /pods\s+\[\]\s+\[\]\s+\[get list\]/);
});

test('kubectl create deployment and job (protobuf), scale, get all — the imperative workflow end to end', async (t) => {
  const h = await harness(t);
  const dep = await kubectl(h, ['create', 'deployment', 'web', '--image=localhost/busybox-test', '--replicas=2', '--', 'httpd', '-f', '-p', '8080']);
  t.is(dep.code, 0, dep.stderr);
  t.is(dep.stdout.trim(), 'deployment.apps/web created');
  const d = (await call(h.server, 'GET', '/apis/apps/v1/namespaces/default/deployments/web')).body;
  t.is(d.spec.replicas, 2);
  t.deepEqual(d.spec.selector.matchLabels, { app: 'web' });
  t.like(d.spec.template.spec.containers[0], { name: 'busybox-test', image: 'localhost/busybox-test', command: ['httpd', '-f', '-p', '8080'] });
  t.like(d.spec.strategy, { type: 'RollingUpdate' }, 'server defaults applied to what protobuf carried');

  const scaled = await kubectl(h, ['scale', 'deployment', 'web', '--replicas=3']);
  t.is(scaled.code, 0, scaled.stderr);
  t.is((await call(h.server, 'GET', '/apis/apps/v1/namespaces/default/deployments/web')).body.spec.replicas, 3);

  const job = await kubectl(h, ['create', 'job', 'once', '--image=localhost/busybox-test', '--', 'true']);
  t.is(job.code, 0, job.stderr);
  t.is(job.stdout.trim(), 'job.batch/once created');
  t.like((await call(h.server, 'GET', '/apis/batch/v1/namespaces/default/jobs/once')).body.spec, { backoffLimit: 6, completions: 1 });

  const all = await kubectl(h, ['get', 'all']);
  t.is(all.code, 0, all.stderr);
  t.regex(all.stdout, /deployment\.apps\/web\s+0\/3/);
  t.regex(all.stdout, /job\.batch\/once/);
});
