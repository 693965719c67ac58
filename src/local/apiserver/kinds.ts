// The registry of kinds one API server serves: the built-in RESOURCES plus the kinds its
// CustomResourceDefinitions define. Routing, discovery, OpenAPI, tables and selectors ask it;
// several servers in one process each have their own (no module-level state).
import { CRD_RESOURCE } from './crds.ts';
import { type ResourceDef, RESOURCES, apiResourceList, apiVersionOf, groupVersions, resourceKey } from './resources.ts';
import type { JsonObject } from './types.ts';

export class Kinds {
  private readonly builtins: readonly ResourceDef[];
  /** CRD name → the ResourceDefs of its served versions. */
  private readonly custom = new Map<string, ResourceDef[]>();
  private cached: readonly ResourceDef[] | undefined;
  private readonly removedListeners = new Set<(resource: string) => void>();
  /** OpenAPI v3 documents by "group/version", rebuilt after any change of kinds. */
  readonly openApiDocs = new Map<string, JsonObject>();

  constructor(builtins: readonly ResourceDef[] = RESOURCES) {
    this.builtins = [...builtins, CRD_RESOURCE];
  }

  all(): readonly ResourceDef[] {
    this.cached ??= [...this.builtins, ...[...this.custom.values()].flat()];
    return this.cached;
  }

  find(group: string, version: string, plural: string): ResourceDef | undefined {
    return this.all().find((d) => d.group === group && d.version === version && d.plural === plural);
  }

  findByKind(apiVersion: string, kind: string): ResourceDef | undefined {
    return this.all().find((d) => apiVersionOf(d) === apiVersion && d.kind === kind);
  }

  groupVersions(): { group: string; version: string }[] {
    return groupVersions(this.all());
  }

  hasGroupVersion(group: string, version: string): boolean {
    return this.all().some((d) => d.group === group && d.version === version);
  }

  resourceList(group: string, version: string): JsonObject {
    return apiResourceList(group, version, this.all());
  }

  /** Whether a kind with this group and plural is served, by a built-in or another CRD. */
  claimedBy(group: string, plural: string): string | undefined {
    if (this.builtins.some((d) => d.group === group && d.plural === plural)) return 'a built-in kind';
    for (const [name, defs] of this.custom) if (defs.some((d) => d.group === group && d.plural === plural)) return name;
    return undefined;
  }

  /** Serves (or re-serves) the versions of one CRD. */
  define(crdName: string, defs: ResourceDef[]): void {
    const before = this.custom.get(crdName);
    if (before && JSON.stringify(before) === JSON.stringify(defs)) return;
    this.custom.set(crdName, defs);
    this.changed();
  }

  /** Stops serving a CRD's kinds; returns their storage key (for `ended` once objects are gone). */
  undefine(crdName: string): string | undefined {
    const defs = this.custom.get(crdName);
    if (!defs) return undefined;
    this.custom.delete(crdName);
    this.changed();
    return resourceKey(defs[0]!);
  }

  /** Tells watches on `resource` to end (its CRD and objects are gone). */
  ended(resource: string): void {
    for (const l of [...this.removedListeners]) l(resource);
  }

  /** Calls `fn(resourceKey)` when a custom kind stops being served; returns the unsubscribe. */
  onRemoved(fn: (resource: string) => void): () => void {
    this.removedListeners.add(fn);
    return () => this.removedListeners.delete(fn);
  }

  private changed(): void {
    this.cached = undefined;
    this.openApiDocs.clear();
  }
}
