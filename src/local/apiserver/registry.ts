// Object operations with Kubernetes semantics, independent of HTTP: create, update (main resource
// and status), patch, delete, list; plus the pod binding, TokenRequest and TokenReview calls.
import { randomBytes, randomUUID } from 'node:crypto';
import { admitCustom, type FieldValidation, present, resetStatus, validateCustom } from './customresources.ts';
import { AlreadyExistsError, BadRequestError, ConflictError, ForbiddenError, InvalidError, NotFoundError, UnsupportedMediaTypeError } from './errors.ts';
import { beginDeletion, propagationOf } from './gc.ts';
import { beginPodDeletion } from './graceful.ts';
import { Kinds } from './kinds.ts';
import { jsonPatch, mergePatch, strategicMergePatch, supportsStrategicMerge } from './patch.ts';
import { type ResourceDef, apiVersionOf, byKind, resourceKey } from './resources.ts';
import type { Matcher } from './selectors.ts';
import type { Store } from './store.ts';
import { strategyFor, validateObject } from './strategies.ts';
import { type Tokens, DEFAULT_AUDIENCE } from './tokens.ts';
import { clone, deepEqual, isObject, type JsonObject, type KubeObject, nowTimestamp } from './types.ts';

export type PatchType = 'merge' | 'strategic' | 'json' | 'apply';

export interface WriteOptions {
  dryRun?: boolean;
  subresource?: string;
  /** A last check of the object to be written (RBAC escalation); throws to refuse. */
  admit?: (obj: KubeObject) => void;
  /** Unknown fields of custom resources: dropped silently, reported in `warnings`, or refused. */
  fieldValidation?: FieldValidation;
  warnings?: string[];
}

export interface ListOptions {
  match?: Matcher;
  limit?: number;
  continueToken?: string;
}

export interface ListResult {
  items: KubeObject[];
  resourceVersion: string;
  continueToken?: string;
  remainingItemCount?: number;
}

const PROTECTED_NAMESPACES = new Set(['default', 'kube-system', 'kube-public']);
const SERVICE_CIDR_BASE = (10 << 24) | (96 << 16); // 10.96.0.0/16, kube-apiserver's default --service-cluster-ip-range

export class Registry {
  readonly store: Store;
  private readonly tokens: Tokens;
  /** The kinds this server serves (built-in and CRD-defined). */
  readonly kinds: Kinds;

  constructor(store: Store, tokens: Tokens, kinds: Kinds = new Kinds()) {
    this.store = store;
    this.tokens = tokens;
    this.kinds = kinds;
  }

  /** Namespaces default and kube-system, and a default ServiceAccount in every namespace. */
  async bootstrap(): Promise<void> {
    for (const ns of ['default', 'kube-system']) {
      if (!this.store.get('namespaces', '', ns)) await this.create(byKind('Namespace'), undefined, { metadata: { name: ns } });
    }
    for (const ns of this.store.list('namespaces')) await this.ensureDefaultServiceAccount(ns.metadata.name!);
  }

  get(d: ResourceDef, ns: string | undefined, name: string): KubeObject {
    const obj = this.store.get(resourceKey(d), ns ?? '', name);
    if (!obj) throw new NotFoundError(d.group, d.plural, name);
    return present(d, obj);
  }

  list(d: ResourceDef, ns: string | undefined, opts: ListOptions = {}): ListResult {
    let items = this.store.list(resourceKey(d), ns);
    if (d.crd) items = items.map((o) => present(d, o));
    if (opts.match) items = items.filter(opts.match);
    const rv = String(this.store.resourceVersion);
    if (opts.continueToken) {
      const after = decodeContinue(opts.continueToken);
      items = items.filter((o) => `${o.metadata.namespace ?? ''}/${o.metadata.name}` > after);
    }
    if (opts.limit && opts.limit > 0 && items.length > opts.limit) {
      const page = items.slice(0, opts.limit);
      const last = page[page.length - 1]!;
      const token = Buffer.from(JSON.stringify({ after: `${last.metadata.namespace ?? ''}/${last.metadata.name}` })).toString('base64url');
      return { items: page, resourceVersion: rv, continueToken: token, remainingItemCount: items.length - page.length };
    }
    return { items, resourceVersion: rv };
  }

