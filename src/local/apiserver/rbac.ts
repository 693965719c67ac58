// Authorization: Kubernetes RBAC (rbac.authorization.k8s.io/v1) over the stored Roles, ClusterRoles
// and their bindings, with the request attributes kube-apiserver derives (verb from the method and
// ?watch, resource/subresource, name, namespace, group; non-resource paths), the 403 it words, and
// impersonation (Impersonate-User/-Group/-Uid headers, checked as the `impersonate` verb).
// The system:masters group is allowed everything, as kube-apiserver's privileged-group authorizer
// does; everyone else (service accounts, impersonated users) gets exactly what bindings grant.
import type { IncomingHttpHeaders } from 'node:http';
import { ApiError } from './errors.ts';
import type { Store } from './store.ts';
import type { UserInfo } from './tokens.ts';
import { isObject, type JsonObject, type KubeObject } from './types.ts';

export const RBAC_GROUP = 'rbac.authorization.k8s.io';
const MASTERS = 'system:masters';
const KEY = { roles: `roles.${RBAC_GROUP}`, clusterRoles: `clusterroles.${RBAC_GROUP}`, roleBindings: `rolebindings.${RBAC_GROUP}`, clusterRoleBindings: `clusterrolebindings.${RBAC_GROUP}` };

/** What is asked: authorizer.Attributes in k8s.io/apiserver. */
export interface Attributes {
  user: UserInfo;
  verb: string;
  resourceRequest: boolean;
  /** Non-resource requests: the URL path. */
  path: string;
  namespace: string;
  apiGroup: string;
  apiVersion: string;
  resource: string;
  subresource: string;
  name: string;
}

export interface PolicyRule {
  verbs: string[];
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  nonResourceURLs?: string[];
}

export interface Decision {
  allowed: boolean;
  /** Which binding allowed it ("RBAC: allowed by ..."), empty on deny (as RBAC answers). */
  reason: string;
}

const METHOD_VERBS: Record<string, string> = { POST: 'create', PUT: 'update', PATCH: 'patch', DELETE: 'delete', GET: 'get', HEAD: 'get' };
// /namespaces/{ns}/{status|finalize} are the namespace's own subresources, not resources in it.
const NAMESPACE_SUBRESOURCES = new Set(['status', 'finalize']);
const STREAM_CREATE = new Set(['exec', 'attach', 'portforward']);

/** The attributes of an HTTP request, as k8s.io/apiserver's RequestInfoFactory resolves them. */
export function requestAttributes(user: UserInfo, method: string, path: string, q: URLSearchParams): Attributes {
  const a: Attributes = { user, verb: (METHOD_VERBS[method] ?? method.toLowerCase()), resourceRequest: false, path, namespace: '', apiGroup: '', apiVersion: '', resource: '', subresource: '', name: '' };
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  let rest: string[];
  if (parts[0] === 'api' && parts.length >= 3) [a.apiVersion, rest] = [parts[1]!, parts.slice(2)];
  else if (parts[0] === 'apis' && parts.length >= 4) [a.apiGroup, a.apiVersion, rest] = [parts[1]!, parts[2]!, parts.slice(3)];
  else return { ...a, verb: method.toLowerCase() }; // discovery and other paths: non-resource
  a.resourceRequest = true;
  if (rest[0] === 'namespaces' && rest.length > 1) {
    a.namespace = rest[1]!;
    if (rest.length > 2 && !NAMESPACE_SUBRESOURCES.has(rest[2]!)) rest = rest.slice(2);
  }
  [a.resource = '', a.name = '', a.subresource = ''] = rest;
  const watch = q.get('watch') === 'true' || q.get('watch') === '1';
  if (!a.name && a.verb === 'get') a.verb = watch ? 'watch' : 'list';
  else if (a.name && a.verb === 'get' && watch) a.verb = 'watch';
  if (!a.name && a.verb === 'delete') a.verb = 'deletecollection';
  // exec, attach and portforward are GETs that upgrade to a stream; they create one, and are
  // checked as `create` (kube-apiserver's AuthorizePodWebsocketUpgradeCreatePermission).
  if (a.resource === 'pods' && STREAM_CREATE.has(a.subresource) && a.verb === 'get') a.verb = 'create';
  // A list or watch of one object by field selector is checked against its name (resourceNames).
  if (a.verb === 'list' || a.verb === 'watch') {
    const byName = (q.get('fieldSelector') ?? '').split(',').map((s) => /^metadata\.name==?(.+)$/.exec(s.trim())?.[1]).find(Boolean);
    if (byName) a.name = byName;
  }
  return a;
}

