// apiextensions.k8s.io/v1 CustomResourceDefinition: the kind itself (defaults and validation, after
// k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation), and the controller that serves
// a CRD's versions once it is valid (status NamesAccepted + Established, as the real
// establishing and naming controllers set them) and deletes its objects when it is deleted.
import { logger } from '../../common/log.ts';
import type { Kinds } from './kinds.ts';
import type { Registry } from './registry.ts';
import type { ResourceDef } from './resources.ts';
import type { Schema } from './schema.ts';
import type { Store, StoreEvent } from './store.ts';
import type { Strategy } from './strategies.ts';
import { clone, deepEqual, isObject, type JsonObject, type KubeObject, nowTimestamp } from './types.ts';
import { isDns1123Label, isDns1123Subdomain } from './validate.ts';

const log = logger('apiserver');

export const CRD_RESOURCE: ResourceDef = {
  group: 'apiextensions.k8s.io',
  version: 'v1',
  kind: 'CustomResourceDefinition',
  plural: 'customresourcedefinitions',
  singular: 'customresourcedefinition',
  namespaced: false,
  shortNames: ['crd', 'crds'],
  subresources: ['status'],
  categories: ['api-extensions'],
  fieldSelectors: [],
};
const CRD_KEY = 'customresourcedefinitions.apiextensions.k8s.io';

export interface PrinterColumn {
  name: string;
  type: string;
  jsonPath: string;
  priority: number;
  description: string;
  format: string;
}

/** What serving one version of a CRD needs beyond a ResourceDef. */
export interface CustomResourceInfo {
  crdName: string;
  /** The version objects are stored in (conversion None: same object, apiVersion rewritten). */
  storageVersion: string;
  schema: Schema | undefined;
  printerColumns: PrinterColumn[];
  scale?: { specReplicasPath: string; statusReplicasPath: string; labelSelectorPath?: string };
}

const spec = (o: KubeObject): JsonObject => (isObject(o.spec) ? o.spec : {});
const names = (o: KubeObject): JsonObject => (isObject(spec(o).names) ? (spec(o).names as JsonObject) : {});
const versions = (o: KubeObject): JsonObject[] => (Array.isArray(spec(o).versions) ? (spec(o).versions as unknown[]).filter(isObject) : []);

export const crdStrategy: Strategy = {
  nameRule: 'subdomain',
  prepareForCreate(obj) {
    const n = names(obj);
    if (typeof n.kind === 'string') {
      n.singular ??= n.kind.toLowerCase();
      n.listKind ??= `${n.kind}List`;
    }
    if (isObject(obj.spec)) obj.spec.conversion ??= { strategy: 'None' };
    obj.status = {};
  },
  validate(obj, c, old) {
    const s = spec(obj);
    const n = names(obj);
    const group = s.group;
    if (typeof group !== 'string' || !group) c.required('spec.group');
    else if (!isDns1123Subdomain(group) || !group.includes('.')) c.invalid('spec.group', group, 'should be a domain with at least one dot');
    for (const k of ['plural', 'singular', 'kind', 'listKind'] as const) {
      const v = n[k];
      if (typeof v !== 'string' || !v) {
        if (k === 'plural' || k === 'kind') c.required(`spec.names.${k}`);
      } else if ((k === 'plural' || k === 'singular') && !isDns1123Label(v)) {
        c.invalid(`spec.names.${k}`, v, "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character");
      }
    }
    if (typeof n.plural === 'string' && typeof group === 'string' && obj.metadata.name !== `${n.plural}.${group}`) {
      c.invalid('metadata.name', obj.metadata.name, 'must be spec.names.plural+"."+spec.group');
    }
    if (s.scope !== 'Namespaced' && s.scope !== 'Cluster') c.unsupported('spec.scope', s.scope, ['Cluster', 'Namespaced']);
    if (old && spec(old).scope !== s.scope) c.invalid('spec.scope', s.scope, 'field is immutable');
    const vs = versions(obj);
    if (vs.length === 0) c.required('spec.versions', 'must have exactly one version marked as storage version');
    else if (vs.filter((v) => v.storage === true).length !== 1) c.invalid('spec.versions', vs.map((v) => v.name), 'must have exactly one version marked as storage version');
    const seen = new Set<string>();
    vs.forEach((v, i) => {
      const f = `spec.versions[${i}]`;
      if (typeof v.name !== 'string' || !isDns1123Label(v.name)) c.invalid(`${f}.name`, v.name, 'must be a DNS-1035 label (e.g. v1, v1beta1)');
      else if (seen.has(v.name)) c.duplicate(`${f}.name`, v.name);
      else seen.add(v.name);
      if (typeof v.served !== 'boolean') c.required(`${f}.served`);
      if (typeof v.storage !== 'boolean') c.required(`${f}.storage`);
      const schema = isObject(v.schema) ? v.schema.openAPIV3Schema : undefined;
      if (!isObject(schema)) c.required(`${f}.schema.openAPIV3Schema`, 'schemas are required');
      else if (schema.type !== 'object') c.required(`${f}.schema.openAPIV3Schema.type`, 'must not be empty at the root');
      const sub = isObject(v.subresources) ? v.subresources : {};
      if (isObject(sub.scale)) {
        for (const k of ['specReplicasPath', 'statusReplicasPath']) {
          const p = sub.scale[k];
          if (typeof p !== 'string' || !p) c.required(`${f}.subresources.scale.${k}`);
          else if (!/^\.spec\./.test(p) && k === 'specReplicasPath') c.invalid(`${f}.subresources.scale.${k}`, p, 'should be a json path under .spec');
          else if (!/^\.status\./.test(p) && k === 'statusReplicasPath') c.invalid(`${f}.subresources.scale.${k}`, p, 'should be a json path under .status');
        }
      }
    });
    if (!vs.some((v) => v.served === true) && vs.length) c.invalid('spec.versions', vs.map((v) => v.name), 'must have at least one version marked as served');
  },
};

