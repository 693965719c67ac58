// RBAC in the local API server, through the real kubectl (`auth can-i`, `--token`, `--as`) and
// @kubernetes/client-node: service-account tokens get what their bindings grant and a 403 worded
// as Kubernetes words it otherwise; the kubeconfig's admin stays cluster-admin.
import * as k8s from '@kubernetes/client-node';
import test, { type ExecutionContext } from 'ava';
import { call, type Harness, harness, kubectl } from '../helpers/apiserver.ts';

const WEB = 'system:serviceaccount:shop:web';

/** A harness with namespaces shop and other, and ServiceAccount shop/web with a token. */
async function shop(t: ExecutionContext): Promise<{ h: Harness; token: string }> {
  const h = await harness(t);
  const r = await kubectl(h, ['apply', '-f', '-'], {
    input: 'apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: web, namespace: shop}\n',
  });
  t.is(r.code, 0, r.stderr);
  return { h, token: h.server.issueServiceAccountToken('shop', 'web') };
}

const binding = (kind: 'RoleBinding' | 'ClusterRoleBinding', name: string, roleKind: string, role: string, ns = 'shop') => `apiVersion: rbac.authorization.k8s.io/v1
kind: ${kind}
metadata: {name: ${name}${kind === 'RoleBinding' ? `, namespace: ${ns}` : ''}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ${roleKind}, name: ${role}}
subjects: [{kind: ServiceAccount, name: web, namespace: shop}]
`;

async function apply(t: ExecutionContext, h: Harness, yaml: string, extra: string[] = []): Promise<void> {
  const r = await kubectl(h, ['apply', '-f', '-', ...extra], { input: yaml });
  t.is(r.code, 0, r.stderr);
}

test('kubectl auth can-i as a service account: no before a RoleBinding, yes after, in that namespace only', async (t) => {
  const { h, token } = await shop(t);
  const canI = async (...args: string[]) => {
    const r = await kubectl(h, ['auth', 'can-i', ...args]);
    return `${r.stdout.trim()} (exit ${r.code})`;
  };
  t.is(await canI('list', 'pods', `--as=${WEB}`, '-n', 'shop'), 'no (exit 1)');
  t.is(await canI('list', 'pods', `--token=${token}`, '-n', 'shop'), 'no (exit 1)');
  t.is(await canI('list', 'pods', '-n', 'shop'), 'yes (exit 0)', 'the admin may');

  await apply(t, h, binding('RoleBinding', 'web-view', 'ClusterRole', 'view'));
  const shown = await kubectl(h, ['get', 'rolebindings', '-n', 'shop', '-o', 'wide']);
  t.regex(shown.stdout, /^NAME\s+ROLE\s+AGE\s+USERS\s+GROUPS\s+SERVICEACCOUNTS\n/);
  t.regex(shown.stdout, /\nweb-view\s+ClusterRole\/view\s+\d+s\s+shop\/web\s*\n/);
  t.is(await canI('list', 'pods', `--as=${WEB}`, '-n', 'shop'), 'yes (exit 0)');
  t.is(await canI('list', 'pods', `--token=${token}`, '-n', 'shop'), 'yes (exit 0)');
  t.is(await canI('watch', 'pods', `--token=${token}`, '-n', 'shop'), 'yes (exit 0)');
  t.is(await canI('delete', 'pods', `--token=${token}`, '-n', 'shop'), 'no (exit 1)', 'view does not write');
  t.is(await canI('get', 'secrets', `--token=${token}`, '-n', 'shop'), 'no (exit 1)', 'view does not read Secrets');
  t.is(await canI('list', 'pods', `--token=${token}`, '-n', 'other'), 'no (exit 1)', 'a RoleBinding grants in its namespace only');
  t.is(await canI('list', 'nodes', `--token=${token}`), 'no (exit 1)');
  // A namespace is read in its own namespace (kube-apiserver's request info): shop, not other.
  t.is((await kubectl(h, ['get', 'ns', 'shop', `--token=${token}`])).code, 0);
  const otherNs = await kubectl(h, ['get', 'ns', 'other', `--token=${token}`]);
  t.is(otherNs.stderr.trim(), `Error from server (Forbidden): namespaces "other" is forbidden: User "${WEB}" cannot get resource "namespaces" in API group "" in the namespace "other"`);

  // The rules a user holds, as `kubectl auth can-i --list` prints them.
  const list = await kubectl(h, ['auth', 'can-i', '--list', `--token=${token}`, '-n', 'shop']);
  t.is(list.code, 0, list.stderr);
  t.regex(list.stdout, /^Resources\s+Non-Resource URLs\s+Resource Names\s+Verbs\n/);
  t.regex(list.stdout, /\npods\s+\[\]\s+\[\]\s+\[get list watch\]\n/);
  t.regex(list.stdout, /\nselfsubjectaccessreviews\.authorization\.k8s\.io\s+\[\]\s+\[\]\s+\[create\]\n/);
  t.regex(list.stdout, /\n\s+\[\/api\/\*\]\s+\[\]\s+\[get\]\n/);
  t.notRegex(list.stdout, /\nsecrets\s/);
  const other = await kubectl(h, ['auth', 'can-i', '--list', `--token=${token}`, '-n', 'other']);
  t.notRegex(other.stdout, /\npods\s/);
});

