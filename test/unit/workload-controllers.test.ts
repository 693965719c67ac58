// The pure parts of the local cluster's workload controllers: which pods a ReplicaSet removes
// first, how maxSurge/maxUnavailable percentages round, and when two pod templates are the same.
import test from 'ava';
import type * as k8s from '@kubernetes/client-node';
import { canonical, scaledValue, templateHash } from '../../src/local/controllers/base.ts';
import { deletionOrder } from '../../src/local/controllers/replicaset.ts';

const pod = (name: string, o: { node?: string; phase?: string; ready?: boolean; created?: string }): k8s.V1Pod => ({
  metadata: { name, creationTimestamp: new Date(o.created ?? '2026-01-01T00:00:00Z') },
  spec: { containers: [], ...(o.node ? { nodeName: o.node } : {}) },
  status: { phase: o.phase ?? 'Running', conditions: [{ type: 'Ready', status: o.ready === false ? 'False' : 'True' }] },
});

test('replicaset-scale-down-order: unscheduled, pending, not ready, then the newest go first', (t) => {
  const pods = [
    pod('old-ready', { node: 'n1', created: '2026-01-01T00:00:00Z' }),
    pod('new-ready', { node: 'n1', created: '2026-01-01T00:05:00Z' }),
    pod('not-ready', { node: 'n1', ready: false, created: '2026-01-01T00:00:00Z' }),
    pod('pending', { node: 'n2', phase: 'Pending', ready: false }),
    pod('unscheduled', { phase: 'Pending', ready: false }),
  ];
  t.deepEqual(deletionOrder(pods).map((p) => p.metadata!.name), ['unscheduled', 'pending', 'not-ready', 'new-ready', 'old-ready']);
});

test('rolling-update-bounds: surge rounds up, unavailable rounds down, as kube does', (t) => {
  t.is(scaledValue('25%', 2, true, '25%'), 1);
  t.is(scaledValue('25%', 2, false, '25%'), 0);
  t.is(scaledValue(undefined, 10, true, '25%'), 3);
  t.is(scaledValue(undefined, 10, false, '25%'), 2);
  t.is(scaledValue(2, 10, false, '25%'), 2);
});

test('template-identity: key order and nulls do not change a template, its content does', (t) => {
  const a = { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'm', image: 'x' }] } };
  const b = { spec: { containers: [{ image: 'x', name: 'm' }] }, metadata: { creationTimestamp: null, labels: { app: 'web' } } };
  t.is(canonical(a), canonical(b));
  t.is(templateHash(a), templateHash(b));
  t.regex(templateHash(a), /^[bcdfghjklmnpqrstvwxz2456789]{10}$/);
  t.not(templateHash(a), templateHash({ ...a, spec: { containers: [{ name: 'm', image: 'y' }] } }));
  t.not(templateHash(a), templateHash(a, 1), 'a collision count gives another name');
});
