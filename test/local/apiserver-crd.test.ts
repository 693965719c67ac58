// CustomResourceDefinitions on the local API server, driven by the real kubectl and client-node:
// a CRD applied from YAML is served (discovery, CRUD, watch, patches, status and scale), its
// schema validates, defaults and prunes, its printer columns show in `kubectl get`, `kubectl
// explain` reads its schema, and deleting it deletes its objects. Gateway API (our fixture, after
// the spec) and the chart's security.mesh.io CRDs install the way users install them.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as k8s from '@kubernetes/client-node';
import test, { type ExecutionContext } from 'ava';
import { installChartCrds } from '../../src/local/chart-crds.ts';
import { call, harness, type Harness, kubectl, NETWORKING_CRDS, SECURITY_CRDS } from '../helpers/apiserver.ts';

const GATEWAY_API = fileURLToPath(new URL('../../daemonset/chart/files/gateway-api-crds.yaml', import.meta.url));

const WIDGET_CRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, plural: widgets, singular: widget, shortNames: [wd]}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas}
    additionalPrinterColumns:
    - {name: Size, type: string, jsonPath: .spec.size}
    - {name: Replicas, type: integer, jsonPath: .spec.replicas}
    - {name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    - {name: Color, type: string, jsonPath: .spec.color, priority: 1}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            description: What a widget should be.
            required: [size]
            properties:
              size: {type: string, enum: [small, large], description: How big the widget is.}
              color: {type: string, default: blue, pattern: '^[a-z]+$'}
              replicas: {type: integer, minimum: 0, maximum: 100, default: 1}
              port: {x-kubernetes-int-or-string: true}
              tags: {type: array, maxItems: 2, items: {type: string, minLength: 1}}
              labels: {type: object, additionalProperties: {type: string, maxLength: 5}}
              note: {type: string, nullable: true}
              extra: {type: object, x-kubernetes-preserve-unknown-fields: true}
          status:
            type: object
            properties:
              replicas: {type: integer}
              conditions: {type: array, items: {type: object, x-kubernetes-preserve-unknown-fields: true}}
`;

const widget = (name: string, spec: string) => `apiVersion: example.com/v1
kind: Widget
metadata: {name: ${name}, namespace: default}
spec:
${spec}
`;

const WIDGETS = '/apis/example.com/v1/namespaces/default/widgets';

async function file(h: Harness, name: string, text: string): Promise<string> {
  const path = join(h.dir, name);
  await writeFile(path, text);
  return path;
}

async function ok(t: ExecutionContext, h: Harness, args: string[], input?: string): Promise<string> {
  const r = await kubectl(h, args, input === undefined ? {} : { input });
  t.is(r.code, 0, `kubectl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function eventually(t: ExecutionContext, what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  t.true(check(), `timed out waiting for ${what}`);
}

test('a CRD applied with kubectl is established and its kind is served, validated, defaulted and pruned', async (t) => {
  const h = await harness(t);
  const crdFile = await file(h, 'crd.yaml', WIDGET_CRD);
  t.regex(await ok(t, h, ['apply', '-f', crdFile]), /customresourcedefinition\.apiextensions\.k8s\.io\/widgets\.example\.com created/);
  t.regex(await ok(t, h, ['wait', '--for', 'condition=established', '--timeout=10s', 'crd/widgets.example.com']), /condition met/);
  t.regex(await ok(t, h, ['get', 'crd']), /^NAME\s+CREATED AT\nwidgets\.example\.com\s+\d{4}-/);
  const crd = (await call(h.server, 'GET', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com')).body;
  t.deepEqual(crd.status.conditions.map((c: { type: string; status: string }) => `${c.type}=${c.status}`), ['NamesAccepted=True', 'Established=True']);
  t.deepEqual(crd.status.storedVersions, ['v1']);

  // Defaults fill what the manifest leaves out.
  const w1 = await file(h, 'w1.yaml', widget('w1', '  size: small\n  port: http'));
  t.regex(await ok(t, h, ['apply', '-f', w1]), /widget\.example\.com\/w1 created/);
  const created = (await call(h.server, 'GET', `${WIDGETS}/w1`)).body;
  t.like(created.spec, { size: 'small', color: 'blue', replicas: 1, port: 'http' });

  // A bad object is refused with a 422 naming each field, in Kubernetes' words.
  const bad = await kubectl(h, ['apply', '-f', '-'], { input: widget('w2', '  size: huge\n  replicas: 200\n  color: Red1\n  tags: [a, b, c]\n  port: 1.5\n  labels: {a: toolong}') });
  t.not(bad.code, 0);
  t.regex(bad.stderr, /The Widget "w2" is invalid/);
  t.regex(bad.stderr, /spec\.size: Unsupported value: "huge": supported values: "small", "large"/);
  t.regex(bad.stderr, /spec\.replicas: Invalid value: 200: spec\.replicas in body should be less than or equal to 100/);
  t.regex(bad.stderr, /spec\.color: Invalid value: "Red1": spec\.color in body should match '\^\[a-z\]\+\$'/);
  t.regex(bad.stderr, /spec\.tags: Too many: 3: must have at most 2 items/);
  t.regex(bad.stderr, /spec\.port: Invalid value: 1\.5: spec\.port in body must be of type integer,string: "number"/);
  t.regex(bad.stderr, /spec\.labels\.a: Too long: may not be more than 5 bytes/);
  const missing = await call(h.server, 'POST', WIDGETS, { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w3' }, spec: { note: null } });
  t.is(missing.status, 422);
  t.deepEqual(missing.body.details.causes, [{ reason: 'FieldValueRequired', field: 'spec.size', message: 'Required value' }]);

  // Unknown fields: kubectl (fieldValidation=Strict) is refused; otherwise pruned with a warning.
  const strict = await kubectl(h, ['apply', '-f', '-'], { input: widget('w4', '  size: large\n  colour: red\n  extra: {anything: [1, 2]}') });
  t.not(strict.code, 0);
  t.regex(strict.stderr, /unknown field "spec\.colour"/);
  const warned = await call(h.server, 'POST', WIDGETS, { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w4' }, spec: { size: 'large', colour: 'red', extra: { anything: [1, 2] } } });
  t.is(warned.status, 201, warned.text);
  t.deepEqual(warned.headers.warning, '299 - "unknown field \\"spec.colour\\""');
  t.deepEqual(warned.body.spec, { size: 'large', color: 'blue', replicas: 1, extra: { anything: [1, 2] } });
  const lax = await kubectl(h, ['apply', '--validate=false', '-f', '-'], { input: widget('w5', '  size: large\n  colour: red') });
  t.is(lax.code, 0, lax.stderr);
  t.false('colour' in (await call(h.server, 'GET', `${WIDGETS}/w5`)).body.spec);

  // Strategic merge patch is not for custom resources (415), merge and JSON patches are.
  const smp = await call(h.server, 'PATCH', `${WIDGETS}/w1`, { spec: { size: 'large' } }, { contentType: 'application/strategic-merge-patch+json' });
  t.is(smp.status, 415);
  t.regex(smp.body.message, /accepted media types include: application\/json-patch\+json, application\/merge-patch\+json, application\/apply-patch\+yaml/);
  const jp = await call(h.server, 'PATCH', `${WIDGETS}/w1`, [{ op: 'replace', path: '/spec/size', value: 'large' }], { contentType: 'application/json-patch+json' });
  t.is(jp.body.spec.size, 'large');
  t.is(jp.body.metadata.generation, 2);
});

test('kubectl get shows printer columns, explain reads the schema, apply twice changes nothing, scale and status work', async (t) => {
  const h = await harness(t);
  await ok(t, h, ['apply', '-f', await file(h, 'crd.yaml', WIDGET_CRD)]);
  const w1 = await file(h, 'w1.yaml', widget('w1', '  size: small\n  replicas: 2'));
  await ok(t, h, ['apply', '-f', w1]);
  const rv = (await call(h.server, 'GET', `${WIDGETS}/w1`)).body.metadata.resourceVersion;
  t.regex(await ok(t, h, ['apply', '-f', w1]), /widget\.example\.com\/w1 unchanged/);
  t.regex(await ok(t, h, ['apply', '--server-side', '-f', w1]), /serverside-applied/);
  t.regex(await ok(t, h, ['apply', '--server-side', '-f', w1]), /serverside-applied/);
  t.is((await call(h.server, 'GET', `${WIDGETS}/w1`)).body.metadata.resourceVersion, rv, 'no write when nothing changed');
  t.regex(await ok(t, h, ['apply', '-f', await file(h, 'w1b.yaml', widget('w1', '  size: large\n  replicas: 2'))]), /widget\.example\.com\/w1 configured/);

  const status = (await call(h.server, 'GET', `${WIDGETS}/w1`)).body;
  status.status = { replicas: 2, conditions: [{ type: 'Ready', status: 'True' }] };
  status.spec.size = 'small'; // ignored by the status subresource
  t.is((await call(h.server, 'PUT', `${WIDGETS}/w1/status`, status)).status, 200);

  const get = await ok(t, h, ['get', 'widgets']);
  t.regex(get, /^NAME\s+SIZE\s+REPLICAS\s+READY\s+AGE\n/);
  t.regex(get, /\nw1\s+large\s+2\s+True\s+\d+s\n/);
  t.regex(await ok(t, h, ['get', 'wd', '-o', 'wide']), /^NAME\s+SIZE\s+REPLICAS\s+READY\s+AGE\s+COLOR\nw1\s+large\s+2\s+True\s+\d+s\s+blue\n/);

  const explain = await ok(t, h, ['explain', 'widget.spec']);
  t.regex(explain, /KIND:\s+Widget/);
  t.regex(explain, /What a widget should be\./);
  t.regex(explain, /size\s+<string> -required-/);
  t.regex(explain, /How big the widget is\./);

  t.regex(await ok(t, h, ['scale', 'widget/w1', '--replicas=5']), /widget\.example\.com\/w1 scaled/);
  t.is((await call(h.server, 'GET', `${WIDGETS}/w1`)).body.spec.replicas, 5);
  const scale = (await call(h.server, 'GET', `${WIDGETS}/w1/scale`)).body;
  t.like(scale, { kind: 'Scale', apiVersion: 'autoscaling/v1', spec: { replicas: 5 }, status: { replicas: 2 } });
  const tooMany = await kubectl(h, ['scale', 'widget/w1', '--replicas=500']);
  t.not(tooMany.code, 0);
  t.regex(tooMany.stderr, /spec\.replicas: Invalid value: 500: spec\.replicas in body should be less than or equal to 100/);
});

test('a client-node informer follows custom objects; deleting the CRD deletes them and its kind leaves discovery', async (t) => {
  const h = await harness(t);
  await ok(t, h, ['apply', '-f', await file(h, 'crd.yaml', WIDGET_CRD)]);
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(h.kubeconfig);
  const custom = kc.makeApiClient(k8s.CustomObjectsApi);
  const path = '/apis/example.com/v1/namespaces/default/widgets';
  const informer = k8s.makeInformer(kc, path, () => custom.listNamespacedCustomObject({ group: 'example.com', version: 'v1', namespace: 'default', plural: 'widgets' }) as Promise<k8s.KubernetesListObject<k8s.KubernetesObject>>);
  const seen: string[] = [];
  informer.on('add', (o) => seen.push(`add ${o.metadata!.name}`));
  informer.on('update', (o) => seen.push(`update ${o.metadata!.name} ${(o as { spec: { size: string } }).spec.size}`));
  informer.on('delete', (o) => seen.push(`delete ${o.metadata!.name}`));
  informer.on('error', () => seen.push('error'));
  t.teardown(() => informer.stop());
  await informer.start();

  await custom.createNamespacedCustomObject({ group: 'example.com', version: 'v1', namespace: 'default', plural: 'widgets', body: { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'a' }, spec: { size: 'small' } } });
  await ok(t, h, ['apply', '-f', '-'], widget('b', '  size: small'));
  await ok(t, h, ['patch', 'widget', 'a', '--type=merge', '-p', '{"spec":{"size":"large"}}']);
  await eventually(t, 'add a, add b, update a', () => seen.includes('add a') && seen.includes('add b') && seen.includes('update a large'));
  t.is(informer.list().length, 2);

  t.regex(await ok(t, h, ['delete', 'crd', 'widgets.example.com']), /deleted/);
  await eventually(t, 'both deletes', () => seen.includes('delete a') && seen.includes('delete b'));
  t.is(informer.list().length, 0);
  t.is((await call(h.server, 'GET', WIDGETS)).status, 404);
  t.is((await call(h.server, 'GET', '/apis/example.com/v1')).status, 404);
  const groups = (await call(h.server, 'GET', '/apis')).body.groups.map((g: { name: string }) => g.name);
  t.false(groups.includes('example.com'));

  // Re-creating the CRD serves the kind again, empty: nothing of the old objects came back.
  await ok(t, h, ['apply', '-f', await file(h, 'crd.yaml', WIDGET_CRD)]);
  t.deepEqual((await call(h.server, 'GET', WIDGETS)).body.items, []);
});

test('CRDs are per API server and persist across a restart', async (t) => {
  const a = await harness(t);
  const b = await harness(t);
  await ok(t, a, ['apply', '-f', await file(a, 'crd.yaml', WIDGET_CRD)]);
  await ok(t, a, ['apply', '-f', '-'], widget('w1', '  size: small'));
  t.is((await call(b.server, 'GET', WIDGETS)).status, 404, 'the other server does not serve the kind');
  const noKind = await kubectl(b, ['get', 'widgets']);
  t.regex(noKind.stderr, /the server doesn't have a resource type "widgets"/);
  await a.restart();
  t.is((await call(a.server, 'GET', `${WIDGETS}/w1`)).body.spec.size, 'small');
  t.regex(await ok(t, a, ['get', 'widgets']), /\nw1\s+small\s/);
});

test('Gateway API CRDs applied with kubectl: a Gateway and an HTTPRoute are created, a malformed HTTPRoute is refused naming the field', async (t) => {
  const h = await harness(t);
  const installed = await ok(t, h, ['apply', '-f', GATEWAY_API]);
  t.regex(installed, /httproutes\.gateway\.networking\.k8s\.io created/);
  t.regex(installed, /validatingadmissionpolicy\.admissionregistration\.k8s\.io\/safe-upgrades\.gateway\.networking\.k8s\.io created/);
  await ok(t, h, ['apply', '--server-side', '-f', GATEWAY_API]);
  t.regex(await ok(t, h, ['apply', '-f', GATEWAY_API]), /validatingadmissionpolicybinding\.admissionregistration\.k8s\.io\/safe-upgrades\.gateway\.networking\.k8s\.io unchanged/);
  const manifests = `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: shop, namespace: default}
spec:
  gatewayClassName: mesh-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  parentRefs: [{name: shop}]
  hostnames: [shop.example.com]
  rules:
  - backendRefs: [{name: web, port: 80}]
`;
  const applied = await ok(t, h, ['apply', '-f', '-'], manifests);
  t.regex(applied, /gateway\.gateway\.networking\.k8s\.io\/shop created/);
  t.regex(applied, /httproute\.gateway\.networking\.k8s\.io\/web created/);
  // Re-applying writes nothing. (kubectl still says "configured": its merge patch replaces lists the
  // server filled with defaults, as against a real API server.)
  const rvOf = async () => (await call(h.server, 'GET', '/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/web')).body.metadata.resourceVersion;
  const rv = await rvOf();
  await ok(t, h, ['apply', '-f', '-'], manifests);
  await ok(t, h, ['apply', '--server-side', '-f', '-'], manifests);
  t.is(await rvOf(), rv);

  t.regex(await ok(t, h, ['get', 'gateways']), /^NAME\s+CLASS\s+ADDRESS\s+PROGRAMMED\s+AGE\nshop\s+mesh-waypoint\s+Unknown\s+\d+s\n/);
  t.regex(await ok(t, h, ['get', 'httproutes']), /^NAME\s+HOSTNAMES\s+AGE\nweb\s+\["shop\.example\.com"\]\s+\d+s\n/);
  const route = (await call(h.server, 'GET', '/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/web')).body;
  t.deepEqual(route.spec.parentRefs, [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'shop' }]);
  t.deepEqual(route.spec.rules[0].matches, [{ path: { type: 'PathPrefix', value: '/' } }]);
  t.like(route.spec.rules[0].backendRefs[0], { group: '', kind: 'Service', weight: 1 });
  // Served at v1beta1 too, stored once (at v1).
  const beta = (await call(h.server, 'GET', '/apis/gateway.networking.k8s.io/v1beta1/namespaces/default/httproutes/web')).body;
  t.is(beta.apiVersion, 'gateway.networking.k8s.io/v1beta1');
  t.is(beta.metadata.resourceVersion, route.metadata.resourceVersion);

  const bad = await kubectl(h, ['apply', '-f', '-'], {
    input: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bad, namespace: default}
spec:
  parentRefs: [{name: shop}]
  rules:
  - matches: [{path: {type: Bogus, value: /x}}]
    backendRefs: [{name: web, port: 70000}]
`,
  });
  t.not(bad.code, 0);
  t.regex(bad.stderr, /The HTTPRoute "bad" is invalid/);
  t.regex(bad.stderr, /spec\.rules\[0\]\.matches\[0\]\.path\.type: Unsupported value: "Bogus": supported values: "Exact", "PathPrefix", "RegularExpression"/);
  t.regex(bad.stderr, /spec\.rules\[0\]\.backendRefs\[0\]\.port: Invalid value: 70000: spec\.rules\[0\]\.backendRefs\[0\]\.port in body should be less than or equal to 65535/);
  t.is((await call(h.server, 'GET', '/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/bad')).status, 404);
});

test("the chart's security.mesh.io CRDs install with kubectl and an AuthorizationPolicy applies", async (t) => {
  const h = await harness(t);
  const none = await kubectl(h, ['get', 'authorizationpolicies']);
  t.not(none.code, 0, 'not served before its CRD is applied');
  t.regex(await ok(t, h, ['apply', '-f', SECURITY_CRDS]), /authorizationpolicies\.security\.mesh\.io created/);
  const policy = `apiVersion: security.mesh.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-web, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/client"]}}]
    to: [{operation: {ports: ["8080"]}}]
`;
  t.regex(await ok(t, h, ['apply', '-f', '-'], policy), /authorizationpolicy\.security\.mesh\.io\/allow-web created/);
  t.regex(await ok(t, h, ['get', 'ap']), /^NAME\s+ACTION\s+AGE\nallow-web\s+DENY\s+\d+s\n/);
  await ok(t, h, ['apply', '-f', '-'], 'apiVersion: security.mesh.io/v1\nkind: PeerAuthentication\nmetadata: {name: strict, namespace: default}\nspec: {mtls: {mode: STRICT}}\n');
  t.regex(await ok(t, h, ['get', 'pa']), /\nstrict\s+STRICT\s+\d+s\n/);
  const bad = await kubectl(h, ['apply', '-f', '-'], { input: policy.replace('"8080"', '"http"') });
  t.not(bad.code, 0);
  t.regex(bad.stderr, /spec\.rules\[0\]\.to\[0\]\.operation\.ports\[0\]: Invalid value: "http": spec\.rules\[0\]\.to\[0\]\.operation\.ports\[0\] in body should match/);
  // The controller writes status through the status subresource (merge patch, as client-node sends).
  const st = await call(h.server, 'PATCH', '/apis/security.mesh.io/v1/namespaces/default/authorizationpolicies/allow-web/status', { status: { conditions: [{ type: 'Accepted', status: 'True' }] } }, { contentType: 'application/merge-patch+json' });
  t.is(st.status, 200, st.text);
  t.is(st.body.status.conditions[0].type, 'Accepted');
});

test("the chart's networking.mesh.io CRD installs with kubectl: a TrafficPolicy applies, an invalid one is refused naming each field", async (t) => {
  const h = await harness(t);
  t.regex(await ok(t, h, ['apply', '-f', NETWORKING_CRDS]), /trafficpolicies\.networking\.mesh\.io created/);
  const good = `apiVersion: networking.mesh.io/v1alpha1
kind: TrafficPolicy
metadata: {name: web, namespace: default}
spec:
  targetRefs: [{kind: Service, name: web}]
  faultInjection:
    delay: {fixedDelay: 200ms, percentage: 12.5}
    abort: {httpStatus: 503, percentage: 50}
  connectionPool: {maxConnections: 100, maxPendingRequests: 0, maxRequestsPerConnection: 10}
  outlierDetection: {consecutive5xxErrors: 5, baseEjectionTime: 30s, maxEjectionPercent: 50}
  rateLimit: {maxTokens: 100, tokensPerFill: 10, fillInterval: 1s}
`;
  t.regex(await ok(t, h, ['apply', '-f', '-'], good), /trafficpolicy\.networking\.mesh\.io\/web created/);
  const stored = (await call(h.server, 'GET', '/apis/networking.mesh.io/v1alpha1/namespaces/default/trafficpolicies/web')).body;
  t.deepEqual(stored.spec.targetRefs, [{ group: '', kind: 'Service', name: 'web' }], 'group defaults to the core group');
  t.regex(await ok(t, h, ['get', 'tp']), /^NAME\s+ACCEPTED\s+AGE\nweb\s+\d+s\n/);

  const bad = await kubectl(h, ['apply', '-f', '-'], {
    input: `apiVersion: networking.mesh.io/v1alpha1
kind: TrafficPolicy
metadata: {name: bad, namespace: default}
spec:
  targetRefs: [{kind: Deployment, name: web}]
  faultInjection:
    delay: {fixedDelay: 1.5s, percentage: 101}
    abort: {httpStatus: 600}
  connectionPool: {maxConnections: -1}
  outlierDetection: {consecutive5xxErrors: 0, baseEjectionTime: 30, maxEjectionPercent: 200}
  rateLimit: {maxTokens: 0, tokensPerFill: 1, fillInterval: 1 second}
`,
  });
  t.not(bad.code, 0);
  t.regex(bad.stderr, /The TrafficPolicy "bad" is invalid/);
  for (const field of [
    /spec\.targetRefs\[0\]\.kind: Unsupported value: "Deployment": supported values: "Service"/,
    /spec\.faultInjection\.delay\.fixedDelay: Invalid value: "1\.5s": spec\.faultInjection\.delay\.fixedDelay in body should match/,
    /spec\.faultInjection\.delay\.percentage: Invalid value: 101: spec\.faultInjection\.delay\.percentage in body should be less than or equal to 100/,
    /spec\.faultInjection\.abort\.httpStatus: Invalid value: 600: spec\.faultInjection\.abort\.httpStatus in body should be less than or equal to 599/,
    /spec\.connectionPool\.maxConnections: Invalid value: -1: spec\.connectionPool\.maxConnections in body should be greater than or equal to 0/,
    /spec\.outlierDetection\.consecutive5xxErrors: Invalid value: 0: spec\.outlierDetection\.consecutive5xxErrors in body should be greater than or equal to 1/,
    /spec\.outlierDetection\.baseEjectionTime: Invalid value: 30: spec\.outlierDetection\.baseEjectionTime in body must be of type string: "integer"/,
    /spec\.outlierDetection\.maxEjectionPercent: Invalid value: 200/,
    /spec\.rateLimit\.maxTokens: Invalid value: 0/,
    /spec\.rateLimit\.fillInterval: Invalid value: "1 second"/,
  ]) {
    t.regex(bad.stderr, field);
  }
  const noTargets = await kubectl(h, ['apply', '-f', '-'], { input: 'apiVersion: networking.mesh.io/v1alpha1\nkind: TrafficPolicy\nmetadata: {name: none, namespace: default}\nspec:\n  targetRefs: []\n' });
  t.not(noTargets.code, 0);
  t.regex(noTargets.stderr, /spec\.targetRefs: Invalid value: .*spec\.targetRefs in body should have at least 1 items/);
  t.is((await call(h.server, 'GET', '/apis/networking.mesh.io/v1alpha1/namespaces/default/trafficpolicies/bad')).status, 404);
});

test('the controller runs without Gateway API CRDs and picks up Gateways once they are applied', async (t) => {
  const h = await harness(t);
  await ok(t, h, ['apply', '-f', '-'], 'apiVersion: v1\nkind: Namespace\nmetadata: {name: mesh-system}\n');
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(h.kubeconfig);
  // As src/local/mesh.ts installs them (through client-node, which must keep x-kubernetes-* keys).
  await installChartCrds(kc);
  await installChartCrds(kc); // again: an upgrade replaces them
  const { Controller } = await import('../../src/controller/controller.ts');
  const controller = await Controller.start(kc, { host: '127.0.0.1', xdsPort: 0, caPort: 0, relayPort: 0, dashboardPort: 0 });
  t.teardown(() => controller.stop());
  t.truthy(controller.model, 'a model was built without gateways and httproutes');
  t.deepEqual([...controller.notServed].sort(), ['gateways', 'grpcRoutes', 'httpRoutes', 'referenceGrants']);
  t.false(controller.notServed.has('trafficPolicies'), 'installed with the chart CRDs');
  t.false(controller.notServed.has('authorizationPolicies'));

  await ok(t, h, ['apply', '-f', GATEWAY_API]);
  await ok(t, h, ['apply', '-f', '-'], 'apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: wp, namespace: default}\nspec:\n  gatewayClassName: mesh-waypoint\n  listeners: [{name: mesh, port: 15008, protocol: HBONE}]\n');
  await eventually(t, 'the controller to list the new Gateway', () => !controller.notServed.has('gateways'), 15_000);

  // Policies are CRD objects: the controller writes their status through the status subresource.
  await ok(t, h, ['apply', '-f', '-'], 'apiVersion: security.mesh.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: broken, namespace: default}\nspec:\n  rules:\n  - from: [{source: {ipBlocks: ["10.0.0.300/8"]}}]\n');
  let conditions: { type: string; status: string; message: string }[] = [];
  const poll = async () => {
    conditions = (await call(h.server, 'GET', '/apis/security.mesh.io/v1/namespaces/default/authorizationpolicies/broken')).body.status?.conditions ?? [];
    return conditions.length > 0;
  };
  const end = Date.now() + 10_000;
  while (!(await poll()) && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
  t.true(conditions.some((c) => c.type === 'Accepted' && c.status === 'False' && /10\.0\.0\.300/.test(c.message)), JSON.stringify(conditions));
});

test('the controller compiles an HTTPRoute applied with kubectl for its Service and writes its status; a bad route says why and the rest keeps serving', async (t) => {
  const h = await harness(t);
  await ok(t, h, ['apply', '-f', '-'], 'apiVersion: v1\nkind: Namespace\nmetadata: {name: mesh-system}\n');
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(h.kubeconfig);
  await installChartCrds(kc);
  await ok(t, h, ['apply', '-f', GATEWAY_API]);
  const { Controller } = await import('../../src/controller/controller.ts');
  const { ROUTE } = await import('../../src/xds/index.ts');
  const controller = await Controller.start(kc, { host: '127.0.0.1', xdsPort: 0, caPort: 0, relayPort: 0, dashboardPort: 0 });
  t.teardown(() => controller.stop());

  const service = (name: string) => `apiVersion: v1\nkind: Service\nmetadata: {name: ${name}, namespace: default}\nspec:\n  selector: {app: ${name}}\n  ports: [{name: http, port: 80}]\n---\n`;
  const route = (name: string, rule: string) => `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ${name}, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: web}]
  rules:
${rule}
---
`;
  await ok(
    t,
    h,
    ['apply', '-f', '-'],
    service('web') +
      service('web-v2') +
      route('canary', '  - matches: [{headers: [{name: x-canary, value: "1"}]}]\n    backendRefs: [{name: web-v2, port: 80}]') +
      route('ext', '  - matches: [{path: {type: PathPrefix, value: /ext}}]\n    filters: [{type: ExtensionRef, extensionRef: {group: example.com, kind: Plugin, name: p}}]\n    backendRefs: [{name: web, port: 80}]') +
      route('gone', '  - matches: [{path: {type: PathPrefix, value: /gone}}]\n    backendRefs: [{name: web, port: 80, weight: 3}, {name: nothere, port: 80}]') +
      `apiVersion: networking.mesh.io/v1alpha1
kind: TrafficPolicy
metadata: {name: web, namespace: default}
spec:
  targetRefs: [{kind: Service, name: web}]
  rateLimit: {maxTokens: 10, tokensPerFill: 1, fillInterval: 100ms}
`,
  );

  type Cond = { type: string; status: string; reason: string; message: string; lastTransitionTime?: string };
  const parents = async (name: string): Promise<{ controllerName: string; conditions: Cond[] }[]> =>
    (await call(h.server, 'GET', `/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/${name}`)).body.status?.parents ?? [];
  const condOf = async (name: string, type: string) => (await parents(name)).find((p) => p.controllerName === 'mesh.io/waypoint-controller')?.conditions.find((c) => c.type === type);
  const end = Date.now() + 15_000;
  while (Date.now() < end && !((await condOf('gone', 'ResolvedRefs')) && (await condOf('ext', 'Accepted')) && (await condOf('canary', 'Accepted')))) await new Promise((r) => setTimeout(r, 100));

  const canary = await parents('canary');
  t.is(canary.length, 1);
  t.is(canary[0]!.controllerName, 'mesh.io/waypoint-controller');
  t.like(await condOf('canary', 'Accepted'), { status: 'True', reason: 'Accepted' });
  t.like(await condOf('canary', 'ResolvedRefs'), { status: 'True', reason: 'ResolvedRefs' });
  t.truthy((await condOf('canary', 'Accepted'))?.lastTransitionTime);
  const ext = await condOf('ext', 'Accepted');
  t.like(ext, { status: 'False', reason: 'UnsupportedValue' });
  t.regex(ext?.message ?? '', /filter type "ExtensionRef" is not supported/);
  const gone = await condOf('gone', 'ResolvedRefs');
  t.like(gone, { status: 'False', reason: 'BackendNotFound' });
  t.regex(gone?.message ?? '', /Service default\/nothere does not exist/);

  // The Route on the config stream: the good routes in precedence order, the bad one left out.
  await controller.settle();
  const r = controller.xds.store.get(ROUTE, 'default/web.default.svc.cluster.local')?.value;
  t.deepEqual(
    r?.rules.map((x) => [x.origin, x.backends.map((b) => `${b.service || '500'}:${b.weight}`).join(',')]),
    [
      ['HTTPRoute/default/gone/0', 'default/web.default.svc.cluster.local:3,500:1'],
      ['HTTPRoute/default/canary/0', 'default/web-v2.default.svc.cluster.local:1'],
    ],
  );
  t.deepEqual(r?.resilience?.rateLimit, { maxTokens: 10, tokensPerFill: 1, fillIntervalMs: 100 });
  const tp = (await call(h.server, 'GET', '/apis/networking.mesh.io/v1alpha1/namespaces/default/trafficpolicies/web')).body.status?.conditions ?? [];
  t.like(tp[0], { type: 'Accepted', status: 'True', reason: 'Accepted' });

  // Nothing changed: nothing is written again.
  const rv = (await call(h.server, 'GET', '/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/canary')).body.metadata.resourceVersion;
  await controller.rebuild();
  t.is((await call(h.server, 'GET', '/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/canary')).body.metadata.resourceVersion, rv);

  // Another controller's entry (for a Gateway parent) is kept when ours changes; when the route
  // leaves its Service parent, our entry goes and theirs stays.
  const foreign = { parentRef: { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'edge' }, controllerName: 'example.com/gateway', conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: '', lastTransitionTime: '2026-01-01T00:00:00Z' }] };
  const url = '/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/canary';
  const st = await call(h.server, 'PATCH', `${url}/status`, { status: { parents: [...(await parents('canary')), foreign] } }, { contentType: 'application/merge-patch+json' });
  t.is(st.status, 200, st.text);
  const since = (await condOf('canary', 'Accepted'))?.lastTransitionTime;
  await ok(t, h, ['apply', '-f', '-'], route('canary', '  - matches: [{headers: [{name: x-canary, value: "2"}]}]\n    backendRefs: [{name: web-v2, port: 80}]'));
  const waitFor = async (what: string, check: (p: { controllerName: string; conditions: Cond[] }[]) => boolean) => {
    const until = Date.now() + 10_000;
    while (Date.now() < until && !check(await parents('canary'))) await new Promise((r) => setTimeout(r, 100));
    t.true(check(await parents('canary')), `timed out waiting for ${what}: ${JSON.stringify(await parents('canary'))}`);
  };
  const generation = (await call(h.server, 'GET', url)).body.metadata.generation as number;
  await waitFor('our entry to observe the new generation', (ps) => ps.some((p) => p.controllerName === 'mesh.io/waypoint-controller' && p.conditions.every((c) => (c as Cond & { observedGeneration: number }).observedGeneration === generation)));
  t.deepEqual((await parents('canary')).map((p) => p.controllerName).sort(), ['example.com/gateway', 'mesh.io/waypoint-controller']);
  const ours = (await parents('canary')).find((p) => p.controllerName === 'mesh.io/waypoint-controller');
  t.is(ours?.conditions.find((c) => c.type === 'Accepted')?.lastTransitionTime, since, 'Accepted stayed True: its transition time is kept');
  await ok(t, h, ['apply', '-f', '-'], route('canary', '  - backendRefs: [{name: web-v2, port: 80}]').replace('parentRefs: [{group: "", kind: Service, name: web}]', 'parentRefs: [{name: edge}]'));
  await waitFor('our entry to go', (ps) => ps.length === 1 && ps[0]!.controllerName === 'example.com/gateway');

  // A GRPCRoute, and a backend in another namespace: refused until a ReferenceGrant there permits it.
  await ok(t, h, ['create', 'namespace', 'shared']);
  await ok(
    t,
    h,
    ['apply', '-f', '-'],
    `${service('db').replaceAll('default', 'shared')}apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: echo, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: web}]
  rules:
  - matches: [{method: {service: echo.Echo, method: Say}}]
    backendRefs: [{name: db, namespace: shared, port: 80}]
`,
  );
  const grpcResolved = async () =>
    ((await call(h.server, 'GET', '/apis/gateway.networking.k8s.io/v1/namespaces/default/grpcroutes/echo')).body.status?.parents?.[0]?.conditions ?? []).find((c: Cond) => c.type === 'ResolvedRefs') as Cond | undefined;
  const until = async (what: string, check: (c: Cond | undefined) => boolean) => {
    const stop = Date.now() + 15_000;
    while (Date.now() < stop && !check(await grpcResolved())) await new Promise((r) => setTimeout(r, 100));
    t.true(check(await grpcResolved()), `timed out waiting for ${what}: ${JSON.stringify(await grpcResolved())}`);
  };
  await until('RefNotPermitted', (c) => c?.reason === 'RefNotPermitted');
  await ok(
    t,
    h,
    ['apply', '-f', '-'],
    'apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: from-default, namespace: shared}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: GRPCRoute, namespace: default}]\n  to: [{group: "", kind: Service, name: db}]\n',
  );
  await until('ResolvedRefs=True once granted', (c) => c?.status === 'True');
  await controller.settle();
  const grpcRule = controller.xds.store.get(ROUTE, 'default/web.default.svc.cluster.local')?.value.rules.find((x) => x.kind === 'GRPC');
  t.deepEqual(grpcRule?.matches[0]?.grpc, { type: 'EXACT', service: 'echo.Echo', method: 'Say' });
  t.deepEqual(grpcRule?.backends, [{ service: 'shared/db.shared.svc.cluster.local', port: 80, weight: 1 }]);
});
