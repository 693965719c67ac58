// The controller's share of propagation, in process and without I/O: one pod changes in a cluster
// of N pods (its label takes it out of the mesh, then back), and the controller rebuilds the model
// and publishes it to the config store (encode, hash, diff). Measures the time from the change to
// the store's change set, as the controller's rebuild() does it, and what a full first publish
// costs. Two ways: the full rebuild (buildModel, the reference; what every change cost before
// builds were incremental) publishing the whole model, and the controller's IncrementalModel
// publishing the names a commit reports.        node bench/model.ts [--pods 10000] [--changes 40]
import { parseArgs } from 'node:util';
import type * as k8s from '@kubernetes/client-node';
import { buildModel, IncrementalModel, MODEL_KINDS, type ClusterSnapshot, type KubeObject, type MeshModel, type ModelChanges } from '../src/controller/model/index.ts';
import { AUTHORIZATION, ConfigStore, SERVICE, WORKLOAD } from '../src/xds/index.ts';
import { bigSnapshot, OPTS } from '../test/helpers/model-fixtures.ts';

const { values } = parseArgs({ options: { pods: { type: 'string', default: '10000' }, changes: { type: 'string', default: '40' } } });
const PODS = Number(values.pods);
const CHANGES = Number(values.changes);

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
}

/** The whole model, as the controller published it before builds were incremental. */
function publish(store: ConfigStore, model: MeshModel): number {
  return store.batch((tx) => {
    for (const [type, items] of [
      [WORKLOAD, model.workloads],
      [SERVICE, model.services],
      [AUTHORIZATION, model.authorizations],
    ] as const) {
      for (const [name, value] of items) tx.set(type, name, value as never);
      for (const [name] of store.entries(type)) if (!items.has(name)) tx.remove(type, name);
    }
  });
}

/** The names a commit reported, as the controller publishes now. */
function publishChanges(store: ConfigStore, model: MeshModel, changes: ModelChanges): number {
  return store.batch((tx) => {
    for (const [type, items, names] of [
      [WORKLOAD, model.workloads, changes.workloads],
      [SERVICE, model.services, changes.services],
      [AUTHORIZATION, model.authorizations, changes.authorizations],
    ] as const) {
      for (const name of names) {
        const value = items.get(name);
        if (value !== undefined) tx.set(type, name, value as never);
        else if (store.get(type, name)) tx.remove(type, name);
      }
    }
  });
}

interface Builder {
  /** The model of the snapshot; `changed`: the pod that differs from the previous call's. */
  build(snap: ClusterSnapshot, changed?: k8s.V1Pod): MeshModel;
  publish(store: ConfigStore, model: MeshModel): number;
}

const full: Builder = { build: (snap) => buildModel(snap, OPTS), publish };

function incremental(): Builder {
  const m = new IncrementalModel(OPTS);
  let changes: ModelChanges | undefined;
  return {
    build(snap, changed) {
      if (changed) m.set('pods', changed);
      else for (const k of MODEL_KINDS) for (const o of (snap[k] ?? []) as KubeObject[]) m.set(k, o);
      changes = m.commit();
      return m.model;
    },
    publish: (store, model) => publishChanges(store, model, changes!),
  };
}

function run(label: string, b: Builder): void {
  const snap = bigSnapshot(PODS, PODS / 10, 100);
  const store = new ConfigStore();
  let t = performance.now();
  const first = b.build(snap);
  const firstBuild = performance.now() - t;
  t = performance.now();
  b.publish(store, first);
  const firstPublish = performance.now() - t;
  const builds: number[] = [];
  const publishes: number[] = [];
  const totals: number[] = [];
  for (let i = 0; i < CHANGES; i++) {
    // The informer replaces a changed object: a new pod object, the rest the same objects.
    // A pod of a meshed namespace (bigSnapshot leaves every fourth namespace out of the mesh).
    let at = (Math.floor(i / 2) * 7919) % snap.pods.length;
    if ((at % 20) % 4 === 3) at = (at + 1) % snap.pods.length;
    const old = snap.pods[at]!;
    const labels = { ...old.metadata!.labels };
    if (i % 2 === 0) labels['mesh.io/dataplane-mode'] = 'none';
    else delete labels['mesh.io/dataplane-mode'];
    const changed: k8s.V1Pod = { ...old, metadata: { ...old.metadata!, labels } };
    snap.pods = snap.pods.map((p, j) => (j === at ? changed : p));
    const t0 = performance.now();
    const model = b.build(snap, changed);
    const t1 = performance.now();
    const n = b.publish(store, model);
    const t2 = performance.now();
    if (n < 1) throw new Error(`change ${i} published nothing`);
    builds.push(t1 - t0);
    publishes.push(t2 - t1);
    totals.push(t2 - t0);
  }
  const f = (xs: number[]) => `p50 ${percentile(xs, 50).toFixed(1)} / p99 ${percentile(xs, 99).toFixed(1)} ms`;
  console.log(`${label}: first build ${firstBuild.toFixed(0)} ms + publish ${firstPublish.toFixed(0)} ms; one pod changed: build ${f(builds)}, publish ${f(publishes)}, total ${f(totals)}`);
}

console.log(`${PODS} pods, ${PODS / 10} services, 100 policies; ${CHANGES} single-pod changes`);
run('full rebuild (buildModel)', full);
run('incremental (IncrementalModel)', incremental());
