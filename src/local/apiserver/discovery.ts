// Discovery (/api, /apis, /api/v1, /apis/{g}/{v}), /version, and a minimal OpenAPI v3: the root
// lists one document per group-version, and each document declares, per kind, a PATCH operation
// tagged x-kubernetes-group-version-kind with a `fieldValidation` query parameter — what
// `kubectl apply` checks (k8s.io/kubectl/pkg/util/openapi + resource.QueryParamVerifierV3) before
// trusting the server to validate. Schemas of built-in kinds are permissive objects (validation
// happens on write); a CRD's kinds carry its schema, which `kubectl explain` reads.
import { createHash } from 'node:crypto';
import { openApiSchemaOf } from './customresources.ts';
import type { Kinds } from './kinds.ts';
import { type ResourceDef, apiVersionOf } from './resources.ts';
import type { JsonObject } from './types.ts';

export function versionInfo(v: { major: number; minor: number }): JsonObject {
  return {
    major: String(v.major),
    minor: String(v.minor),
    gitVersion: `v${v.major}.${v.minor}.0-mesh`,
    gitCommit: '0000000000000000000000000000000000000000',
    gitTreeState: 'clean',
    buildDate: '2025-01-01T00:00:00Z',
    goVersion: 'go1.23.0',
    compiler: 'gc',
    platform: `${process.platform}/${process.arch === 'x64' ? 'amd64' : process.arch}`,
  };
}

export function apiVersions(): JsonObject {
  return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: '127.0.0.1' }] };
}

export function apiGroupList(kinds: Kinds): JsonObject {
  const groups = [...new Set(kinds.groupVersions().map((gv) => gv.group))].filter(Boolean);
  return { kind: 'APIGroupList', apiVersion: 'v1', groups: groups.map((g) => apiGroup(kinds, g)!) };
}

export function apiGroup(kinds: Kinds, group: string): JsonObject | undefined {
  const versions = kinds.groupVersions().filter((gv) => gv.group === group && group);
  if (!versions.length) return undefined;
  const vs = versions.map((gv) => ({ groupVersion: `${gv.group}/${gv.version}`, version: gv.version })).sort((a, b) => versionPriority(b.version) - versionPriority(a.version));
  return { kind: 'APIGroup', apiVersion: 'v1', name: group, versions: vs, preferredVersion: vs[0] };
}

/** Kubernetes' version order (GA > beta > alpha, higher numbers first), for the preferred version. */
function versionPriority(v: string): number {
  const m = /^v(\d+)(?:(alpha|beta)(\d+))?$/.exec(v);
  if (!m) return -1;
  return Number(m[1]) * 1000 + (m[2] === undefined ? 900 : m[2] === 'beta' ? 500 : 100) + Number(m[3] ?? 0);
}

const gvPath = (group: string, version: string): string => (group ? `apis/${group}/${version}` : `api/${version}`);

/** GET /openapi/v3: one entry per group-version, each URL carrying its document's hash. */
export function openApiRoot(kinds: Kinds): JsonObject {
  const paths: JsonObject = {};
  for (const { group, version } of kinds.groupVersions()) {
    const p = gvPath(group, version);
    paths[p] = { serverRelativeURL: `/openapi/v3/${p}?hash=${hashOf(openApiDocument(kinds, group, version))}` };
  }
  return { paths };
}

const hashes = new WeakMap<object, string>();
function hashOf(doc: JsonObject): string {
  let h = hashes.get(doc);
  if (!h) hashes.set(doc, (h = createHash('sha512').update(JSON.stringify(doc)).digest('hex').slice(0, 64).toUpperCase()));
  return h;
}

/** GET /openapi/v3/{api/v1 | apis/g/v}; undefined for an unknown group-version. */
export function openApiDocument(kinds: Kinds, group: string, version: string): JsonObject {
  const key = `${group}/${version}`;
  const docs = kinds.openApiDocs;
  const cached = docs.get(key);
  if (cached) return cached;
  const defs = kinds.all().filter((d) => d.group === group && d.version === version);
  const paths: JsonObject = {};
  const schemas: JsonObject = {};
  for (const d of defs) {
    const schemaName = schemaNameOf(d);
    schemas[schemaName] = d.crd ? openApiSchemaOf(d) : {
      type: 'object',
      description: `${d.kind} (${apiVersionOf(d)}); validated by the server on write.`,
      // No x-kubernetes-group-version-kind here on purpose: with it, `kubectl apply` computes
      // strategic patches from this (property-less) schema, fails and warns; without it kubectl
      // uses its built-in types for core kinds and merge patch for the rest, as REFERENCE.md notes.
      'x-kubernetes-preserve-unknown-fields': true,
      properties: {
        apiVersion: { type: 'string' },
        kind: { type: 'string' },
        metadata: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
      },
    };
    const ref = { $ref: `#/components/schemas/${schemaName}` };
    const body = { content: { 'application/json': { schema: ref } } };
    const ok = { '200': { description: 'OK', content: { 'application/json': { schema: ref } } } };
    const base = `/${gvPath(group, version)}${d.namespaced ? '/namespaces/{namespace}' : ''}/${d.plural}`;
    const common = [...(d.namespaced ? [param('namespace', 'path', true)] : [])];
    paths[base] = {
      parameters: common,
      get: op(d, 'list', ok),
      post: { ...op(d, 'post', ok), requestBody: body, parameters: [param('dryRun'), param('fieldManager'), param('fieldValidation')] },
    };
    if (d.createOnly) continue;
    paths[`${base}/{name}`] = {
      parameters: [param('name', 'path', true), ...common],
      get: op(d, 'get', ok),
      put: { ...op(d, 'put', ok), requestBody: body, parameters: [param('dryRun'), param('fieldManager'), param('fieldValidation')] },
      patch: {
        ...op(d, 'patch', ok),
        // Without strategic merge for custom resources: kubectl then sends them merge patches.
        requestBody: { content: Object.fromEntries(['application/apply-patch+yaml', 'application/json-patch+json', 'application/merge-patch+json', ...(d.crd ? [] : ['application/strategic-merge-patch+json'])].map((t) => [t, { schema: { type: 'object' } }])) },
        parameters: [param('dryRun'), param('fieldManager'), param('fieldValidation'), param('force', 'query', false, 'boolean')],
      },
      delete: op(d, 'delete', ok),
    };
  }
  const doc = { openapi: '3.0.0', info: { title: 'Mesh local API server', version: `${key}` }, paths, components: { schemas } };
  docs.set(key, doc);
  return doc;
}

function schemaNameOf(d: ResourceDef): string {
  // Real names are reverse-DNS Go package paths (io.k8s.api.core.v1.Pod); kubectl only follows refs.
  const g = d.group ? d.group.split('.').reverse().join('.') : 'io.k8s.api.core';
  return `${g}.${d.version}.${d.kind}`;
}

const gvk = (d: ResourceDef) => ({ group: d.group, version: d.version, kind: d.kind });

function op(d: ResourceDef, action: string, responses: JsonObject): JsonObject {
  return {
    operationId: `${action}${d.kind}`,
    'x-kubernetes-action': action,
    'x-kubernetes-group-version-kind': gvk(d),
    responses,
  };
}

function param(name: string, where = 'query', required = false, type = 'string'): JsonObject {
  return { name, in: where, required, schema: { type, uniqueItems: true }, description: name };
}
