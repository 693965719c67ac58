// Where meshctl finds the ztunnels (src/cli/ztunnels.ts): the local cluster's mesh.json, or the
// chart's node pods, where a pod being deleted is a draining ztunnel.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as k8s from '@kubernetes/client-node';
import test from 'ava';
import { localTargets, nodePodTargets, ztunnelAccess, ZtunnelConfigError } from '../../src/cli/ztunnels.ts';

const pod = (name: string, node: string, phase = 'Running', deleting = false): k8s.V1Pod => ({
  metadata: { name, namespace: 'mesh-system', ...(deleting ? { deletionTimestamp: new Date() } : {}) },
  spec: { nodeName: node, containers: [] },
  status: { phase },
});

test('node pods: one serving ztunnel per node, pods being deleted are draining, pending pods are left out', (t) => {
  const pods = [pod('mesh-node-b', 'node2'), pod('mesh-node-old', 'node1', 'Running', true), pod('mesh-node-a', 'node1'), pod('mesh-node-new', 'node3', 'Pending')];
  const all = nodePodTargets(pods);
  t.deepEqual(all.serving.map((p) => p.metadata!.name), ['mesh-node-a', 'mesh-node-b']);
  t.deepEqual(all.draining.map((p) => p.metadata!.name), ['mesh-node-old']);
  const one = nodePodTargets(pods, 'node1');
  t.deepEqual(one.serving.map((p) => p.metadata!.name), ['mesh-node-a']);
  t.deepEqual(one.draining.map((p) => p.metadata!.name), ['mesh-node-old']);
  t.deepEqual(nodePodTargets(pods, 'node9'), { serving: [], draining: [] });
});

test("mesh.json: every node's ztunnel, or --node's, with the draining ones a rollout left", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-ztunnels-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(
    join(dir, 'mesh.json'),
    JSON.stringify({ nodes: { node2: { ztunnelAdmin: '127.0.0.1:15002' }, node1: { ztunnelAdmin: '127.0.0.1:15001', ztunnelDraining: ['127.0.0.1:25001'] } } }),
  );
  t.deepEqual(localTargets(dir), {
    serving: [{ node: 'node1', admin: '127.0.0.1:15001' }, { node: 'node2', admin: '127.0.0.1:15002' }],
    draining: [{ node: 'node1', admin: '127.0.0.1:25001', draining: true }],
  });
  t.deepEqual(localTargets(dir, 'node2'), { serving: [{ node: 'node2', admin: '127.0.0.1:15002' }], draining: [] });
  const e = t.throws(() => localTargets(dir, 'node9'), { instanceOf: ZtunnelConfigError });
  t.is(e.code, 'MESH_ERR_UNKNOWN_NODE');
  t.regex(e.message, /known nodes: node1, node2/);
  // --admin wins over both.
  const access = await ztunnelAccess({ stateDir: dir, admin: '10.0.0.1:15000', node: 'node1' });
  t.deepEqual(access.serving, [{ node: 'node1', admin: '10.0.0.1:15000' }]);
  t.deepEqual(access.draining, []);
});
