// The agent's settings from the environment: defaults, parsing, and misspellings refused.
import test from 'ava';
import { loadAgentConfig } from '../../src/agent/config.ts';

const base = { MESH_POD_CGROUP: '/sys/fs/cgroup/kubepods' };

test('defaults: Hubble-sized flow ring, flows API on 4244, plaintext flows on', (t) => {
  const c = loadAgentConfig(base);
  t.is(c.flowRing, 4095);
  t.is(c.observerAddress, '0.0.0.0:4244');
  t.true(c.observeUnenrolled);
  t.is(c.observerAdvertise, undefined);
});

test('flow settings are parsed and checked', (t) => {
  const c = loadAgentConfig({ ...base, MESH_FLOW_RING: '16', MESH_FLOW_OBSERVE_PLAINTEXT: 'off', MESH_OBSERVER_ADDRESS: '127.0.0.1:0', MESH_OBSERVER_ADVERTISE: '10.0.0.5:4244' });
  t.is(c.flowRing, 16);
  t.false(c.observeUnenrolled);
  t.is(c.observerAddress, '127.0.0.1:0');
  t.is(c.observerAdvertise, '10.0.0.5:4244');
  t.throws(() => loadAgentConfig({ ...base, MESH_FLOW_OBSERVE_PLAINTEXT: 'maybe' }), { message: /MESH_FLOW_OBSERVE_PLAINTEXT=maybe: expected true or false/ });
  t.throws(() => loadAgentConfig({ ...base, MESH_FLOW_RING: '0' }), { message: /MESH_FLOW_RING=0/ });
  t.throws(() => loadAgentConfig({ ...base, MESH_FLOW_RINGS: '10' }), { message: /unknown setting MESH_FLOW_RINGS/ });
});
