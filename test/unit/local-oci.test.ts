// The local kubelet's pod-spec handling for image containers, without root: the podman command it
// runs, the environment it builds, and the volumes it writes.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import type * as k8s from '@kubernetes/client-node';
import { findCgroup2Mount } from '../../src/common/cgroup.ts';
import { chooseRuntime, containerUlimits, runArgs } from '../../src/local/runtime/oci.ts';
import { containerEnv, fieldOf, ociSpec, unsupportedFields } from '../../src/local/runtime/podspec.ts';
import { prepareVolumes, type VolumeSources } from '../../src/local/runtime/volumes.ts';

const pod: k8s.V1Pod = {
  metadata: { name: 'web-1', namespace: 'shop', uid: 'u-1', labels: { app: 'web', tier: 'front' } },
  spec: { nodeName: 'node2', hostPID: true, containers: [] },
};

function sources(): VolumeSources {
  return {
    configMap: async (_ns, name) => (name === 'cfg' ? { 'a.conf': 'A', 'b.conf': 'B' } : undefined),
    secret: async (_ns, name) => (name === 'creds' ? { password: 'pw' } : undefined),
    token: async (p, audience, exp) => `token-for-${p.metadata!.name}-${audience ?? 'api'}-${exp}`,
    field: fieldOf(pod, '10.101.0.5', '10.250.0.3'),
  };
}

test('container ulimits are the hard limits of this process, processes capped at pid_max', (t) => {
  const limits = [
    'Limit                     Soft Limit           Hard Limit           Units     ',
    'Max processes             4096                 63459                processes ',
    'Max open files            1024                 4096                 files     ',
  ].join('\n');
  t.deepEqual(containerUlimits(limits, 4194304), ['--ulimit', 'nofile=4096:4096', '--ulimit', 'nproc=63459:63459']);
  t.deepEqual(containerUlimits(limits, 32768), ['--ulimit', 'nofile=4096:4096', '--ulimit', 'nproc=32768:32768']);
  const unlimited = limits.replace('63459 ', 'unlimited');
  t.deepEqual(containerUlimits(unlimited, Infinity), ['--ulimit', 'nofile=4096:4096', '--ulimit', 'nproc=-1:-1']);
  t.deepEqual(containerUlimits(unlimited, 32768), ['--ulimit', 'nofile=4096:4096', '--ulimit', 'nproc=32768:32768']);
  const own = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'))!.trim().split(/\s+/)[4];
  t.true(containerUlimits().includes(`nofile=${own}:${own}`));
});

test('host-command pods keep their mode; store images, localhost/ images and command-less containers run as OCI', async (t) => {
  t.is(await chooseRuntime({ image: 'local', command: ['sleep', '1'] }), 'host');
  t.is(await chooseRuntime({ image: `registry.invalid/absent-${process.pid}:1`, command: ['sleep', '1'] }), 'host');
  t.is(await chooseRuntime({ image: 'localhost/app', command: ['sleep', '1'] }), 'oci');
  t.is(await chooseRuntime({ image: 'busybox' }), 'oci');
});

test('an image container runs in the pod netns and cgroup, with its security context, command and mounts', (t) => {
  const c: k8s.V1Container = {
    name: 'main',
    image: 'localhost/app',
    command: ['httpd', '-f'],
    args: ['-p', '8080'],
    workingDir: '/srv',
    securityContext: { privileged: true, runAsUser: 1000, runAsGroup: 1000, capabilities: { add: ['NET_ADMIN'], drop: ['ALL'] } },
    volumeMounts: [{ name: 'cfg', mountPath: '/etc/app', readOnly: true }, { name: 'cfg', mountPath: '/etc/a.conf', subPath: 'a.conf' }],
  };
  const cgroup = join(findCgroup2Mount(), 'mt-kubepods', 'node2', 'podu-1');
  const a = runArgs(ociSpec(pod, c, { A: '1' }, { paths: new Map([['cfg', '/state/pods/u-1/volumes/cfg']]), unsupported: [] }, {
    name: 'mt_u-1_main', clusterPrefix: 'mt', netnsPath: '/run/netns/mt-node2-shop-web-1', cgroup,
  }));
  const joined = a.join(' ');
  t.true(joined.startsWith('--runtime runc --cgroup-manager cgroupfs run --rm'));
  t.regex(joined, /--network ns:\/run\/netns\/mt-node2-shop-web-1 /);
  t.regex(joined, / --cgroup-parent \/mt-kubepods\/node2\/podu-1 /);
  t.regex(joined, / --pull never /);
  // This process's own hard limits: a container cannot raise one without CAP_SYS_RESOURCE.
  t.true(joined.includes(containerUlimits().join(' ')));
  t.regex(joined, /--label io\.mesh\.local\.cluster=mt /);
  t.regex(joined, /--pid host --privileged --cap-add NET_ADMIN --cap-drop ALL --user 1000:1000 --workdir \/srv --env A=1 /);
  t.regex(joined, /--mount type=bind,source=\/state\/pods\/u-1\/volumes\/cfg,destination=\/etc\/app,ro /);
  t.regex(joined, /--mount type=bind,source=\/state\/pods\/u-1\/volumes\/cfg\/a\.conf,destination=\/etc\/a\.conf /);
  t.deepEqual(a.slice(-5), ['--entrypoint', '["httpd","-f"]', 'localhost/app', '-p', '8080']);
});