test('a token without the role gets a 403 worded as Kubernetes words it: list, get, watch, create, a subresource, cluster scope, another group', async (t) => {
  const { h, token } = await shop(t);
  const asWeb = { token };
  const user = `User "${WEB}"`;
  const cases: [string, string, unknown, string][] = [
    ['GET', '/api/v1/namespaces/shop/pods', undefined, `pods is forbidden: ${user} cannot list resource "pods" in API group "" in the namespace "shop"`],
    ['GET', '/api/v1/namespaces/shop/pods/web-1', undefined, `pods "web-1" is forbidden: ${user} cannot get resource "pods" in API group "" in the namespace "shop"`],
    ['GET', '/api/v1/namespaces/shop/pods?watch=true', undefined, `pods is forbidden: ${user} cannot watch resource "pods" in API group "" in the namespace "shop"`],
    ['POST', '/api/v1/namespaces/shop/configmaps', { metadata: { name: 'c' } }, `configmaps is forbidden: ${user} cannot create resource "configmaps" in API group "" in the namespace "shop"`],
    ['POST', '/api/v1/namespaces/shop/serviceaccounts/web/token', { spec: {} }, `serviceaccounts "web" is forbidden: ${user} cannot create resource "serviceaccounts/token" in API group "" in the namespace "shop"`],
    ['PATCH', '/api/v1/namespaces/shop/pods/web-1/status', { status: {} }, `pods "web-1" is forbidden: ${user} cannot patch resource "pods/status" in API group "" in the namespace "shop"`],
    ['GET', '/api/v1/nodes', undefined, `nodes is forbidden: ${user} cannot list resource "nodes" in API group "" at the cluster scope`],
    ['DELETE', '/api/v1/namespaces/shop/secrets', undefined, `secrets is forbidden: ${user} cannot deletecollection resource "secrets" in API group "" in the namespace "shop"`],
    ['GET', '/apis/security.mesh.io/v1/namespaces/shop/authorizationpolicies', undefined, `authorizationpolicies.security.mesh.io is forbidden: ${user} cannot list resource "authorizationpolicies" in API group "security.mesh.io" in the namespace "shop"`],
    ['GET', '/metrics', undefined, `forbidden: ${user} cannot get path "/metrics"`],
  ];
  for (const [method, path, body, message] of cases) {
    const r = await call(h.server, method, path, body, { ...asWeb, ...(method === 'PATCH' ? { contentType: 'application/merge-patch+json' } : {}) });
    t.is(r.status, 403, `${method} ${path}`);
    t.is(r.body.message, message);
    t.is(r.body.reason, 'Forbidden');
    t.is(r.body.code, 403);
  }
  const details = (await call(h.server, 'GET', '/apis/security.mesh.io/v1/namespaces/shop/authorizationpolicies/p', undefined, asWeb)).body.details;
  t.deepEqual(details, { name: 'p', group: 'security.mesh.io', kind: 'authorizationpolicies' });

  // kubectl shows the same message; discovery stays open to every authenticated user.
  const got = await kubectl(h, ['get', 'pods', '-n', 'shop', `--token=${token}`]);
  t.is(got.code, 1);
  t.is(got.stderr.trim(), `Error from server (Forbidden): pods is forbidden: ${user} cannot list resource "pods" in API group "" in the namespace "shop"`);
  t.is((await call(h.server, 'GET', '/apis', undefined, asWeb)).status, 200);
  t.is((await call(h.server, 'GET', '/openapi/v3', undefined, asWeb)).status, 200);

  // client-node sees a 403 too.
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(h.kubeconfig);
  kc.loadFromOptions({ ...kc, users: [{ name: 'web', token }], contexts: [{ name: 'web', cluster: kc.clusters[0]!.name, user: 'web' }], currentContext: 'web' });
  const err = await t.throwsAsync(kc.makeApiClient(k8s.CoreV1Api).listNamespacedPod({ namespace: 'shop' }));
  t.is((err as unknown as { code: number }).code, 403);
});