  async create(d: ResourceDef, ns: string | undefined, body: unknown, opts: WriteOptions = {}): Promise<KubeObject> {
    const obj = this.normalize(d, ns, body, opts);
    const m = obj.metadata;
    if (m.resourceVersion) throw new BadRequestError('resourceVersion should not be set on objects to be created');
    if (!m.name && typeof m.generateName === 'string' && m.generateName) m.name = `${m.generateName}${suffix()}`;
    for (const k of ['uid', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'generation', 'managedFields', 'selfLink']) delete m[k];
    m.uid = randomUUID(); // before the strategy: a Job's generated selector names it
    if (d.namespaced) this.requireNamespace(ns!);
    if (!d.crd) strategyFor(d.kind).prepareForCreate?.(obj);
    else resetStatus(d, obj);
    this.check(d, obj);
    opts.admit?.(obj);
    if (m.name && this.store.get(resourceKey(d), ns ?? '', m.name)) throw new AlreadyExistsError(d.group, d.plural, m.name);
    if (d.kind === 'Service') this.allocateClusterIP(obj);
    m.creationTimestamp = nowTimestamp();
    m.generation = 1;
    if (opts.dryRun) return present(d, obj);
    const stored = await this.store.put(resourceKey(d), obj);
    if (d.kind === 'Namespace' && !d.crd) await this.ensureDefaultServiceAccount(m.name!);
    return present(d, stored);
  }

  /** PUT: the whole object (main resource) or its status (`subresource: 'status'`). */
  async update(d: ResourceDef, ns: string | undefined, name: string, body: unknown, opts: WriteOptions = {}): Promise<KubeObject> {
    const current = this.stored(d, ns, name);
    const obj = this.normalize(d, ns, body, opts);
    if (obj.metadata.name !== name) throw new BadRequestError(`the name of the object (${obj.metadata.name}) does not match the name on the URL (${name})`);
    return this.replace(d, current, obj, opts);
  }

  async patch(d: ResourceDef, ns: string | undefined, name: string, type: PatchType, patch: unknown, opts: WriteOptions = {}): Promise<{ object: KubeObject; created: boolean }> {
    const current = this.store.get(resourceKey(d), ns ?? '', name);
    if (!current) {
      if (type !== 'apply' || opts.subresource) throw new NotFoundError(d.group, d.plural, name);
      if (isObject(patch) && isObject(patch.metadata) && patch.metadata.name !== undefined && patch.metadata.name !== name) {
        throw new BadRequestError(`the name of the object (${String(patch.metadata.name)}) does not match the name on the URL (${name})`);
      }
      return { object: await this.create(d, ns, patch, opts), created: true };
    }
    const base = clone(present(d, current));
    let patched: unknown;
    if (type === 'json') patched = jsonPatch(base, patch, { group: d.group, kind: d.kind, name });
    else if (type === 'merge') patched = mergePatch(base, patch);
    else if (type === 'strategic') {
      if (d.crd) throw new UnsupportedMediaTypeError('application/strategic-merge-patch+json', ['application/json-patch+json', 'application/merge-patch+json', 'application/apply-patch+yaml']);
      patched = strategicMergePatch(base, patch, d.kind);
    } else {
      // Server-side apply without field ownership: the applied configuration is merged over the
      // live object, so re-applying the same file is a no-op. managedFields are not kept.
      if (!isObject(patch)) throw new BadRequestError('an apply patch must be a YAML or JSON object');
      const { managedFields: _m, resourceVersion: _r, ...meta } = (isObject(patch.metadata) ? patch.metadata : {}) as JsonObject;
      const applied = { ...patch, metadata: meta };
      // Built-in kinds merge as strategic merge patch does (list merge keys); custom resources as JSON merge.
      patched = !d.crd && supportsStrategicMerge(d.group) ? strategicMergePatch(base, applied, d.kind) : mergePatch(base, applied);
    }
    if (!isObject(patched)) throw new BadRequestError('the patch did not produce an object');
    const obj = this.normalize(d, ns, patched, opts);
    if (obj.metadata.name !== name) throw new BadRequestError(`the patch may not change the name (${name} → ${String(obj.metadata.name)})`);
    return { object: await this.replace(d, current, obj, opts), created: false };
  }

