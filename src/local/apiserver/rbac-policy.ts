// The RBAC objects themselves: validation and defaults of Role, ClusterRole, RoleBinding and
// ClusterRoleBinding (after k8s.io/kubernetes/pkg/apis/rbac/validation), the escalation checks
// on writing them (the `escalate` and `bind` verbs), and the default ClusterRoles and bindings
// kube-apiserver bootstraps (plugin/pkg/auth/authorizer/rbac/bootstrappolicy), rules written out
// because aggregation is not implemented.
import { ApiError } from './errors.ts';
import { type Authorizer, type PolicyRule, RBAC_GROUP, rulesOf } from './rbac.ts';
import type { Registry } from './registry.ts';
import type { ResourceDef } from './resources.ts';
import type { Strategy } from './strategies.ts';
import type { UserInfo } from './tokens.ts';
import { type Causes, expectArray, expectObject } from './validate.ts';
import { deepEqual, isObject, type JsonObject, type KubeObject } from './types.ts';

const SUBJECT_KINDS = ['ServiceAccount', 'User', 'Group'];

function validateRules(obj: KubeObject, c: Causes, namespaced: boolean): void {
  expectArray(c, obj.rules, 'rules').forEach((raw, i) => {
    const f = `rules[${i}]`;
    const r = expectObject(c, raw, f);
    if (!r) return;
    for (const k of ['verbs', 'apiGroups', 'resources', 'resourceNames', 'nonResourceURLs']) {
      expectArray(c, r[k], `${f}.${k}`).forEach((s, j) => {
        if (typeof s !== 'string') c.typeInvalid(`${f}.${k}[${j}]`, s, 'a string');
      });
    }
    const len = (k: string): number => (Array.isArray(r[k]) ? (r[k] as unknown[]).length : 0);
    if (!len('verbs')) c.required(`${f}.verbs`, 'verbs must contain at least one value');
    if (len('nonResourceURLs')) {
      if (namespaced) c.invalid(`${f}.nonResourceURLs`, r.nonResourceURLs, 'namespaced rules cannot apply to non-resource URLs');
      if (len('apiGroups') || len('resources') || len('resourceNames')) c.invalid(`${f}.nonResourceURLs`, r.nonResourceURLs, 'rules cannot apply to both regular resources and non-resource URLs');
      return;
    }
    if (!len('apiGroups')) c.required(`${f}.apiGroups`, 'resource rules must supply at least one api group');
    if (!len('resources')) c.required(`${f}.resources`, 'resource rules must supply at least one resource');
  });
}

/** v1 defaults (SetDefaults_RoleBinding/Subject), applied before validation on every write. */
function defaultBinding(obj: KubeObject): void {
  if (isObject(obj.roleRef) && (obj.roleRef.apiGroup === undefined || obj.roleRef.apiGroup === '')) obj.roleRef.apiGroup = RBAC_GROUP;
  for (const s of Array.isArray(obj.subjects) ? obj.subjects : []) {
    if (isObject(s) && (s.kind === 'User' || s.kind === 'Group') && (s.apiGroup === undefined || s.apiGroup === '')) s.apiGroup = RBAC_GROUP;
  }
}

function validateBinding(obj: KubeObject, c: Causes, old: KubeObject | undefined, namespaced: boolean): void {
  defaultBinding(obj);
  const ref = expectObject(c, obj.roleRef, 'roleRef');
  if (!ref) c.required('roleRef');
  else {
    if (ref.apiGroup !== RBAC_GROUP) c.unsupported('roleRef.apiGroup', ref.apiGroup, [RBAC_GROUP]);
    const kinds = namespaced ? ['Role', 'ClusterRole'] : ['ClusterRole'];
    if (!kinds.includes(ref.kind as string)) c.unsupported('roleRef.kind', ref.kind, kinds);
    if (typeof ref.name !== 'string' || !ref.name) c.required('roleRef.name');
  }
  if (old && !deepEqual(old.roleRef, obj.roleRef)) c.invalid('roleRef', obj.roleRef, 'cannot change roleRef');
  expectArray(c, obj.subjects, 'subjects').forEach((raw, i) => {
    const f = `subjects[${i}]`;
    const s = expectObject(c, raw, f);
    if (!s) return;
    if (typeof s.name !== 'string' || !s.name) c.required(`${f}.name`);
    if (!SUBJECT_KINDS.includes(s.kind as string)) return c.unsupported(`${f}.kind`, s.kind, SUBJECT_KINDS);
    if (s.kind === 'ServiceAccount') {
      if (s.apiGroup !== undefined && s.apiGroup !== '') c.unsupported(`${f}.apiGroup`, s.apiGroup, ['']);
      if (!namespaced && (typeof s.namespace !== 'string' || !s.namespace)) c.required(`${f}.namespace`);
    } else if (s.apiGroup !== RBAC_GROUP) c.unsupported(`${f}.apiGroup`, s.apiGroup, [RBAC_GROUP]);
  });
}

