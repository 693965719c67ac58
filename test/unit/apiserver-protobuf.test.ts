// The protobuf request codec: bodies real kubectl sent (test/fixtures/kubectl-protobuf.json) decode
// to the JSON kubectl would have sent for the same command (`--dry-run=client -o json`), and
// messages built here with protobufjs cover what kubectl's generators leave out (binary Secret
// data, times, int-or-string, quantities, pointer fields set to zero).
import { readFileSync } from 'node:fs';
import test from 'ava';
import protobuf from 'protobufjs';
import { ApiError } from '../../src/local/apiserver/errors.ts';
import { decodeProtobuf } from '../../src/local/apiserver/protobuf.ts';

const fixtures = JSON.parse(readFileSync(new URL('../fixtures/kubectl-protobuf.json', import.meta.url), 'utf8')) as Record<string, { hex: string }>;
const captured = (name: string) => decodeProtobuf(Buffer.from(fixtures[name]!.hex, 'hex'), []);

const schema = new protobuf.Root().loadSync(
  ['runtime', 'meta', 'intstr', 'resource', 'core', 'autoscaling', 'coordination', 'policy', 'networking', 'authorization'].map((f) => new URL(`../../proto/k8s/${f}.proto`, import.meta.url).pathname),
  { keepCase: true },
);

/** A body as client-go frames it: "k8s\0" + runtime.Unknown{typeMeta, raw}. */
function envelope(apiVersion: string, kind: string, raw: Uint8Array): Buffer {
  const Unknown = schema.lookupType('k8s.io.apimachinery.pkg.runtime.Unknown');
  return Buffer.concat([Buffer.from('k8s\0', 'latin1'), Unknown.encode(Unknown.fromObject({ typeMeta: { apiVersion, kind }, raw, contentType: '' })).finish()]);
}
const encode = (type: string, object: object) => {
  const t = schema.lookupType(type);
  return t.encode(t.fromObject(object)).finish();
};

function rejects(t: import('ava').ExecutionContext, body: Buffer, code: number, message: RegExp): void {
  const err = t.throws(() => decodeProtobuf(body, ['application/json', 'application/vnd.kubernetes.protobuf']));
  t.true(err instanceof ApiError);
  t.is((err as ApiError).httpStatus, code);
  t.regex(err!.message, message);
}

test('kubectl create deployment --replicas=0: decodes to the JSON kubectl would send, replicas 0 kept', (t) => {
  t.deepEqual(captured('deployment'), {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', labels: { app: 'web' } },
    spec: {
      replicas: 0,
      selector: { matchLabels: { app: 'web' } },
      template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'nginx', image: 'nginx', ports: [{ containerPort: 8080 }], resources: {} }] } },
      strategy: {},
    },
    status: {},
  });
});

test('kubectl create job and cronjob decode with their pod templates', (t) => {
  t.deepEqual(captured('job'), {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name: 'j' },
    spec: { template: { metadata: {}, spec: { containers: [{ name: 'j', image: 'busybox', command: ['echo', 'hi'], resources: {} }], restartPolicy: 'Never' } } },
    status: {},
  });
  const cj = captured('cronjob');
  t.is(cj.kind, 'CronJob');
  t.like(cj.spec, { schedule: '*/5 * * * *', jobTemplate: { metadata: { name: 'cj' } } });
});

test('kubectl create service clusterip: ports with an int-or-string targetPort', (t) => {
  t.deepEqual(captured('service'), {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'svc', labels: { app: 'svc' } },
    spec: { ports: [{ name: '80-8080', protocol: 'TCP', port: 80, targetPort: 8080 }], selector: { app: 'svc' }, type: 'ClusterIP' },
    status: { loadBalancer: {} },
  });
});

test('kubectl create role, rolebinding, token and auth can-i bodies decode', (t) => {
  t.deepEqual(captured('role'), { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: { name: 'r' }, rules: [{ verbs: ['get'], apiGroups: [''], resources: ['pods'] }] });
  t.deepEqual(captured('rolebinding').roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'r' });
  t.deepEqual(captured('rolebinding').subjects, [{ kind: 'ServiceAccount', name: 'sa', namespace: 'default' }]);
  t.like(captured('tokenrequest'), { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: {} });
  t.like(captured('selfsubjectaccessreview'), { kind: 'SelfSubjectAccessReview', spec: { resourceAttributes: { namespace: 'default', verb: 'get', resource: 'pods' } } });
});

test('Secret data is bytes on the wire and base64 in JSON, byte for byte', (t) => {
  const binary = Buffer.from([0, 1, 2, 0xfe, 0xff, 0x80, 0x0a]);
  const raw = encode('k8s.io.api.core.v1.Secret', { metadata: { name: 's', namespace: 'default', uid: '', generation: 0 }, data: { bin: binary, text: Buffer.from('v'), empty: Buffer.alloc(0) }, type: 'Opaque', immutable: false });
  const secret = decodeProtobuf(envelope('v1', 'Secret', raw), []);
  t.deepEqual(secret, {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 's', namespace: 'default' },
    immutable: false, // a pointer set to false stays; the empty uid and zero generation go
    data: { bin: binary.toString('base64'), text: 'dg==', empty: '' },
    type: 'Opaque',
  });
});