  async delete(d: ResourceDef, ns: string | undefined, name: string, body: unknown, opts: WriteOptions = {}): Promise<KubeObject> {
    const current = this.stored(d, ns, name);
    const pre = isObject(body) && isObject(body.preconditions) ? body.preconditions : {};
    if (pre.uid !== undefined && pre.uid !== current.metadata.uid) throw new ConflictError(d.group, d.plural, name, `Precondition failed: UID in precondition: ${String(pre.uid)}, UID in object meta: ${current.metadata.uid}`);
    if (pre.resourceVersion !== undefined && pre.resourceVersion !== current.metadata.resourceVersion) {
      throw new ConflictError(d.group, d.plural, name, `Precondition failed: ResourceVersion in precondition: ${String(pre.resourceVersion)}, ResourceVersion in object meta: ${current.metadata.resourceVersion}`);
    }
    if (d.kind === 'Namespace' && PROTECTED_NAMESPACES.has(name)) throw new ForbiddenError('', 'namespaces', name, 'this namespace may not be deleted');
    const policy = propagationOf(body);
    if (opts.dryRun) return present(d, current);
    if (d.kind === 'Namespace' && !d.crd) {
      // The namespace controller's job on a real cluster; done inline so `delete ns` is immediate.
      for (const r of this.kinds.all().filter((x) => x.namespaced && !x.createOnly)) {
        for (const o of this.store.list(resourceKey(r), name)) await this.store.remove(resourceKey(r), o);
      }
    } else {
      // A pod on a node terminates first (graceful.ts); the kubelet removes it when it is done.
      if (d.kind === 'Pod' && !d.crd) {
        const terminating = await beginPodDeletion(this.store, d, current, body);
        if (terminating) return present(d, terminating);
      }
      // Finalizers and the Foreground/Orphan policies keep the object, marked, for the collector.
      const lingering = await beginDeletion(this.store, d, current, policy);
      if (lingering) return lingering;
    }
    return present(d, await this.store.remove(resourceKey(d), current));
  }

  async deleteCollection(d: ResourceDef, ns: string | undefined, match: Matcher | undefined, opts: WriteOptions = {}): Promise<KubeObject[]> {
    const out: KubeObject[] = [];
    for (const o of this.list(d, ns, { match }).items) {
      if (d.kind === 'Namespace' && PROTECTED_NAMESPACES.has(o.metadata.name!)) continue;
      out.push(await this.delete(d, ns, o.metadata.name!, undefined, opts));
    }
    return out;
  }

  /** POST pods/{name}/binding: how a scheduler assigns a pod to a node. */
  async bind(ns: string, name: string, body: unknown): Promise<void> {
    const d = byKind('Pod');
    const pod = this.get(d, ns, name);
    const target = isObject(body) && isObject(body.target) ? body.target : undefined;
    if (!target || typeof target.name !== 'string' || !target.name) {
      throw new InvalidError('', 'Binding', name, [{ reason: 'FieldValueRequired', field: 'target.name', message: 'Required value' }]);
    }
    const spec = (pod.spec ?? {}) as JsonObject;
    if (spec.nodeName) throw new ConflictError('', 'pods/binding', name, `pod ${name} is already assigned to node "${String(spec.nodeName)}"`);
    const next = clone(pod);
    (next.spec as JsonObject).nodeName = target.name;
    const status = (next.status ??= {}) as JsonObject;
    const conds = (Array.isArray(status.conditions) ? status.conditions : []).filter((c: unknown) => !(isObject(c) && c.type === 'PodScheduled'));
    conds.push({ type: 'PodScheduled', status: 'True', lastProbeTime: null, lastTransitionTime: nowTimestamp() });
    status.conditions = conds;
    await this.store.put(resourceKey(d), next);
  }