export const RBAC_STRATEGIES: Record<string, Strategy> = {
  Role: { nameRule: 'path', validate: (o, c) => validateRules(o, c, true) },
  ClusterRole: { nameRule: 'path', validate: (o, c) => validateRules(o, c, false) },
  RoleBinding: { nameRule: 'path', validate: (o, c, old) => validateBinding(o, c, old, true) },
  ClusterRoleBinding: { nameRule: 'path', validate: (o, c, old) => validateBinding(o, c, old, false) },
};

/**
 * The escalation check for a write of an RBAC object by `user`, or undefined when none applies:
 * a role may grant only what the writer holds (unless it may `escalate`), and a binding may
 * reference only a role whose permissions the writer holds (unless it may `bind` that role).
 */
export function rbacAdmission(authz: Authorizer, user: UserInfo, d: ResourceDef, registry: Registry): ((obj: KubeObject) => void) | undefined {
  if (d.group !== RBAC_GROUP || user.groups.includes('system:masters')) return undefined;
  const roleKind = d.kind === 'Role' || d.kind === 'ClusterRole';
  if (!roleKind && d.kind !== 'RoleBinding' && d.kind !== 'ClusterRoleBinding') return undefined;
  return (obj) => {
    const ns = obj.metadata.namespace ?? '';
    const may = (verb: string, resource: string, name: string): boolean =>
      authz.authorize({ user, verb, resourceRequest: true, path: '', namespace: ns, apiGroup: RBAC_GROUP, apiVersion: 'v1', resource, subresource: '', name }).allowed;
    let rules: PolicyRule[];
    if (roleKind) {
      if (may('escalate', d.plural, obj.metadata.name ?? '')) return;
      rules = rulesOf(obj);
    } else {
      const ref = (obj.roleRef ?? {}) as JsonObject;
      const refPlural = ref.kind === 'Role' ? 'roles' : 'clusterroles';
      if (may('bind', refPlural, String(ref.name))) return;
      const role = ref.kind === 'Role' ? registry.store.get(`roles.${RBAC_GROUP}`, ns, String(ref.name)) : registry.store.get(`clusterroles.${RBAC_GROUP}`, '', String(ref.name));
      if (!role) throw new ApiError(404, 'NotFound', `${refPlural}.${RBAC_GROUP} "${String(ref.name)}" not found`, { name: String(ref.name), group: RBAC_GROUP, kind: refPlural });
      rules = rulesOf(role);
    }
    const missing = authz.covers(user, ns, rules);
    if (!missing) return;
    // As rbac/validation's CompactString prints a rule: Go's %q of each list, fields in its order.
    const q = (l: string[]) => `[${l.map((x) => JSON.stringify(x)).join(' ')}]`;
    const fields: [string, string[] | undefined][] = [['APIGroups', missing.apiGroups], ['Resources', missing.resources], ['ResourceNames', missing.resourceNames], ['NonResourceURLs', missing.nonResourceURLs], ['Verbs', missing.verbs]];
    const shown = fields.filter(([, v]) => v?.length).map(([k, v]) => `${k}:${q(v!)}`).join(', ');
    throw new ApiError(
      403,
      'Forbidden',
      `${d.plural}.${RBAC_GROUP} "${obj.metadata.name}" is forbidden: user ${JSON.stringify(user.username)} (groups=${q(user.groups)}) is attempting to grant RBAC permissions not currently held:\n{${shown}}`,
      { name: obj.metadata.name ?? '', group: RBAC_GROUP, kind: d.plural },
    );
  };
}

// ---- the defaults kube-apiserver bootstraps ----

