// The pod status the local kubelet reports (src/local/runtime/podstatus.ts): init containers
// before containers, probes' readiness, and the phase.
import test from 'ava';
import type { ContainerState } from '../../src/local/runtime/containers.ts';
import { podStatusParts } from '../../src/local/runtime/podstatus.ts';

const spec = { restartPolicy: 'Always', initContainers: [{ name: 'a', image: 'i' }, { name: 'b', image: 'i' }], containers: [{ name: 'main', image: 'i' }] };
const st = (name: string, state: ContainerState['state'], restartCount = 0): { name: string; st: ContainerState; containerID: string } => ({
  name,
  st: { name, state, lastState: {}, ready: false, restartCount, started: true },
  containerID: `podman://x_${name}`,
});
const done = { terminated: { exitCode: 0, reason: 'Completed', startedAt: '', finishedAt: '' } };
const failed = { terminated: { exitCode: 3, reason: 'Error', startedAt: '', finishedAt: '' } };
const running = { running: { startedAt: '' } };

test('while an init container runs the pod is Pending, not Initialized, and its containers are PodInitializing', (t) => {
  const p = podStatusParts({ spec, initContainers: [st('a', done), st('b', running)], containers: [], probes: new Map() });
  t.is(p.phase, 'Pending');
  t.false(p.initialized);
  t.false(p.ready);
  t.deepEqual(p.initContainerStatuses!.map((s) => [s.name, s.ready]), [['a', true], ['b', false]]);
  t.deepEqual(p.containerStatuses[0]!.state, { waiting: { reason: 'PodInitializing' } });
});

test('a failed init container fails the pod only under restartPolicy Never', (t) => {
  t.is(podStatusParts({ spec, initContainers: [st('a', failed, 1)], containers: [], probes: new Map() }).phase, 'Pending');
  t.is(podStatusParts({ spec: { ...spec, restartPolicy: 'Never' }, initContainers: [st('a', failed)], containers: [], probes: new Map() }).phase, 'Failed');
});

test('once initialized, a running container is Ready unless its probes say otherwise', (t) => {
  const base = { spec, initContainers: [st('a', done), st('b', done)], containers: [st('main', running)] };
  const plain = podStatusParts({ ...base, probes: new Map() });
  t.like(plain, { phase: 'Running', initialized: true, ready: true });
  const probed = podStatusParts({ ...base, probes: new Map([['main', { ready: false, started: false }]]) });
  t.like(probed, { phase: 'Running', ready: false });
  t.like(probed.containerStatuses[0], { ready: false, started: false, containerID: 'podman://x_main' });
  t.is(podStatusParts({ ...base, containers: [st('main', done)], probes: new Map() }).phase, 'Succeeded');
});