  /** POST serviceaccounts/{name}/token (authentication.k8s.io/v1 TokenRequest). */
  tokenRequest(ns: string, name: string, body: unknown): JsonObject {
    const sa = this.get(byKind('ServiceAccount'), ns, name);
    const spec = isObject(body) && isObject(body.spec) ? body.spec : {};
    const expirationSeconds = spec.expirationSeconds === undefined ? 3600 : Number(spec.expirationSeconds);
    if (!Number.isInteger(expirationSeconds) || expirationSeconds < 600) {
      throw new InvalidError('authentication.k8s.io', 'TokenRequest', name, [{ reason: 'FieldValueInvalid', field: 'spec.expirationSeconds', message: `Invalid value: ${String(spec.expirationSeconds)}: may not specify a duration less than 10 minutes` }]);
    }
    const audiences = Array.isArray(spec.audiences) && spec.audiences.length ? spec.audiences.map(String) : [DEFAULT_AUDIENCE];
    let pod: { name: string; uid: string } | undefined;
    if (isObject(spec.boundObjectRef)) {
      const ref = spec.boundObjectRef;
      if (ref.kind !== 'Pod') throw new BadRequestError(`boundObjectRef.kind must be "Pod" here (got ${JSON.stringify(ref.kind)})`);
      const p = this.get(byKind('Pod'), ns, String(ref.name));
      if (ref.uid !== undefined && ref.uid !== p.metadata.uid) throw new ConflictError('', 'pods', String(ref.name), `the UID in the bound object reference (${String(ref.uid)}) does not match the pod's (${p.metadata.uid})`);
      pod = { name: p.metadata.name!, uid: p.metadata.uid! };
    }
    const { token, expiration } = this.tokens.issue({ namespace: ns, name, uid: sa.metadata.uid! }, { audiences, expirationSeconds, ...(pod ? { pod } : {}) });
    return {
      kind: 'TokenRequest',
      apiVersion: 'authentication.k8s.io/v1',
      metadata: { name, namespace: ns, creationTimestamp: nowTimestamp() },
      spec: { audiences, expirationSeconds, boundObjectRef: spec.boundObjectRef ?? null },
      status: { token, expirationTimestamp: expiration.toISOString().replace(/\.\d{3}Z$/, 'Z') },
    };
  }

  /** POST tokenreviews: who a token belongs to, as the real TokenReview API answers. */
  tokenReview(body: unknown): JsonObject {
    const spec = isObject(body) && isObject(body.spec) ? body.spec : {};
    if (typeof spec.token !== 'string' || !spec.token) {
      throw new InvalidError('authentication.k8s.io', 'TokenReview', '', [{ reason: 'FieldValueRequired', field: 'spec.token', message: 'Required value' }]);
    }
    const audiences = Array.isArray(spec.audiences) ? spec.audiences.map(String) : undefined;
    const result = this.tokens.authenticate(spec.token, this.uidLookup, audiences);
    return {
      kind: 'TokenReview',
      apiVersion: 'authentication.k8s.io/v1',
      metadata: { creationTimestamp: null },
      spec,
      status: result
        ? { authenticated: true, user: result.user, audiences: result.audiences }
        : { authenticated: false, user: {}, error: 'invalid bearer token, token lookup failed or the service account no longer exists' },
    };
  }

