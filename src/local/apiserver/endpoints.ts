// core/v1 Endpoints, kept in step with the EndpointSlices the slice controller writes, for the
// clients that still read Endpoints (`kubectl get endpoints`, `kubectl describe svc`, older
// controllers). One Endpoints per managed slice, named after the service; ready endpoints go to
// addresses, the others to notReadyAddresses (pkg/controller/endpoint). Ours carry the label the
// real endpoints controller sets, endpointslice.kubernetes.io/skip-mirror, and only those are
// rewritten or deleted here.
import { logger } from '../../common/log.ts';
import type { Registry } from './registry.ts';
import { byKind } from './resources.ts';
import type { StoreEvent } from './store.ts';
import { deepEqual, isObject, type JsonObject, type KubeObject } from './types.ts';

const log = logger('apiserver');
const SLICES = 'endpointslices.discovery.k8s.io';
const MANAGED_BY = 'endpointslice-controller.k8s.io';
const SKIP_MIRROR = 'endpointslice.kubernetes.io/skip-mirror';

export class EndpointsMirror {
  private readonly registry: Registry;
  private readonly dirty = new Set<string>();
  private running: Promise<void> = Promise.resolve();
  private scheduled = false;
  private unsubscribe: (() => void) | undefined;

  constructor(registry: Registry) {
    this.registry = registry;
  }

  start(): Promise<void> {
    for (const s of this.registry.store.list(SLICES)) this.dirty.add(`${s.metadata.namespace}/${s.metadata.name}`);
    for (const e of this.registry.store.list('endpoints')) if (e.metadata.labels?.[SKIP_MIRROR] === 'true') this.dirty.add(`${e.metadata.namespace}/${e.metadata.name}`);
    this.unsubscribe = this.registry.store.subscribe((ev) => this.onEvent(ev));
    return this.flush();
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
    await this.running;
  }

  private onEvent(ev: StoreEvent): void {
    if (ev.resource !== SLICES) return;
    this.dirty.add(`${ev.object.metadata.namespace}/${ev.object.metadata.name}`);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => void this.flush());
  }

  private flush(): Promise<void> {
    this.scheduled = false;
    this.running = this.running.then(async () => {
      const keys = [...this.dirty];
      this.dirty.clear();
      for (const key of keys) {
        const [ns, name] = key.split('/') as [string, string];
        await this.reconcile(ns, name).catch((err: unknown) => log.warn({ err, endpoints: key }, 'could not update the Endpoints; retried on the next change of its EndpointSlice'));
      }
    });
    return this.running;
  }

  private async reconcile(ns: string, name: string): Promise<void> {
    const d = byKind('Endpoints');
    const slice = this.registry.store.get(SLICES, ns, name);
    const current = this.registry.store.get('endpoints', ns, name);
    const ours = !current || current.metadata.labels?.[SKIP_MIRROR] === 'true';
    if (!ours) return; // a user's own Endpoints of that name
    if (!slice || slice.metadata.labels?.['endpointslice.kubernetes.io/managed-by'] !== MANAGED_BY) {
      if (current) await this.registry.delete(d, ns, name, undefined);
      return;
    }
    const subsets = subsetsOf(slice);
    const labels = { ...Object.fromEntries(Object.entries(slice.metadata.labels ?? {}).filter(([k]) => !k.startsWith('endpointslice.kubernetes.io/') && k !== 'kubernetes.io/service-name')), [SKIP_MIRROR]: 'true' };
    if (!current) {
      await this.registry.create(d, ns, { metadata: { name, labels }, subsets });
    } else if (!deepEqual([current.subsets ?? [], current.metadata.labels], [subsets, labels])) {
      await this.registry.update(d, ns, name, { ...current, metadata: { ...current.metadata, labels }, subsets });
    }
  }
}

function subsetsOf(slice: KubeObject): JsonObject[] {
  const ready: JsonObject[] = [];
  const notReady: JsonObject[] = [];
  for (const e of Array.isArray(slice.endpoints) ? slice.endpoints.filter(isObject) : []) {
    const cond = isObject(e.conditions) ? e.conditions : {};
    for (const ip of Array.isArray(e.addresses) ? e.addresses : []) {
      const addr = { ip, ...(e.nodeName ? { nodeName: e.nodeName } : {}), ...(isObject(e.targetRef) ? { targetRef: e.targetRef } : {}) };
      (cond.ready !== false ? ready : notReady).push(addr);
    }
  }
  const ports = (Array.isArray(slice.ports) ? slice.ports.filter(isObject) : [])
    .filter((p) => typeof p.port === 'number')
    .map((p) => ({ ...(p.name ? { name: p.name } : {}), port: p.port, protocol: p.protocol ?? 'TCP', ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}) }));
  if (ready.length === 0 && notReady.length === 0) return [];
  return [{ ...(ready.length ? { addresses: ready } : {}), ...(notReady.length ? { notReadyAddresses: notReady } : {}), ports }];
}