/** One ResourceDef per served version of a (valid) CRD. */
export function defsOf(crd: KubeObject): ResourceDef[] {
  const s = spec(crd);
  const n = names(crd);
  const storage = versions(crd).find((v) => v.storage === true)?.name as string;
  return versions(crd)
    .filter((v) => v.served === true)
    .map((v) => {
      const sub = isObject(v.subresources) ? v.subresources : {};
      const schema = isObject(v.schema) && isObject(v.schema.openAPIV3Schema) ? (v.schema.openAPIV3Schema as Schema) : undefined;
      const cols = Array.isArray(v.additionalPrinterColumns) ? v.additionalPrinterColumns.filter(isObject) : [];
      const scale = isObject(sub.scale) ? (sub.scale as CustomResourceInfo['scale']) : undefined;
      return {
        group: s.group as string,
        version: v.name as string,
        kind: n.kind as string,
        plural: n.plural as string,
        singular: (n.singular as string | undefined) ?? String(n.kind).toLowerCase(),
        namespaced: s.scope === 'Namespaced',
        shortNames: Array.isArray(n.shortNames) ? n.shortNames.map(String) : [],
        subresources: [...(isObject(sub.status) ? ['status'] : []), ...(scale ? ['scale'] : [])],
        ...(Array.isArray(n.categories) ? { categories: n.categories.map(String) } : {}),
        fieldSelectors: [],
        crd: {
          crdName: crd.metadata.name!,
          storageVersion: storage,
          schema,
          ...(scale ? { scale } : {}),
          printerColumns: (cols.length ? cols : [{ name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' }]).map((col) => ({
            name: String(col.name),
            type: String(col.type ?? 'string'),
            jsonPath: String(col.jsonPath ?? ''),
            priority: Number(col.priority ?? 0),
            description: String(col.description ?? ''),
            format: String(col.format ?? ''),
          })),
        },
      };
    });
}

/**
 * Keeps the served kinds in step with the stored CRDs: serves a CRD's versions as soon as it is
 * written (synchronously, so a manifest's next document can use them), then records its status;
 * on delete stops serving and removes its objects, which ends their watches.
 */
export class CrdController {
  private readonly unsubscribe: () => void;
  private readonly pending = new Set<Promise<void>>();
  private stopped = false;
  private readonly store: Store;
  private readonly kinds: Kinds;
  private readonly registry: Registry;

  constructor(store: Store, kinds: Kinds, registry: Registry) {
    this.store = store;
    this.kinds = kinds;
    this.registry = registry;
    for (const crd of store.list(CRD_KEY)) this.sync(crd);
    this.unsubscribe = store.subscribe((ev) => this.onEvent(ev));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe();
    await Promise.allSettled([...this.pending]);
  }

  private onEvent(ev: StoreEvent): void {
    if (ev.resource !== CRD_KEY) return;
    if (ev.type !== 'DELETED') return this.sync(ev.object);
    const key = this.kinds.undefine(ev.object.metadata.name!);
    if (key) this.track(this.removeObjects(key));
  }

  private sync(crd: KubeObject): void {
    const conflict = this.conflictOf(crd);
    if (!conflict) this.kinds.define(crd.metadata.name!, defsOf(crd));
    const status = statusOf(crd, conflict);
    if (!deepEqual(status, crd.status)) {
      this.track(
        this.registry.update(CRD_RESOURCE, undefined, crd.metadata.name!, { ...crd, status, metadata: { ...crd.metadata, resourceVersion: undefined } }, { subresource: 'status' }).then(
          () => undefined,
          (err: unknown) => log.debug({ crd: crd.metadata.name, err: String(err) }, 'CRD status not written'),
        ),
      );
    }
  }

  private conflictOf(crd: KubeObject): string | undefined {
    const owner = this.kinds.claimedBy(String(spec(crd).group), String(names(crd).plural));
    return owner && owner !== crd.metadata.name ? `"${String(names(crd).plural)}" is already in use (by ${owner})` : undefined;
  }

  private async removeObjects(key: string): Promise<void> {
    for (const o of this.store.list(key)) {
      if (this.stopped) return;
      await this.store.remove(key, o);
    }
    this.kinds.ended(key);
  }

  private track(p: Promise<void>): void {
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }
}

function statusOf(crd: KubeObject, conflict: string | undefined): JsonObject {
  const old = isObject(crd.status) ? crd.status : {};
  const oldConds = Array.isArray(old.conditions) ? old.conditions.filter(isObject) : [];
  const cond = (type: string, ok: boolean, reason: string, message: string): JsonObject => {
    const prev = oldConds.find((c) => c.type === type);
    const status = ok ? 'True' : 'False';
    return { type, status, lastTransitionTime: prev?.status === status ? (prev.lastTransitionTime as string) : nowTimestamp(), reason, message };
  };
  const storage = versions(crd).find((v) => v.storage === true)?.name as string | undefined;
  const stored = Array.isArray(old.storedVersions) ? old.storedVersions.map(String) : [];
  return {
    conditions: [
      cond('NamesAccepted', !conflict, conflict ? 'NameConflict' : 'NoConflicts', conflict ?? 'no conflicts found'),
      cond('Established', !conflict, conflict ? 'NotAccepted' : 'InitialNamesAccepted', conflict ? 'not all names are accepted' : 'the initial names have been accepted'),
    ],
    acceptedNames: conflict ? (isObject(old.acceptedNames) ? old.acceptedNames : { plural: '', kind: '' }) : clone(names(crd)),
    storedVersions: storage && !stored.includes(storage) ? [...stored, storage] : stored,
  };
}
