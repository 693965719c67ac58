// The EndpointSlice controller's job, done in-process: one discovery.k8s.io/v1 EndpointSlice per
// selector-bearing Service, listing the matching pods that have an IP, with ready/serving
// conditions from the pod's Ready condition (pkg/controller/endpointslice). Simplifications: one
// slice per service (no 100-endpoint split), named after the service, IPv4 only; a named
// targetPort resolves through the first matching pod that declares it.
import { logger } from '../../common/log.ts';
import type { Registry } from './registry.ts';
import { byKind } from './resources.ts';
import type { StoreEvent } from './store.ts';
import { deepEqual, isObject, type JsonObject, type KubeObject } from './types.ts';

const log = logger('apiserver');
const MANAGED_BY = 'endpointslice-controller.k8s.io';
const SLICES = 'endpointslices.discovery.k8s.io';

export class EndpointSliceController {
  private readonly registry: Registry;
  private readonly dirty = new Set<string>(); // "ns/service"
  private running: Promise<void> = Promise.resolve();
  private scheduled = false;
  private unsubscribe: (() => void) | undefined;

  constructor(registry: Registry) {
    this.registry = registry;
  }

  /** Reconciles every service now, then follows pod and service changes. */
  async start(): Promise<void> {
    for (const svc of this.registry.store.list('services')) this.dirty.add(`${svc.metadata.namespace}/${svc.metadata.name}`);
    for (const s of this.registry.store.list(SLICES)) if (isManaged(s)) this.dirty.add(`${s.metadata.namespace}/${s.metadata.labels!['kubernetes.io/service-name']}`);
    this.unsubscribe = this.registry.store.subscribe((ev) => this.onEvent(ev));
    await this.flush();
  }

  /** Stops following changes and waits for the reconcile in progress. */
  async stop(): Promise<void> {
    this.unsubscribe?.();
    await this.running;
  }

  private onEvent(ev: StoreEvent): void {
    const ns = ev.object.metadata.namespace ?? '';
    if (ev.resource === 'services') this.dirty.add(`${ns}/${ev.object.metadata.name}`);
    else if (ev.resource === 'pods') {
      for (const svc of this.registry.store.list('services', ns)) {
        const sel = (svc.spec as JsonObject | undefined)?.selector;
        if (isObject(sel) && [ev.object, ev.prev].some((p) => p && matches(p, sel))) this.dirty.add(`${ns}/${svc.metadata.name}`);
      }
    } else return;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => void this.flush());
    }
  }

  private flush(): Promise<void> {
    this.scheduled = false;
    this.running = this.running.then(async () => {
      const keys = [...this.dirty];
      this.dirty.clear();
      for (const key of keys) {
        const [ns, name] = key.split('/') as [string, string];
        await this.reconcile(ns, name).catch((err: unknown) => log.warn({ err, service: key }, 'could not update the EndpointSlice; it will be retried on the next pod or service change'));
      }
    });
    return this.running;
  }

  private async reconcile(ns: string, name: string): Promise<void> {
    const d = byKind('EndpointSlice');
    const svc = this.registry.store.get('services', ns, name);
    const current = this.registry.store.get(SLICES, ns, name);
    const spec = (svc?.spec ?? {}) as JsonObject;
    if (!svc || !isObject(spec.selector) || Object.keys(spec.selector).length === 0 || spec.type === 'ExternalName') {
      if (current && isManaged(current)) await this.registry.delete(d, ns, name, undefined);
      return;
    }
    if (current && !isManaged(current)) return; // someone else's slice with this name
    const pods = this.registry.store.list('pods', ns).filter((p) => matches(p, spec.selector as JsonObject));
    const endpoints = pods
      .filter((p) => typeof (p.status as JsonObject | undefined)?.podIP === 'string' && (p.status as JsonObject).podIP)
      .map((p) => {
        const ready = podReady(p);
        const terminating = Boolean(p.metadata.deletionTimestamp);
        return {
          addresses: [(p.status as JsonObject).podIP as string],
          conditions: { ready: ready && !terminating, serving: ready, terminating },
          ...((p.spec as JsonObject | undefined)?.nodeName ? { nodeName: (p.spec as JsonObject).nodeName } : {}),
          targetRef: { kind: 'Pod', namespace: ns, name: p.metadata.name, uid: p.metadata.uid },
        };
      });
    const ports = (Array.isArray(spec.ports) ? spec.ports : []).filter(isObject).map((sp) => ({
      ...(sp.name ? { name: sp.name } : { name: '' }),
      port: resolvePort(sp.targetPort ?? sp.port, pods),
      protocol: sp.protocol ?? 'TCP',
      ...(sp.appProtocol ? { appProtocol: sp.appProtocol } : {}),
    }));
    const desired: JsonObject = {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name,
        namespace: ns,
        labels: { 'kubernetes.io/service-name': name, 'endpointslice.kubernetes.io/managed-by': MANAGED_BY },
        ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name, uid: svc.metadata.uid, controller: true, blockOwnerDeletion: true }],
      },
      addressType: 'IPv4',
      endpoints,
      ports,
    };
    if (!current) {
      await this.registry.create(d, ns, desired);
    } else if (!deepEqual([current.endpoints, current.ports, current.metadata.ownerReferences], [endpoints, ports, (desired.metadata as JsonObject).ownerReferences])) {
      await this.registry.update(d, ns, name, { ...desired, metadata: { ...current.metadata, ...(desired.metadata as JsonObject) } });
    }
  }
}

const isManaged = (s: KubeObject): boolean => s.metadata.labels?.['endpointslice.kubernetes.io/managed-by'] === MANAGED_BY && Boolean(s.metadata.labels?.['kubernetes.io/service-name']);

function matches(pod: KubeObject, selector: JsonObject): boolean {
  const labels = pod.metadata.labels ?? {};
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

function podReady(pod: KubeObject): boolean {
  const conds = (pod.status as JsonObject | undefined)?.conditions;
  return Array.isArray(conds) && conds.some((c) => isObject(c) && c.type === 'Ready' && c.status === 'True');
}

function resolvePort(target: unknown, pods: KubeObject[]): number | null {
  if (typeof target === 'number') return target;
  for (const p of pods) {
    for (const c of ((p.spec as JsonObject | undefined)?.containers as JsonObject[] | undefined) ?? []) {
      for (const port of (c.ports as JsonObject[] | undefined) ?? []) if (port.name === target) return port.containerPort as number;
    }
  }
  return null;
}