test('a Pod: times in RFC 3339, named ports, quantities, owner references, zero pointers kept', (t) => {
  const raw = encode('k8s.io.api.core.v1.Pod', {
    metadata: {
      name: 'p',
      creationTimestamp: { seconds: 1765000000, nanos: 0 },
      deletionTimestamp: {},
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'rs', uid: 'u1', controller: true, blockOwnerDeletion: false }],
    },
    spec: {
      terminationGracePeriodSeconds: 0,
      automountServiceAccountToken: false,
      hostNetwork: false,
      containers: [{
        name: 'c',
        image: 'busybox',
        env: [{ name: 'A', value: '' }, { name: 'B', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } }],
        envFrom: [{ configMapRef: { localObjectReference: { name: 'cm' } } }],
        resources: { limits: { cpu: { string: '500m' } }, requests: { memory: { string: '64Mi' } } },
        readinessProbe: { handler: { httpGet: { path: '/healthz', port: { type: 1, strVal: 'http' } } }, periodSeconds: 5 },
        livenessProbe: { handler: { tcpSocket: { port: { type: 0, intVal: 8080 } } } },
        ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }],
      }],
      volumes: [{ name: 'scratch', volumeSource: { emptyDir: {} } }],
    },
  });
  const pod = decodeProtobuf(envelope('v1', 'Pod', raw), []);
  t.deepEqual(pod.metadata, {
    name: 'p',
    creationTimestamp: '2025-12-06T05:46:40Z',
    ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'rs', uid: 'u1', controller: true, blockOwnerDeletion: false }],
  });
  const spec = pod.spec as Record<string, unknown>;
  t.is(spec.terminationGracePeriodSeconds, 0);
  t.is(spec.automountServiceAccountToken, false);
  t.false('hostNetwork' in spec);
  t.deepEqual((spec.containers as object[])[0], {
    name: 'c',
    image: 'busybox',
    ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }],
    envFrom: [{ configMapRef: { name: 'cm' } }],
    env: [{ name: 'A' }, { name: 'B', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } }],
    resources: { limits: { cpu: '500m' }, requests: { memory: '64Mi' } },
    livenessProbe: { tcpSocket: { port: 8080 } },
    readinessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 5 },
  });
  t.deepEqual(spec.volumes, [{ name: 'scratch', emptyDir: {} }]);
});

test('a Pod status as a Go kubelet writes it: the zeros JSON always shows stay, times are RFC 3339', (t) => {
  const raw = encode('k8s.io.api.core.v1.Pod', {
    metadata: { name: 'p', namespace: 'default' },
    status: {
      phase: 'Running',
      podIP: '10.244.1.7',
      podIPs: [{ ip: '10.244.1.7' }],
      startTime: { seconds: 1765000000 },
      conditions: [{ type: 'Ready', status: 'False', lastTransitionTime: { seconds: 1765000001 }, reason: '', message: '' }],
      containerStatuses: [{ name: 'c', ready: false, restartCount: 0, image: 'busybox', imageID: '', started: false, state: { running: { startedAt: { seconds: 1765000002 } } } }],
    },
  });
  t.deepEqual(decodeProtobuf(envelope('v1', 'Pod', raw), []).status, {
    phase: 'Running',
    conditions: [{ type: 'Ready', status: 'False', lastTransitionTime: '2025-12-06T05:46:41Z' }],
    podIP: '10.244.1.7',
    podIPs: [{ ip: '10.244.1.7' }],
    startTime: '2025-12-06T05:46:40Z',
    containerStatuses: [{ name: 'c', state: { running: { startedAt: '2025-12-06T05:46:42Z' } }, ready: false, restartCount: 0, image: 'busybox', imageID: '', started: false }],
  });
});

test('a Lease (micro-second times), a PodDisruptionBudget (percent) and an Ingress (inlined rule value)', (t) => {
  const lease = encode('k8s.io.api.coordination.v1.Lease', { metadata: { name: 'mesh-controller', namespace: 'mesh-system' }, spec: { holderIdentity: 'pod-a', leaseDurationSeconds: 15, renewTime: { seconds: 1765000000, nanos: 123456789 }, leaseTransitions: 0 } });
  t.deepEqual(decodeProtobuf(envelope('coordination.k8s.io/v1', 'Lease', lease), []).spec, { holderIdentity: 'pod-a', leaseDurationSeconds: 15, renewTime: '2025-12-06T05:46:40.123456Z', leaseTransitions: 0 });
  const pdb = encode('k8s.io.api.policy.v1.PodDisruptionBudget', { metadata: { name: 'web' }, spec: { minAvailable: { type: 1, strVal: '50%' }, selector: { matchLabels: { app: 'web' } } } });
  t.deepEqual(decodeProtobuf(envelope('policy/v1', 'PodDisruptionBudget', pdb), []).spec, { minAvailable: '50%', selector: { matchLabels: { app: 'web' } } });
  const ingress = encode('k8s.io.api.networking.v1.Ingress', {
    metadata: { name: 'web' },
    spec: { rules: [{ host: 'web.example', ingressRuleValue: { http: { paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name: 'web', port: { number: 80 } } } }] } } }] },
  });
  t.deepEqual(decodeProtobuf(envelope('networking.k8s.io/v1', 'Ingress', ingress), []).spec, {
    rules: [{ host: 'web.example', http: { paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name: 'web', port: { number: 80 } } } }] } }],
  });
});