test('a ClusterRoleBinding grants at cluster scope; a Role grants its subresources and resourceNames only', async (t) => {
  const { h, token } = await shop(t);
  const asWeb = { token };
  await apply(t, h, 'apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: node-reader}\nrules:\n- {apiGroups: [""], resources: [nodes, namespaces], verbs: [get, list, watch]}\n');
  t.is((await call(h.server, 'GET', '/api/v1/nodes', undefined, asWeb)).status, 403);
  await apply(t, h, binding('ClusterRoleBinding', 'web-nodes', 'ClusterRole', 'node-reader'));
  t.is((await call(h.server, 'GET', '/api/v1/nodes', undefined, asWeb)).status, 200);
  t.is((await call(h.server, 'GET', '/api/v1/namespaces', undefined, asWeb)).status, 200);
  t.is((await call(h.server, 'GET', '/api/v1/namespaces/shop/pods', undefined, asWeb)).status, 403);

  // A Role: the status subresource but not the pod itself, and ConfigMap "settings" only.
  await apply(
    t,
    h,
    'apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: status-writer, namespace: shop}\nrules:\n- {apiGroups: [""], resources: [pods/status], verbs: [patch]}\n- {apiGroups: [""], resources: [configmaps], resourceNames: [settings], verbs: [get, update, list, watch]}\n',
  );
  await apply(t, h, binding('RoleBinding', 'web-status', 'Role', 'status-writer'));
  await call(h.server, 'POST', '/api/v1/namespaces/shop/pods', { metadata: { name: 'p' }, spec: { containers: [{ name: 'c', image: 'x' }] } });
  for (const name of ['settings', 'secret-ish']) await call(h.server, 'POST', '/api/v1/namespaces/shop/configmaps', { metadata: { name } });
  const merge = { ...asWeb, contentType: 'application/merge-patch+json' };
  t.is((await call(h.server, 'PATCH', '/api/v1/namespaces/shop/pods/p/status', { status: { phase: 'Running' } }, merge)).status, 200);
  t.is((await call(h.server, 'PATCH', '/api/v1/namespaces/shop/pods/p', { metadata: { labels: { a: 'b' } } }, merge)).status, 403);
  t.is((await call(h.server, 'GET', '/api/v1/namespaces/shop/configmaps/settings', undefined, asWeb)).status, 200);
  t.is((await call(h.server, 'GET', '/api/v1/namespaces/shop/configmaps/secret-ish', undefined, asWeb)).status, 403);
  t.is((await call(h.server, 'GET', '/api/v1/namespaces/shop/configmaps', undefined, asWeb)).status, 403, 'resourceNames do not grant the whole list');
  // A list or watch narrowed to the one name by field selector is allowed, as on a real cluster.
  const one = await call(h.server, 'GET', '/api/v1/namespaces/shop/configmaps?fieldSelector=metadata.name%3Dsettings', undefined, asWeb);
  t.is(one.status, 200);
  t.deepEqual(one.body.items.map((c: { metadata: { name: string } }) => c.metadata.name), ['settings']);
  t.is((await call(h.server, 'GET', '/api/v1/namespaces/other/configmaps/settings', undefined, asWeb)).status, 403);
});