/** 403 as kube-apiserver words it (responsewriters.Forbidden over errors.NewForbidden). */
export class RbacForbiddenError extends ApiError {
  override readonly code = 'MESH_ERR_API_FORBIDDEN';
  override name = 'RbacForbiddenError';
  constructor(a: Attributes, reason = '') {
    const why = `${forbiddenMessage(a)}${reason ? `: ${reason}` : ''}`;
    if (!a.resourceRequest) {
      super(403, 'Forbidden', `forbidden: ${why}`, {});
      return;
    }
    const gr = a.apiGroup ? `${a.resource}.${a.apiGroup}` : a.resource;
    super(403, 'Forbidden', a.name ? `${gr} "${a.name}" is forbidden: ${why}` : `${gr} is forbidden: ${why}`, {
      ...(a.name ? { name: a.name } : {}),
      ...(a.apiGroup ? { group: a.apiGroup } : {}),
      kind: a.resource,
    });
  }
}

function forbiddenMessage(a: Attributes): string {
  const who = `User ${JSON.stringify(a.user.username)}`;
  if (!a.resourceRequest) return `${who} cannot ${a.verb} path ${JSON.stringify(a.path)}`;
  const resource = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  const scope = a.namespace ? `in the namespace ${JSON.stringify(a.namespace)}` : 'at the cluster scope';
  return `${who} cannot ${a.verb} resource ${JSON.stringify(resource)} in API group ${JSON.stringify(a.apiGroup)} ${scope}`;
}

const has = (list: string[] | undefined, v: string): boolean => !!list && (list.includes('*') || list.includes(v));

/** One rule against one request: rbac/validation's RuleAllows. */
export function ruleAllows(a: Attributes, r: PolicyRule): boolean {
  if (!has(r.verbs, a.verb)) return false;
  if (!a.resourceRequest) {
    return (r.nonResourceURLs ?? []).some((u) => u === '*' || u === a.path || (u.endsWith('*') && a.path.startsWith(u.slice(0, -1))));
  }
  if (!has(r.apiGroups, a.apiGroup)) return false;
  const combined = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  const resources = r.resources ?? [];
  if (!resources.some((x) => x === '*' || x === combined || (a.subresource !== '' && x === `*/${a.subresource}`))) return false;
  return !r.resourceNames?.length || r.resourceNames.includes(a.name);
}

interface Subject {
  kind?: string;
  name?: string;
  namespace?: string;
}

/** rbac/validation's appliesTo: a subject names this user, one of its groups, or its service account. */
function appliesTo(user: UserInfo, subjects: unknown, bindingNamespace: string): string | undefined {
  for (const s of (Array.isArray(subjects) ? subjects : []) as Subject[]) {
    if (s.kind === 'User' && s.name === user.username) return `User ${JSON.stringify(s.name)}`;
    if (s.kind === 'Group' && s.name && user.groups.includes(s.name)) return `Group ${JSON.stringify(s.name)}`;
    if (s.kind === 'ServiceAccount' && s.name && user.username === `system:serviceaccount:${s.namespace || bindingNamespace}:${s.name}`) {
      return `ServiceAccount ${JSON.stringify(`${s.namespace || bindingNamespace}/${s.name}`)}`;
    }
  }
  return undefined;
}

export function rulesOf(o: KubeObject | undefined): PolicyRule[] {
  const rules = o?.rules;
  return Array.isArray(rules) ? (rules.filter(isObject) as unknown as PolicyRule[]) : [];
}

export class Authorizer {
  private readonly store: Store;

  constructor(store: Store) {
    this.store = store;
  }