const rule = (verbs: string[], apiGroups: string[], resources: string[]): PolicyRule => ({ verbs, apiGroups, resources });
const READ = ['get', 'list', 'watch'];
const WRITE = ['create', 'delete', 'deletecollection', 'patch', 'update'];
const MESH_KINDS: [string, string[]][] = [
  ['gateway.networking.k8s.io', ['gateways', 'httproutes', 'grpcroutes', 'referencegrants']],
  ['security.mesh.io', ['authorizationpolicies', 'peerauthentications']],
  ['networking.mesh.io', ['trafficpolicies']],
];
/** What `view` reads (no Secrets), by group; edit and admin write the same. */
const VIEWABLE: [string, string[]][] = [
  ['', ['configmaps', 'endpoints', 'persistentvolumeclaims', 'pods', 'replicationcontrollers', 'services', 'serviceaccounts', 'events', 'limitranges', 'resourcequotas']],
  ['apps', ['daemonsets', 'deployments', 'replicasets', 'statefulsets']],
  ['batch', ['cronjobs', 'jobs']],
  ['discovery.k8s.io', ['endpointslices']],
  ['networking.k8s.io', ['ingresses', 'networkpolicies']],
  ['policy', ['poddisruptionbudgets']],
  ['coordination.k8s.io', ['leases']],
  ...MESH_KINDS,
];
const STATUS_READ: PolicyRule[] = [
  rule(READ, [''], ['pods/log', 'pods/status', 'services/status', 'namespaces/status', 'resourcequotas/status', 'replicationcontrollers/status']),
  rule(READ, ['apps'], ['deployments/status', 'deployments/scale', 'replicasets/status', 'replicasets/scale', 'statefulsets/status', 'statefulsets/scale', 'daemonsets/status']),
  rule(READ, ['batch'], ['jobs/status', 'cronjobs/status']),
];
const VIEW: PolicyRule[] = [...VIEWABLE.map(([g, r]) => rule(READ, [g], r)), rule(READ, [''], ['namespaces']), ...STATUS_READ];
const EDIT: PolicyRule[] = [
  ...VIEW,
  ...VIEWABLE.map(([g, r]) => rule(WRITE, [g], r.filter((x) => x !== 'events' && x !== 'limitranges' && x !== 'resourcequotas'))),
  rule([...READ, ...WRITE], [''], ['secrets']),
  rule(['create', 'delete', 'deletecollection', 'patch', 'update', 'get'], [''], ['pods/exec', 'pods/attach', 'pods/portforward', 'pods/eviction', 'services/proxy', 'serviceaccounts/token']),
  rule(['impersonate'], [''], ['serviceaccounts']),
  rule(['patch', 'update'], ['apps'], ['deployments/scale', 'replicasets/scale', 'statefulsets/scale']),
];
const ADMIN: PolicyRule[] = [
  ...EDIT,
  rule([...READ, ...WRITE], [RBAC_GROUP], ['roles', 'rolebindings']),
  rule(['create'], ['authorization.k8s.io'], ['localsubjectaccessreviews']),
];

const CLUSTER_ROLES: Record<string, PolicyRule[]> = {
  'cluster-admin': [rule(['*'], ['*'], ['*']), { verbs: ['*'], nonResourceURLs: ['*'] }],
  admin: ADMIN,
  edit: EDIT,
  view: VIEW,
  'system:discovery': [{ verbs: ['get'], nonResourceURLs: ['/api', '/api/*', '/apis', '/apis/*', '/healthz', '/livez', '/openapi', '/openapi/*', '/readyz', '/version', '/version/'] }],
  'system:basic-user': [rule(['create'], ['authorization.k8s.io'], ['selfsubjectaccessreviews', 'selfsubjectrulesreviews']), rule(['create'], ['authentication.k8s.io'], ['selfsubjectreviews'])],
  'system:public-info-viewer': [{ verbs: ['get'], nonResourceURLs: ['/healthz', '/livez', '/readyz', '/version', '/version/'] }],
};

const group = (name: string) => ({ apiGroup: RBAC_GROUP, kind: 'Group', name });
const CLUSTER_ROLE_BINDINGS: Record<string, { role: string; subjects: JsonObject[] }> = {
  'cluster-admin': { role: 'cluster-admin', subjects: [group('system:masters')] },
  'system:discovery': { role: 'system:discovery', subjects: [group('system:authenticated')] },
  'system:basic-user': { role: 'system:basic-user', subjects: [group('system:authenticated')] },
  'system:public-info-viewer': { role: 'system:public-info-viewer', subjects: [group('system:authenticated'), group('system:unauthenticated')] },
};

const BOOTSTRAP_META = { labels: { 'kubernetes.io/bootstrapping': 'rbac-defaults' }, annotations: { 'rbac.authorization.kubernetes.io/autoupdate': 'true' } };

/** Creates the default ClusterRoles and ClusterRoleBindings that are missing (kept if edited). */
export async function bootstrapRbac(registry: Registry, defs: { clusterRole: ResourceDef; clusterRoleBinding: ResourceDef }): Promise<void> {
  const missing = (d: ResourceDef, name: string) => !registry.store.get(`${d.plural}.${RBAC_GROUP}`, '', name);
  for (const [name, rules] of Object.entries(CLUSTER_ROLES)) {
    if (missing(defs.clusterRole, name)) await registry.create(defs.clusterRole, undefined, { metadata: { name, ...BOOTSTRAP_META }, rules });
  }
  for (const [name, b] of Object.entries(CLUSTER_ROLE_BINDINGS)) {
    if (missing(defs.clusterRoleBinding, name)) {
      await registry.create(defs.clusterRoleBinding, undefined, { metadata: { name, ...BOOTSTRAP_META }, roleRef: { apiGroup: RBAC_GROUP, kind: 'ClusterRole', name: b.role }, subjects: b.subjects });
    }
  }
}