test('RBAC objects are validated: roleRef is immutable, subjects are ServiceAccount, User or Group', async (t) => {
  const { h } = await shop(t);
  await apply(t, h, binding('RoleBinding', 'b', 'ClusterRole', 'view'));
  const changed = await kubectl(h, ['apply', '-f', '-'], { input: binding('RoleBinding', 'b', 'ClusterRole', 'edit') });
  t.not(changed.code, 0);
  t.regex(changed.stderr, /roleRef: Invalid value: .*cannot change roleRef/);
  const badKind = await call(h.server, 'POST', '/apis/rbac.authorization.k8s.io/v1/namespaces/shop/rolebindings', {
    metadata: { name: 'c' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'view' },
    subjects: [{ kind: 'Robot', name: 'r2' }],
  });
  t.is(badKind.status, 422);
  t.is(badKind.body.details.causes[0].field, 'subjects[0].kind');
  t.regex(badKind.body.message, /subjects\[0\]\.kind: Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group"/);
  const crbRole = await call(h.server, 'POST', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', { metadata: { name: 'x' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'r' }, subjects: [] });
  t.is(crbRole.status, 422);
  t.is(crbRole.body.details.causes[0].field, 'roleRef.kind');
  const nonResource = await call(h.server, 'POST', '/apis/rbac.authorization.k8s.io/v1/namespaces/shop/roles', { metadata: { name: 'r' }, rules: [{ verbs: ['get'], nonResourceURLs: ['/metrics'] }] });
  t.is(nonResource.status, 422);
  t.regex(nonResource.body.message, /rules\[0\]\.nonResourceURLs: Invalid value: .*namespaced rules cannot apply to non-resource URLs/);
  // The defaults a client expects are there, with their Kubernetes names.
  const roles = await kubectl(h, ['get', 'clusterroles', '-o', 'name']);
  for (const r of ['cluster-admin', 'admin', 'edit', 'view', 'system:discovery', 'system:basic-user']) t.true(roles.stdout.includes(`clusterrole.rbac.authorization.k8s.io/${r}\n`), r);
});

test('no escalation: a namespace admin binds view but not cluster-admin, and may not impersonate', async (t) => {
  const { h, token } = await shop(t);
  await apply(t, h, binding('RoleBinding', 'web-admin', 'ClusterRole', 'admin'));
  const asWeb = ['--token', token];
  const ok = await kubectl(h, ['apply', '-f', '-', ...asWeb], { input: binding('RoleBinding', 'web-view', 'ClusterRole', 'view') });
  t.is(ok.code, 0, ok.stderr);
  const up = await kubectl(h, ['apply', '-f', '-', ...asWeb], { input: binding('RoleBinding', 'web-root', 'ClusterRole', 'cluster-admin') });
  t.not(up.code, 0);
  t.regex(up.stderr, /rolebindings\.rbac\.authorization\.k8s\.io "web-root" is forbidden: user "system:serviceaccount:shop:web" .*is attempting to grant RBAC permissions not currently held/);
  const role = await call(
    h.server,
    'POST',
    '/apis/rbac.authorization.k8s.io/v1/namespaces/shop/roles',
    { metadata: { name: 'nodes' }, rules: [{ apiGroups: [''], resources: ['nodes'], verbs: ['delete'] }] },
    { token },
  );
  t.is(role.status, 403);
  t.is(
    role.body.message,
    `roles.rbac.authorization.k8s.io "nodes" is forbidden: user "${WEB}" (groups=["system:serviceaccounts" "system:serviceaccounts:shop" "system:authenticated"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[""], Resources:["nodes"], Verbs:["delete"]}`,
  );
  const own = await call(h.server, 'POST', '/apis/rbac.authorization.k8s.io/v1/namespaces/shop/roles', { metadata: { name: 'pods' }, rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['get'] }] }, { token });
  t.is(own.status, 201, 'a role within what it holds is fine');

  const as = await kubectl(h, ['get', 'pods', '-n', 'shop', '--as=someone', ...asWeb]);
  t.not(as.code, 0);
  t.regex(as.stderr, /users "someone" is forbidden: User "system:serviceaccount:shop:web" cannot impersonate resource "users" in API group "" at the cluster scope/);
});

test('SubjectAccessReview and SelfSubjectAccessReview over client-node answer for the subject, with the binding that allowed it', async (t) => {
  const { h, token } = await shop(t);
  const admin = new k8s.KubeConfig();
  admin.loadFromFile(h.kubeconfig);
  const authz = admin.makeApiClient(k8s.AuthorizationV1Api);
  const sar = (verb: string, namespace: string) =>
    authz.createSubjectAccessReview({
      body: { spec: { user: WEB, groups: ['system:serviceaccounts', 'system:serviceaccounts:shop', 'system:authenticated'], resourceAttributes: { verb, resource: 'pods', namespace } } },
    });
  t.false((await sar('list', 'shop')).status!.allowed);
  await apply(t, h, binding('RoleBinding', 'web-view', 'ClusterRole', 'view'));
  const yes = await sar('list', 'shop');
  t.true(yes.status!.allowed);
  t.is(yes.status!.reason, 'RBAC: allowed by RoleBinding "shop/web-view" of ClusterRole "view" to ServiceAccount "shop/web"');
  t.false((await sar('list', 'other')).status!.allowed);
  const bad = await call(h.server, 'POST', '/apis/authorization.k8s.io/v1/subjectaccessreviews', { spec: { resourceAttributes: { verb: 'get', resource: 'pods' } } });
  t.is(bad.status, 422);
  t.is(bad.body.details.causes[0].field, 'spec.user');

  // A service account reviews only itself: SelfSubjectAccessReview yes, SubjectAccessReview 403.
  const web = new k8s.KubeConfig();
  web.loadFromOptions({ ...admin, users: [{ name: 'web', token }], contexts: [{ name: 'web', cluster: admin.clusters[0]!.name, user: 'web' }], currentContext: 'web' });
  const self = await web.makeApiClient(k8s.AuthorizationV1Api).createSelfSubjectAccessReview({ body: { spec: { resourceAttributes: { verb: 'get', resource: 'pods', namespace: 'shop' } } } });
  t.true(self.status!.allowed);
  const err = await t.throwsAsync(web.makeApiClient(k8s.AuthorizationV1Api).createSubjectAccessReview({ body: { spec: { user: 'x', resourceAttributes: { verb: 'get', resource: 'pods' } } } }));
  t.is((err as unknown as { code: number }).code, 403);
});