  readonly uidLookup = (resource: 'serviceaccounts' | 'pods', ns: string, name: string): string | undefined => this.store.get(resource, ns, name)?.metadata.uid;

  private async ensureDefaultServiceAccount(ns: string): Promise<void> {
    if (!this.store.get('serviceaccounts', ns, 'default')) await this.create(byKind('ServiceAccount'), ns, { metadata: { name: 'default' } });
  }

  /** Replaces `current` by `obj` keeping what clients may not change; no-op when nothing differs. */
  private async replace(d: ResourceDef, current: KubeObject, obj: KubeObject, opts: WriteOptions): Promise<KubeObject> {
    const name = current.metadata.name!;
    if (obj.metadata.resourceVersion && obj.metadata.resourceVersion !== current.metadata.resourceVersion) {
      throw new ConflictError(d.group, d.plural, name, 'the object has been modified; please apply your changes to the latest version and try again');
    }
    let next: KubeObject;
    if (opts.subresource === 'status') {
      // Status writes change only status (metav1.ResetObjectMetaForStatus and the status strategies).
      next = { ...clone(current), status: clone(obj.status) };
      if (obj.status === undefined) delete next.status;
      if (d.crd) validateCustom(d, next);
    } else {
      next = obj;
      for (const k of ['uid', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'generation'] as const) {
        if (current.metadata[k] === undefined) delete next.metadata[k];
        else (next.metadata as Record<string, unknown>)[k] = current.metadata[k];
      }
      delete next.metadata.managedFields;
      if (d.subresources.includes('status')) {
        if (current.status === undefined) delete next.status;
        else next.status = clone(current.status);
      }
      if (d.kind === 'Service') {
        const spec = (next.spec ??= {}) as JsonObject;
        const before = (current.spec ?? {}) as JsonObject;
        for (const k of ['clusterIP', 'clusterIPs', 'ipFamilies', 'ipFamilyPolicy']) if (spec[k] === undefined && before[k] !== undefined) spec[k] = before[k];
      }
      if (d.kind === 'Namespace') {
        next.metadata.labels = { ...next.metadata.labels, 'kubernetes.io/metadata.name': name };
        next.spec = current.spec;
      }
      strategyFor(d.kind).prepareForUpdate?.(next, current);
      this.check(d, next, current);
      opts.admit?.(next);
      // Custom resources count any change outside metadata and status (the CRD strategy's rule).
      const body = (o: KubeObject) => (d.crd ? { ...o, metadata: undefined, status: undefined } : o.spec);
      if (!deepEqual(body(next), body(current))) next.metadata.generation = (current.metadata.generation ?? 1) + 1;
    }
    next.metadata.resourceVersion = current.metadata.resourceVersion;
    if (deepEqual(next, current)) return present(d, current);
    if (opts.dryRun) return present(d, next);
    const stored = await this.store.put(resourceKey(d), next);
    // The last finalizer of an object being deleted is gone: the delete completes now.
    // (A pod still within its grace period stays until its kubelet removes it.)
    if (stored.metadata.deletionTimestamp && !stored.metadata.finalizers?.length && (stored.metadata.deletionGracePeriodSeconds ?? 0) === 0) return present(d, await this.store.remove(resourceKey(d), stored));
    return present(d, stored);
  }

  /** The object as stored (for custom resources: in the storage version). */
  private stored(d: ResourceDef, ns: string | undefined, name: string): KubeObject {
    const obj = this.store.get(resourceKey(d), ns ?? '', name);
    if (!obj) throw new NotFoundError(d.group, d.plural, name);
    return obj;
  }

