// `meshctl waypoint` against the local API server (no root, no controller): apply writes the
// Gateway and the namespace label, list/status read them back with the controller model's
// verdict, --wait follows the Gateway's status (set here by hand, as the controller would), and
// delete removes the Gateway and warns about the users it leaves refused.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { call, harness, type Harness, kubectl } from '../helpers/apiserver.ts';

const GATEWAY_API = fileURLToPath(new URL('../../daemonset/chart/files/gateway-api-crds.yaml', import.meta.url));
const MESHCTL = fileURLToPath(new URL('../../bin/meshctl', import.meta.url));
const GATEWAYS = '/apis/gateway.networking.k8s.io/v1/namespaces/shop/gateways';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function meshctl(h: Harness, args: string[], timeoutMs = 60_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      MESHCTL,
      [...args, '--kubeconfig', h.kubeconfig],
      { env: { ...process.env, KUBECONFIG: '', HOME: h.dir, NO_COLOR: '1' }, timeout: timeoutMs },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

async function ok(t: ExecutionContext, h: Harness, args: string[]): Promise<Run> {
  const r = await meshctl(h, args);
  t.is(r.code, 0, `meshctl ${args.join(' ')}: ${r.stderr}`);
  return r;
}

async function kubectlOk(t: ExecutionContext, h: Harness, args: string[], input?: string): Promise<string> {
  const r = await kubectl(h, args, input === undefined ? {} : { input });
  t.is(r.code, 0, `kubectl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function setProgrammed(h: Harness, name: string, status: 'True' | 'False', reason: string, message = ''): Promise<void> {
  const r = await call(
    h.server,
    'PATCH',
    `${GATEWAYS}/${name}/status`,
    {
      status: {
        conditions: [
          { type: 'Accepted', status: 'True', reason: 'Accepted', message: '', lastTransitionTime: new Date().toISOString(), observedGeneration: 1 },
          { type: 'Programmed', status, reason, message, lastTransitionTime: new Date().toISOString(), observedGeneration: 1 },
        ],
      },
    },
    { contentType: 'application/merge-patch+json' },
  );
  if (r.status !== 200) throw new Error(`setting the Gateway's status failed: ${r.status} ${r.text}`);
}

test('waypoint-apply-without-gateway-api-says-how-to-install-it', async (t) => {
  const h = await harness(t);
  const r = await meshctl(h, ['waypoint', 'apply', '-n', 'default']);
  t.is(r.code, 1);
  t.regex(r.stderr, /install the Gateway API CRDs: kubectl apply -f /);
  t.is(r.stdout, '');
});

test('waypoint-apply-enroll-list-status-wait-delete', async (t) => {
  const h = await harness(t);
  await kubectlOk(t, h, ['apply', '-f', GATEWAY_API]);

  // A namespace that does not exist is named, with the command that creates it.
  const missing = await meshctl(h, ['waypoint', 'apply', '-n', 'shop']);
  t.is(missing.code, 1);
  t.regex(missing.stderr, /namespace "shop" does not exist: create it with `kubectl create namespace shop`/);

  await kubectlOk(t, h, ['create', 'namespace', 'shop']);
  const applied = await ok(t, h, ['waypoint', 'apply', '--enroll-namespace', '-n', 'shop']);
  t.is(applied.stdout, 'waypoint shop/waypoint applied\nnamespace shop labeled with "mesh.io/use-waypoint: waypoint"\n');
  t.regex(applied.stderr, /warning: namespace shop is not in the mesh .*`kubectl label namespace shop mesh\.io\/dataplane-mode=ambient/);

  const gw = (await call(h.server, 'GET', `${GATEWAYS}/waypoint`)).body;
  t.is(gw.kind, 'Gateway');
  t.is(gw.spec.gatewayClassName, 'mesh-waypoint');
  t.deepEqual(gw.spec.listeners.map((l: { name: string; port: number; protocol: string }) => ({ name: l.name, port: l.port, protocol: l.protocol })), [{ name: 'mesh', port: 15008, protocol: 'HBONE' }]);
  t.is(gw.metadata.labels['mesh.io/waypoint-for'], 'service');
  const ns = (await call(h.server, 'GET', '/api/v1/namespaces/shop')).body;
  t.is(ns.metadata.labels['mesh.io/use-waypoint'], 'waypoint');

  // Applying again changes nothing and still succeeds (server-side apply is idempotent).
  const rv = gw.metadata.resourceVersion;
  await ok(t, h, ['waypoint', 'apply', '-n', 'shop']);
  t.is((await call(h.server, 'GET', `${GATEWAYS}/waypoint`)).body.metadata.resourceVersion, rv);

  // Moving the namespace to another waypoint needs --overwrite.
  const conflict = await meshctl(h, ['waypoint', 'apply', '-n', 'shop', '--name', 'other', '--enroll-namespace']);
  t.is(conflict.code, 1);
  t.regex(conflict.stderr, /namespace shop already uses waypoint shop\/waypoint: pass --overwrite/);
  t.is((await call(h.server, 'GET', `${GATEWAYS}/other`)).status, 404, 'nothing was written');

  const list = await ok(t, h, ['waypoint', 'list', '-n', 'shop']);
  t.regex(list.stdout, /^NAME\s+PROGRAMMED\s+TRAFFIC TYPE\s+USED BY\nwaypoint\s+Unknown\s+service\s+1 namespace\n$/);
  const all = await ok(t, h, ['waypoint', 'list', '-A', '-o', 'json']);
  t.like(JSON.parse(all.stdout)[0], { namespace: 'shop', name: 'waypoint', programmed: 'Unknown', trafficType: 'service', usedBy: { namespaces: 1, services: 0, pods: 0 } });

  const status = await ok(t, h, ['waypoint', 'status', '-n', 'shop']);
  t.regex(status.stdout, /^Waypoint shop\/waypoint {2}\(class mesh-waypoint, traffic type service\)/);
  // The CRD's default status (Pending, "Waiting for controller") is told apart from a controller's.
  t.regex(status.stdout, /Programmed\s+Unknown\s+Pending\s+Waiting for controller\n {2}no controller has reconciled it yet/);
  t.regex(status.stdout, /Deployment: none yet/);
  t.regex(status.stdout, /Traffic: REFUSED \(fail closed\) — Gateway shop\/waypoint is not Programmed/);
  t.regex(status.stdout, /Namespace\s+shop\s+-\s+refused/);

  // check --post-install names the waypoint and the users it refuses (no mesh runs here: the
  // controller's relay is unreachable, and that fails too).
  const check = await meshctl(h, ['check', '--post-install', '--server', '127.0.0.1:1', '-o', 'json']);
  t.is(check.code, 1);
  const verdicts = JSON.parse(check.stdout) as { name: string; status: string; detail: string }[];
  t.like(verdicts.find((v) => v.name === 'waypoint shop/waypoint'), {
    status: 'fail',
    detail: 'Gateway shop/waypoint is not Programmed (Programmed=Unknown): traffic is refused (fail closed) for Namespace/shop',
  });

  // --wait follows the status the controller would write, and returns once Programmed=True.
  await setProgrammed(h, 'waypoint', 'False', 'Pending', 'waiting for deployment shop/waypoint');
  const waiting = meshctl(h, ['waypoint', 'apply', '-n', 'shop', '--wait', '--timeout', '30s']);
  await new Promise((r) => setTimeout(r, 2500));
  await setProgrammed(h, 'waypoint', 'True', 'Programmed');
  const waited = await waiting;
  t.is(waited.code, 0, waited.stderr);
  t.regex(waited.stderr, /waiting up to 30s for waypoint shop\/waypoint to be Programmed/);
  t.regex(waited.stderr, /Programmed=False \(Pending\)/);
  t.regex(waited.stdout, /waypoint shop\/waypoint is ready \(Programmed=True after [\d.]+s\)/);
  // Programmed, but its Service has no ready endpoint yet: still refused, and status says why.
  t.regex((await ok(t, h, ['waypoint', 'status', '-n', 'shop'])).stdout, /Traffic: REFUSED \(fail closed\) — waypoint Service shop\/waypoint has no ready endpoint/);
  t.regex((await ok(t, h, ['waypoint', 'list', '-n', 'shop'])).stdout, /\nwaypoint\s+True\s+service\s+1 namespace\n/);

  // Its Service with a ready endpoint (what the controller's Deployment would bring): served.
  await kubectlOk(t, h, ['-n', 'shop', 'create', 'service', 'clusterip', 'waypoint', '--tcp=15008:15008']);
  await kubectlOk(t, h, ['-n', 'shop', 'create', 'service', 'clusterip', 'web', '--tcp=80:8080']);
  await kubectlOk(t, h, ['-n', 'shop', 'label', 'service', 'web', 'mesh.io/use-waypoint=waypoint']);
  await kubectlOk(t, h, ['apply', '-f', '-'], `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: waypoint-abc, namespace: shop, labels: {kubernetes.io/service-name: waypoint}}
addressType: IPv4
endpoints: [{addresses: [10.244.1.30], conditions: {ready: true}}]
ports: [{name: mesh, port: 15008, protocol: TCP}]
`);
  const served = (await ok(t, h, ['waypoint', 'status', '-n', 'shop'])).stdout;
  t.regex(served, /Service shop\/waypoint: [\d.]+, 1\/1 endpoints ready/);
  t.regex(served, /Traffic: served/);
  // The waypoint's own Service is not among its users, though the namespace label reaches it.
  t.regex(served, /Users \(1 namespace, 1 service\):/);
  t.regex(served, /Service\s+shop\s+web\s+served/);
  const healthy = JSON.parse((await meshctl(h, ['check', '--post-install', '--server', '127.0.0.1:1', '-o', 'json'])).stdout) as { name: string; status: string; detail: string }[];
  t.like(healthy.find((v) => v.name === 'waypoints'), { status: 'ok', detail: '1 waypoint in use, all ready (shop/waypoint)' });

  // On timeout: the conditions, the reason and what to look at next, and exit code 1.
  const timedOut = await meshctl(h, ['waypoint', 'apply', '-n', 'shop', '--name', 'slow', '--for', 'workload', '--wait', '--timeout', '1s']);
  t.is(timedOut.code, 1);
  t.regex(timedOut.stderr, /waypoint shop\/slow was not Programmed within 1s/);
  t.regex(timedOut.stderr, /no controller has reconciled it/);
  t.regex(timedOut.stderr, /kubectl -n shop get deploy,pods -l gateway\.networking\.k8s\.io\/gateway-name=slow/);
  t.is((await call(h.server, 'GET', `${GATEWAYS}/slow`)).body.metadata.labels['mesh.io/waypoint-for'], 'workload');

  // delete: the Gateway goes, and the namespace whose label still names it is called out.
  const deleted = await ok(t, h, ['waypoint', 'delete', '-n', 'shop', 'waypoint']);
  t.is(deleted.stdout, 'waypoint shop/waypoint deleted\n');
  t.regex(deleted.stderr, /warning: 1 namespace, 1 service still use waypoint shop\/waypoint: their traffic is now refused \(fail closed\)/);
  t.regex(deleted.stderr, /kubectl label namespace shop mesh\.io\/use-waypoint- mesh\.io\/use-waypoint-namespace-/);
  t.is((await call(h.server, 'GET', `${GATEWAYS}/waypoint`)).status, 404);
  const gone = await meshctl(h, ['waypoint', 'status', '-n', 'shop']);
  t.is(gone.code, 1);
  t.regex(gone.stderr, /no waypoint shop\/waypoint \(waypoints in shop: slow\); Namespace\/shop, (Service\/shop\/waypoint, )?Service\/shop\/web still name it, so their traffic is refused/);

  const rest = await ok(t, h, ['waypoint', 'delete', '-n', 'shop', '--all']);
  t.is(rest.stdout, 'waypoint shop/slow deleted\n');
  t.is((await call(h.server, 'GET', GATEWAYS)).body.items.length, 0);
});