  /** Every rule that applies to `user` in `namespace` ('' = cluster-wide only), with its origin. */
  private *grants(user: UserInfo, namespace: string): Generator<{ rule: PolicyRule; via: string }> {
    if (user.groups.includes(MASTERS)) yield { rule: { verbs: ['*'], apiGroups: ['*'], resources: ['*'] }, via: `group ${MASTERS}` };
    if (user.groups.includes(MASTERS)) yield { rule: { verbs: ['*'], nonResourceURLs: ['*'] }, via: `group ${MASTERS}` };
    for (const b of this.store.list(KEY.clusterRoleBindings)) {
      const who = appliesTo(user, b.subjects, '');
      if (!who) continue;
      const ref = (b.roleRef ?? {}) as JsonObject;
      const via = `ClusterRoleBinding ${JSON.stringify(b.metadata.name)} of ClusterRole ${JSON.stringify(ref.name)} to ${who}`;
      for (const rule of rulesOf(this.store.get(KEY.clusterRoles, '', String(ref.name)))) yield { rule, via };
    }
    if (!namespace) return;
    for (const b of this.store.list(KEY.roleBindings, namespace)) {
      const who = appliesTo(user, b.subjects, namespace);
      if (!who) continue;
      const ref = (b.roleRef ?? {}) as JsonObject;
      const role = ref.kind === 'Role' ? this.store.get(KEY.roles, namespace, String(ref.name)) : this.store.get(KEY.clusterRoles, '', String(ref.name));
      const via = `RoleBinding ${JSON.stringify(`${namespace}/${b.metadata.name}`)} of ${String(ref.kind)} ${JSON.stringify(ref.name)} to ${who}`;
      for (const rule of rulesOf(role)) yield { rule, via };
    }
  }

  authorize(a: Attributes): Decision {
    for (const g of this.grants(a.user, a.resourceRequest ? a.namespace : '')) {
      if (ruleAllows(a, g.rule)) return { allowed: true, reason: `RBAC: allowed by ${g.via}` };
    }
    return { allowed: false, reason: '' };
  }

  /** Throws the Kubernetes 403 unless `a` is allowed. */
  check(a: Attributes): void {
    if (!this.authorize(a).allowed) throw new RbacForbiddenError(a);
  }

  /** The rules `user` holds in `namespace` (SelfSubjectRulesReview), cluster-wide ones included. */
  rulesFor(user: UserInfo, namespace: string): PolicyRule[] {
    return [...this.grants(user, namespace)].map((g) => g.rule);
  }

  /** Whether `user` holds every permission `rules` grant (escalation check), in `namespace`. */
  covers(user: UserInfo, namespace: string, rules: PolicyRule[]): PolicyRule | undefined {
    const held = this.rulesFor(user, namespace);
    const base: Attributes = { user, verb: '', resourceRequest: true, path: '', namespace, apiGroup: '', apiVersion: '', resource: '', subresource: '', name: '' };
    const allowed = (a: Attributes): boolean => held.some((r) => ruleAllows(a, r));
    for (const rule of rules) {
      for (const verb of rule.verbs ?? []) {
        for (const path of rule.nonResourceURLs ?? []) if (!allowed({ ...base, verb, resourceRequest: false, path })) return rule;
        for (const apiGroup of rule.apiGroups ?? []) {
          for (const res of rule.resources ?? []) {
            const [resource = '', subresource = ''] = res.split('/');
            const names = rule.resourceNames?.length ? rule.resourceNames : [''];
            if (names.some((name) => !allowed({ ...base, verb, apiGroup, resource, subresource, name }))) return rule;
          }
        }
      }
    }
    return undefined;
  }

  /**
   * The user a request acts as: itself, or whom its Impersonate-* headers name when it may
   * impersonate them (users, groups, uids, serviceaccounts; k8s.io/apiserver's WithImpersonation).
   */
  impersonate(user: UserInfo, headers: IncomingHttpHeaders): UserInfo {
    const name = headerValues(headers['impersonate-user'])[0];
    const groups = headerValues(headers['impersonate-group']);
    const uid = headerValues(headers['impersonate-uid'])[0];
    if (!name) {
      if (groups.length || uid) throw new ApiError(400, 'BadRequest', 'requested impersonation of groups or a uid without impersonating a user');
      return user;
    }
    const ask = (resource: string, target: string, namespace = ''): void =>
      this.check({ user, verb: 'impersonate', resourceRequest: true, path: '', namespace, apiGroup: resource === 'uids' ? 'authentication.k8s.io' : '', apiVersion: 'v1', resource, subresource: '', name: target });
    const sa = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(name);
    if (sa) ask('serviceaccounts', sa[2]!, sa[1]!);
    else ask('users', name);
    for (const g of groups) ask('groups', g);
    if (uid) ask('uids', uid);
    const own = sa && !groups.length ? ['system:serviceaccounts', `system:serviceaccounts:${sa[1]}`] : groups;
    return { username: name, uid: uid ?? '', groups: name === 'system:anonymous' || own.includes('system:authenticated') ? own : [...own, 'system:authenticated'] };
  }
}

function headerValues(v: string | string[] | undefined): string[] {
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).flatMap((x) => x.split(',')).map((x) => x.trim()).filter(Boolean);
}