  /** Parses a request body into an object of kind `d` in namespace `ns`, or 400. */
  private normalize(d: ResourceDef, ns: string | undefined, body: unknown, opts: WriteOptions = {}): KubeObject {
    if (!isObject(body)) throw new BadRequestError(`the request body must be a ${d.kind} object`);
    const obj = clone(body) as KubeObject;
    const apiVersion = apiVersionOf(d);
    if (obj.apiVersion !== undefined && obj.apiVersion !== apiVersion) throw new BadRequestError(`the API version in the data (${String(obj.apiVersion)}) does not match the expected API version (${apiVersion})`);
    if (obj.kind !== undefined && obj.kind !== d.kind) throw new BadRequestError(`the kind in the data (${String(obj.kind)}) does not match the expected kind (${d.kind})`);
    obj.apiVersion = apiVersion;
    obj.kind = d.kind;
    if (!isObject(obj.metadata)) obj.metadata = {};
    if (d.namespaced) {
      if (obj.metadata.namespace && obj.metadata.namespace !== ns) throw new BadRequestError('the namespace of the provided object does not match the namespace sent on the request');
      obj.metadata.namespace = ns;
    } else {
      delete obj.metadata.namespace;
    }
    if (d.crd) admitCustom(d, obj, opts.fieldValidation, opts.warnings);
    return obj;
  }

  private requireNamespace(ns: string): void {
    if (!this.store.get('namespaces', '', ns)) throw new NotFoundError('', 'namespaces', ns);
  }

  private check(d: ResourceDef, obj: KubeObject, old?: KubeObject): void {
    if (d.crd) return validateCustom(d, obj);
    const causes = validateObject(obj, old).list;
    if (causes.length) throw new InvalidError(d.group, d.kind, obj.metadata.name ?? obj.metadata.generateName ?? '', causes);
  }

  private allocateClusterIP(obj: KubeObject): void {
    const spec = obj.spec as JsonObject;
    if (spec.type === 'ExternalName') return;
    const used = new Set(this.store.list('services').map((s) => (s.spec as JsonObject | undefined)?.clusterIP));
    if (typeof spec.clusterIP === 'string' && spec.clusterIP !== '') {
      if (spec.clusterIP !== 'None' && used.has(spec.clusterIP)) {
        throw new InvalidError('', 'Service', obj.metadata.name!, [{ reason: 'FieldValueInvalid', field: 'spec.clusterIPs', message: `Invalid value: ["${spec.clusterIP}"]: failed to allocate IP ${spec.clusterIP}: provided IP is already allocated` }]);
      }
    } else {
      // .1 is the `kubernetes` service and .10 cluster DNS by convention; hand out from .11 on.
      const start = 11 + Math.floor(Math.random() * (65534 - 11));
      let ip: string | undefined;
      for (let i = 0; i < 65534 - 11 && !ip; i++) {
        const candidate = ipv4(SERVICE_CIDR_BASE + 11 + ((start - 11 + i) % (65534 - 11)));
        if (!used.has(candidate)) ip = candidate;
      }
      if (!ip) throw new InvalidError('', 'Service', obj.metadata.name!, [{ reason: 'FieldValueInvalid', field: 'spec.clusterIPs', message: 'Invalid value: []: failed to allocate IP: range 10.96.0.0/16 is full' }]);
      spec.clusterIP = ip;
    }
    spec.clusterIPs = [spec.clusterIP];
    if (spec.clusterIP !== 'None') {
      spec.ipFamilies ??= ['IPv4'];
      spec.ipFamilyPolicy ??= 'SingleStack';
    }
  }
}

const ipv4 = (n: number): string => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');

/** generateName's 5-character suffix, from the alphabet k8s.io/apimachinery/pkg/util/rand uses. */
function suffix(): string {
  const alphabet = 'bcdfghjklmnpqrstvwxz2456789';
  return [...randomBytes(5)].map((b) => alphabet[b % alphabet.length]).join('');
}

function decodeContinue(token: string): string {
  try {
    const v = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { after?: unknown };
    if (typeof v.after === 'string') return v.after;
  } catch {
    /* fall through */
  }
  throw new BadRequestError('the continue token is not valid; restart the list without it');
}