test('env from fieldRef, configMapKeyRef and secretKeyRef, with $(VAR) expansion; a missing key is an error', async (t) => {
  const c: k8s.V1Container = {
    name: 'main',
    env: [
      { name: 'NODE', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
      { name: 'IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
      { name: 'HOST_IP', valueFrom: { fieldRef: { fieldPath: 'status.hostIP' } } },
      { name: 'TIER', valueFrom: { fieldRef: { fieldPath: "metadata.labels['tier']" } } },
      { name: 'CONF', valueFrom: { configMapKeyRef: { name: 'cfg', key: 'a.conf' } } },
      { name: 'PW', valueFrom: { secretKeyRef: { name: 'creds', key: 'password' } } },
      { name: 'URL', value: 'http://$(IP):8080/$(NODE)' },
    ],
  };
  t.deepEqual(await containerEnv(c, 'shop', { HOSTNAME: 'web-1' }, sources()), {
    HOSTNAME: 'web-1', NODE: 'node2', IP: '10.101.0.5', HOST_IP: '10.250.0.3', TIER: 'front', CONF: 'A', PW: 'pw', URL: 'http://10.101.0.5:8080/node2',
  });
  await t.throwsAsync(containerEnv({ name: 'm', env: [{ name: 'X', valueFrom: { configMapKeyRef: { name: 'cfg', key: 'nope' } } }] }, 'shop', {}, sources()), {
    message: "couldn't find key nope in ConfigMap shop/cfg",
  });
  t.deepEqual(await containerEnv({ name: 'm', env: [{ name: 'X', valueFrom: { secretKeyRef: { name: 'absent', key: 'k', optional: true } } }] }, 'shop', {}, sources()), {});
});

test('volumes: configMap items, secret, downwardAPI, projected token; unknown kinds are named; a missing configMap fails the mount', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-oci-unit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const p: k8s.V1Pod = {
    ...pod,
    spec: {
      containers: [],
      volumes: [
        { name: 'cfg', configMap: { name: 'cfg', items: [{ key: 'b.conf', path: 'conf/b' }] } },
        { name: 'creds', secret: { secretName: 'creds' } },
        { name: 'info', downwardAPI: { items: [{ path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } }, { path: 'name', fieldRef: { fieldPath: 'metadata.name' } }] } },
        { name: 'tok', projected: { sources: [{ serviceAccountToken: { path: 'token', audience: 'vault', expirationSeconds: 600 } }, { configMap: { name: 'cfg' } }] } },
        { name: 'scratch', emptyDir: {} },
        { name: 'share', nfs: { server: 'x', path: '/' } },
      ],
    },
  };
  const v = await prepareVolumes(p, dir, sources());
  const read = (vol: string, file: string) => readFileSync(join(v.paths.get(vol)!, file), 'utf8');
  t.is(read('cfg', 'conf/b'), 'B');
  t.is(read('creds', 'password'), 'pw');
  t.is(read('info', 'labels'), 'app="web"\ntier="front"');
  t.is(read('info', 'name'), 'web-1');
  t.is(read('tok', 'token'), 'token-for-web-1-vault-600');
  t.is(read('tok', 'a.conf'), 'A');
  t.true(v.paths.has('scratch'));
  t.deepEqual(v.unsupported, ['spec.volumes[share].nfs']);
  await t.throwsAsync(prepareVolumes({ ...pod, spec: { containers: [], volumes: [{ name: 'x', configMap: { name: 'absent' } }] } }, dir, sources()), {
    message: 'MountVolume.SetUp failed for volume "x" : configmap "absent" not found',
  });
});

test('fields the kubelet cannot honour are named, never dropped', (t) => {
  const c: k8s.V1Container = {
    name: 'main',
    livenessProbe: { grpc: { port: 9000 } },
    readinessProbe: { exec: { command: ['true'] } },
    lifecycle: { preStop: { exec: { command: ['true'] } }, postStart: { exec: { command: ['true'] } } },
    volumeMounts: [{ name: 'v', mountPath: '/v' }],
  };
  const notHonoured = ['spec.containers{main}.livenessProbe.grpc', 'spec.containers{main}.lifecycle.postStart'];
  t.deepEqual(unsupportedFields(pod, c, true), notHonoured);
  t.deepEqual(unsupportedFields(pod, c, false), [...notHonoured, 'spec.containers{main}.volumeMounts', 'spec.hostPID']);
});
