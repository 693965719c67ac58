// meshctl check --post-install: the verdicts from what the relay reports.
import test from 'ava';
import type { NodeInfo, ServerStatus } from '../../src/flows/types.ts';
import { meshHealth } from '../../src/cli/health.ts';

const status: ServerStatus = {
  numFlows: 10, maxFlows: 8190, seenFlows: 10, flowsRate: 1, uptimeNs: 1, numConnectedNodes: 2, numUnavailableNodes: 0,
  unavailableNodes: [], kernelEventsLost: 0, ztunnelRecordsLost: 0, flowsOverwritten: 0, version: '0.1.0',
};
const node = (name: string, over: Partial<NodeInfo> = {}): NodeInfo => ({
  name, address: '10.0.0.1:4244', state: 'CONNECTED', version: '0.1.0', numFlows: 5, maxFlows: 4095, seenFlows: 5, uptimeNs: 1, error: '',
  enrolledPods: 2, ztunnelConnected: true,
  configClients: [
    { id: `agent~${name}`, inSync: true, resources: 9, nacks: 0, connectedAt: '' },
    { id: `ztunnel~${name}`, inSync: true, resources: 10, nacks: 0, connectedAt: '' },
  ],
  ...over,
});

test('a healthy mesh: every verdict ok', (t) => {
  const r = meshHealth('127.0.0.1:4245', status, [node('node1'), node('node2')]);
  t.deepEqual(r.map((x) => `${x.name}:${x.status}`), ['controller:ok', 'node1 agent:ok', 'node1 ztunnel:ok', 'node1 config:ok', 'node2 agent:ok', 'node2 ztunnel:ok', 'node2 config:ok', 'flows:ok']);
});

test('each broken part fails with what to do', (t) => {
  const down = meshHealth('127.0.0.1:4245', new Error('connect ECONNREFUSED'), []);
  t.like(down[0], { name: 'controller', status: 'fail' });
  t.regex(down[0]!.fix!, /meshctl dev status/);
  const r = meshHealth('127.0.0.1:4245', { ...status, kernelEventsLost: 3 }, [
    node('node1', { configClients: [{ id: 'agent~node1', inSync: true, resources: 9, nacks: 0, connectedAt: '' }] }),
    node('node2', { ztunnelConnected: false, configClients: [{ id: 'agent~node2', inSync: false, resources: 9, nacks: 1, connectedAt: '' }, { id: 'ztunnel~node2', inSync: true, resources: 1, nacks: 0, connectedAt: '' }] }),
    node('node3', { state: 'UNAVAILABLE', error: 'deadline exceeded' }),
  ]);
  const by = new Map(r.map((x) => [x.name, x]));
  t.like(by.get('node1 ztunnel'), { status: 'fail', detail: 'not connected to the controller' });
  t.like(by.get('node2 ztunnel'), { status: 'fail' });
  t.regex(by.get('node2 ztunnel')!.detail, /not to its node agent/);
  t.like(by.get('node2 config'), { status: 'fail' });
  t.like(by.get('node3 agent'), { status: 'fail' });
  t.regex(by.get('node3 agent')!.detail, /deadline exceeded/);
  t.like(by.get('flows'), { status: 'warn' });
  t.true(r.filter((x) => x.status !== 'ok').every((x) => x.fix), 'every problem says what to do');
});

test('no node agent at all is a failure, not an empty success', (t) => {
  const r = meshHealth('127.0.0.1:4245', status, []);
  t.like(r.at(-1), { name: 'nodes', status: 'fail' });
});