test('a SubjectAccessReview: user, groups and extra (a list per key, as in JSON)', (t) => {
  const sar = encode('k8s.io.api.authorization.v1.SubjectAccessReview', {
    metadata: {},
    spec: { resourceAttributes: { namespace: 'shop', verb: 'list', resource: 'pods' }, user: 'alice', groups: ['dev'], extra: { scopes: { items: ['a', 'b'] } } },
  });
  t.deepEqual(decodeProtobuf(envelope('authorization.k8s.io/v1', 'SubjectAccessReview', sar), []).spec, {
    resourceAttributes: { namespace: 'shop', verb: 'list', resource: 'pods' },
    user: 'alice',
    groups: ['dev'],
    extra: { scopes: ['a', 'b'] },
  });
});

test('a Scale to zero keeps replicas 0; DeleteOptions decode under any group-version', (t) => {
  const scale = decodeProtobuf(envelope('autoscaling/v1', 'Scale', encode('k8s.io.api.autoscaling.v1.Scale', { metadata: { name: 'web', namespace: 'default' }, spec: { replicas: 0 }, status: { replicas: 0, selector: '' } })), []);
  t.deepEqual(scale, { apiVersion: 'autoscaling/v1', kind: 'Scale', metadata: { name: 'web', namespace: 'default' }, spec: { replicas: 0 }, status: { replicas: 0 } });
  const del = encode('k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions', { gracePeriodSeconds: 0, preconditions: { uid: 'u1' }, propagationPolicy: 'Foreground', dryRun: ['All'] });
  for (const apiVersion of ['v1', 'apps/v1', 'meta.k8s.io/v1']) {
    t.deepEqual(decodeProtobuf(envelope(apiVersion, 'DeleteOptions', del), []), { kind: 'DeleteOptions', apiVersion, gracePeriodSeconds: 0, preconditions: { uid: 'u1' }, propagationPolicy: 'Foreground', dryRun: ['All'] });
  }
});

test('a field this schema lacks is a 400 naming where it is, unless Go wrote it only as a zero', (t) => {
  const ld = (no: number, bytes: Uint8Array | string) => protobuf.Writer.create().uint32((no << 3) | 2).bytes(typeof bytes === 'string' ? Buffer.from(bytes) : bytes).finish();
  const varint = (no: number, v: number) => protobuf.Writer.create().uint32(no << 3).uint32(v).finish();
  const cat = (...parts: Uint8Array[]) => Buffer.concat(parts);
  // PodSpec.volumes[0] = Volume{name: "v", volumeSource: {nfs (field 7, not in volumes.proto): {server: "abc"}}}
  const volume = cat(ld(1, 'v'), ld(2, ld(7, ld(1, 'abc'))));
  const spec = ld(2, cat(ld(1, volume), ld(2, ld(1, 'c'))));
  rejects(t, envelope('v1', 'Pod', cat(ld(1, ld(1, 'p')), spec)), 400, /v1 Pod sets fields this API server's protobuf schema \(proto\/k8s\/\) does not carry: spec\.volumes: field 7 of VolumeSource; send the object as JSON/);
  rejects(t, envelope('v1', 'Pod', cat(ld(1, ld(1, 'p')), varint(40, 3))), 400, /does not carry: \(top level\): field 40 of Pod;/);
  // Unknown fields holding zeros (Go writes the fields it always writes, zero or not) are fine.
  const zeros = cat(ld(1, cat(ld(1, 'p'), varint(90, 0))), ld(40, new Uint8Array()));
  t.deepEqual(decodeProtobuf(envelope('v1', 'Pod', zeros), []), { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' } });
});

test('garbage is a 400 that says what is wrong, an unknown kind a 415 that names it', (t) => {
  rejects(t, Buffer.from('{"kind":"Namespace"}'), 400, /not a Kubernetes protobuf message: it must start with the 4 bytes "k8s\\0"/);
  rejects(t, Buffer.from('k8s\0\xff\xff\xff\xff\xff', 'latin1'), 400, /envelope does not decode/);
  rejects(t, envelope('', '', new Uint8Array()), 400, /names no apiVersion and kind/);
  rejects(t, envelope('v1', 'Namespace', Buffer.from([0x0a, 0x10, 0x01])), 400, /not a valid v1 Namespace/);
  rejects(t, envelope('example.com/v1', 'Widget', new Uint8Array()), 415, /accepted media types include: application\/json, application\/vnd\.kubernetes\.protobuf .*no protobuf schema for example\.com\/v1 Widget; send it as application\/json/);
});
