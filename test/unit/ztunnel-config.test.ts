// `meshctl ztunnel-config` against real ztunnel admin servers (src/admin) on port 0 whose
// /config_dump serves a two-node shop: the command runs as a user runs it (bin/meshctl), and the
// tests assert the rows an operator would read.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import * as yaml from 'js-yaml';
import { EXIT_USAGE } from '../../src/cli/main.ts';
import type { CertStatus } from '../../src/identity/index.ts';
import type { Authorization, Service, Workload } from '../../src/xds/index.ts';
import { type ConfigDump, type Listener, LogLevels, startAdminServer, startReadinessServer } from '../../src/admin/index.ts';

const MESHCTL = fileURLToPath(new URL('../../bin/meshctl', import.meta.url));
const HOST = '127.0.0.1';

// ---- a two-node shop, as ztunnel's configDump() holds it --------------------------------------

const ip = (s: string): Uint8Array => Uint8Array.from(s.split('.').map(Number));
const CART = 'shop/cart.shop.svc.cluster.local';
const WEB = 'shop/web.shop.svc.cluster.local';
const DB = 'legacy/db.legacy.svc.cluster.local';
const WAYPOINT = 'shop/waypoint.shop.svc.cluster.local';

function workload(w: Partial<Workload> & Pick<Workload, 'name' | 'namespace' | 'node' | 'podUid'>): Workload {
  return {
    uid: `Kubernetes//v1/Pod/${w.namespace}/${w.name}`,
    addresses: [],
    hostname: '',
    network: '',
    trustDomain: 'cluster.local',
    serviceAccount: 'default',
    tunnelProtocol: 'HBONE',
    waypoint: null,
    canonicalName: w.name,
    canonicalRevision: 'latest',
    workloadType: 'DEPLOYMENT',
    workloadName: w.name,
    status: 'HEALTHY',
    services: {},
    authorizationPolicies: [],
    clusterId: 'Kubernetes',
    ...w,
  };
}

const ports = (servicePort: number, targetPort: number) => ({ ports: [{ servicePort, targetPort, appProtocol: 'http' }] });

const WORKLOADS: Workload[] = [
  workload({ name: 'web-5f6c9-abcde', namespace: 'shop', node: 'node2', podUid: 'uid-web', addresses: [ip('10.244.2.5')], serviceAccount: 'web', waypoint: { hostname: WAYPOINT, hboneMtlsPort: 15008, destination: 'hostname' }, services: { [WEB]: ports(80, 8080) } }),
  workload({
    name: 'cart-7d4b9-x2x4q',
    namespace: 'shop',
    node: 'node1',
    podUid: 'uid-cart-1',
    addresses: [ip('10.244.1.7'), Buffer.from('fd000000000000000000000000010007', 'hex')],
    serviceAccount: 'cart',
    services: { [CART]: ports(80, 8080) },
  }),
  workload({ name: 'cart-7d4b9-k9p2m', namespace: 'shop', node: 'node2', podUid: 'uid-cart-2', addresses: [ip('10.244.2.9')], serviceAccount: 'cart', status: 'UNHEALTHY', services: { [CART]: ports(80, 8080) } }),
  workload({ name: 'db-0', namespace: 'legacy', node: 'node1', podUid: 'uid-db', addresses: [ip('10.244.1.20')], tunnelProtocol: 'NONE', workloadType: 'POD', services: { [DB]: ports(5432, 5432) } }),
  workload({ name: 'waypoint-6b7d8-qwert', namespace: 'shop', node: 'node1', podUid: 'uid-waypoint', addresses: [ip('10.244.1.30')], serviceAccount: 'waypoint', services: { [WAYPOINT]: { ports: [{ servicePort: 15008, targetPort: 15008, appProtocol: '' }] } } }),
];

function service(namespace: string, name: string, vip: string, waypoint: string | null = null): Service {
  return {
    name,
    namespace,
    hostname: `${name}.${namespace}.svc.cluster.local`,
    addresses: [{ network: '', address: ip(vip) }],
    ports: [{ servicePort: 80, targetPort: 8080, appProtocol: 'http' }],
    subjectAltNames: [],
    waypoint: waypoint ? { hostname: waypoint, hboneMtlsPort: 15008, destination: 'hostname' } : null,
  };
}

const SERVICES: Service[] = [
  service('shop', 'web', '10.96.0.20', WAYPOINT),
  service('shop', 'cart', '10.96.0.10'),
  service('shop', 'waypoint', '10.96.0.30'),
  service('legacy', 'db', '10.96.0.40'),
  // A waypoint no Service has: ztunnel fails closed, and the table must say so.
  service('shop', 'orders', '10.96.0.50', 'shop/gone.shop.svc.cluster.local'),
];

function policy(namespace: string, name: string, action: Authorization['action'], scope: Authorization['scope'], extra: Partial<Authorization> = {}): Authorization {
  return { name, namespace, scope, action, rules: [], dryRun: false, origin: 'AUTHORIZATION_POLICY', ...extra };
}

const POLICIES: Authorization[] = [
  policy('shop', 'deny-legacy', 'DENY', 'NAMESPACE'),
  policy('istio-system', 'converted_static_strict', 'DENY', 'WORKLOAD_SELECTOR', { origin: 'PEER_AUTHENTICATION' }),
  policy('shop', 'allow-web', 'ALLOW', 'WORKLOAD_SELECTOR', { dryRun: true }),
];

function cert(sa: string, serial: string | undefined, notBefore?: string, notAfter?: string, state: CertStatus['state'] = 'ready'): CertStatus {
  return {
    identity: `spiffe://cluster.local/ns/shop/sa/${sa}`,
    state,
    serial,
    notBefore: notBefore ? new Date(notBefore) : undefined,
    notAfter: notAfter ? new Date(notAfter) : undefined,
    nextRefresh: undefined,
    failures: state === 'failed' ? 3 : 0,
    lastError: state === 'failed' ? 'CA unreachable' : undefined,
  };
}

function dump(node: 'node1' | 'node2'): ConfigDump {
  const common = { workloads: WORKLOADS, services: SERVICES, policies: POLICIES, pods: [] };
  if (node === 'node1') {
    return {
      ...common,
      certificates: [
        cert('waypoint', '3c1f', '2026-01-01T00:00:00.000Z', '2099-01-01T00:00:00.000Z'),
        cert('cart', 'a1b2c3', '2026-01-01T00:00:00.000Z', '2099-01-01T00:00:00.000Z'),
      ],
      connections: [
        { direction: 'outbound', src: '10.244.1.7', dst: '10.96.0.40:5432', pod: 'uid-cart-1', since: '2026-11-22T01:00:00.000Z' },
        { direction: 'inbound', src: '10.244.2.5', dst: '10.244.1.7:8080', pod: 'uid-cart-1', since: '2026-11-22T01:00:01.000Z' },
      ],
    };
  }
  return {
    ...common,
    certificates: [
      cert('web', '7f00', '2020-01-01T00:00:00.000Z', '2021-01-01T00:00:00.000Z'),
      cert('cart', undefined, undefined, undefined, 'failed'),
    ],
    connections: [
      { direction: 'outbound', src: '10.244.2.5', dst: '10.96.0.10:80', pod: 'uid-web', since: '2026-11-22T01:00:02.000Z' },
      { direction: 'outbound', src: '10.244.2.5', dst: '10.244.1.7:8080', pod: 'uid-web', since: '2026-11-22T01:00:03.000Z' },
    ],
  };
}

// ---- harness ----------------------------------------------------------------------------------

interface Mesh {
  stateDir: string;
  admins: Record<string, string>;
}

async function startMesh(t: import('ava').ExecutionContext, extraNodes: Record<string, string> = {}): Promise<Mesh> {
  const admins: Record<string, string> = {};
  for (const node of ['node1', 'node2'] as const) {
    const l: Listener = await startAdminServer({ host: HOST, port: 0, configDump: () => dump(node), logLevels: new LogLevels() });
    t.teardown(() => l.close(0));
    admins[node] = `${HOST}:${l.port}`;
  }
  const stateDir = mkdtempSync(join(tmpdir(), 'meshctl-zc-'));
  t.teardown(() => rmSync(stateDir, { recursive: true, force: true }));
  const nodes = Object.fromEntries(Object.entries({ ...admins, ...extraNodes }).map(([n, a]) => [n, { ztunnelAdmin: a }]));
  writeFileSync(join(stateDir, 'mesh.json'), JSON.stringify({ nodes }));
  return { stateDir, admins };
}

/** An address nothing listens on: a port just freed. */
async function closedAddress(): Promise<string> {
  const l = await startAdminServer({ host: HOST, port: 0, configDump: () => dump('node1'), logLevels: new LogLevels() });
  await l.close(0);
  return `${HOST}:${l.port}`;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

// Asynchronous: the admin servers answer from this process's event loop.
function meshctl(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(MESHCTL, args, { encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

const lines = (s: string) => s.trimEnd().split('\n');

// ---- sections ---------------------------------------------------------------------------------

test('workloads: every workload once, merged across nodes, with waypoint and protocol', async (t) => {
  const m = await startMesh(t);
  const r = await meshctl('ztunnel-config', 'workloads', '--state-dir', m.stateDir);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(lines(r.stdout), [
    'NAMESPACE  POD NAME              ADDRESS               NODE   WAYPOINT  PROTOCOL',
    'legacy     db-0                  10.244.1.20           node1  None      TCP',
    'shop       cart-7d4b9-k9p2m      10.244.2.9            node2  None      HBONE',
    'shop       cart-7d4b9-x2x4q      10.244.1.7,fd00::1:7  node1  None      HBONE',
    'shop       waypoint-6b7d8-qwert  10.244.1.30           node1  None      HBONE',
    'shop       web-5f6c9-abcde       10.244.2.5            node2  waypoint  HBONE',
  ]);
});

test('workloads: --namespace, --workload-node and --address filter like istioctl', async (t) => {
  const m = await startMesh(t);
  const byNode = await meshctl('zc', 'workload', '--state-dir', m.stateDir, '-n', 'shop', '--workload-node', 'node2');
  t.is(byNode.code, 0, byNode.stderr);
  t.deepEqual(
    lines(byNode.stdout).map((l) => l.split(/\s{2,}/)[1]),
    ['POD NAME', 'cart-7d4b9-k9p2m', 'web-5f6c9-abcde'],
  );
  const byAddress = await meshctl('zc', 'workloads', '--state-dir', m.stateDir, '--address', 'fd00:0:0:0:0:0:1:7');
  t.deepEqual(lines(byAddress.stdout).slice(1).map((l) => l.split(/\s{2,}/)[1]), ['cart-7d4b9-x2x4q']);
});

test('services: VIP, waypoint (missing ones marked) and healthy/total endpoints', async (t) => {
  const m = await startMesh(t);
  const r = await meshctl('ztunnel-config', 'services', '--state-dir', m.stateDir);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(lines(r.stdout), [
    'NAMESPACE  SERVICE NAME  SERVICE VIP  WAYPOINT        ENDPOINTS',
    'legacy     db            10.96.0.40   None            1/1',
    'shop       cart          10.96.0.10   None            1/2',
    'shop       orders        10.96.0.50   gone (missing)  0/0',
    'shop       waypoint      10.96.0.30   None            1/1',
    'shop       web           10.96.0.20   waypoint        1/1',
  ]);
});

test('policies: action (dry run marked) and scope, sorted by namespace and name', async (t) => {
  const m = await startMesh(t);
  const r = await meshctl('ztunnel-config', 'policies', '--state-dir', m.stateDir);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(lines(r.stdout), [
    'NAMESPACE     POLICY NAME              ACTION           SCOPE',
    'istio-system  converted_static_strict  DENY             WORKLOAD_SELECTOR',
    'shop          allow-web                ALLOW (dry run)  WORKLOAD_SELECTOR',
    'shop          deny-legacy              DENY             NAMESPACE',
  ]);
});

test('certificates: every node\'s, with a NODE column, validity judged against now', async (t) => {
  const m = await startMesh(t);
  const r = await meshctl('ztunnel-config', 'certificates', '--state-dir', m.stateDir);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(lines(r.stdout), [
    'NODE   CERTIFICATE NAME                            TYPE  STATUS  VALID CERT  SERIAL NUMBER  NOT AFTER                 NOT BEFORE',
    'node1  spiffe://cluster.local/ns/shop/sa/cart      Leaf  ready   true        a1b2c3         2099-01-01T00:00:00.000Z  2026-01-01T00:00:00.000Z',
    'node1  spiffe://cluster.local/ns/shop/sa/waypoint  Leaf  ready   true        3c1f           2099-01-01T00:00:00.000Z  2026-01-01T00:00:00.000Z',
    'node2  spiffe://cluster.local/ns/shop/sa/cart      Leaf  failed  false       NA             NA                        NA',
    'node2  spiffe://cluster.local/ns/shop/sa/web       Leaf  ready   false       7f00           2021-01-01T00:00:00.000Z  2020-01-01T00:00:00.000Z',
  ]);
});

test('certificates --node: that ztunnel only, and no NODE column', async (t) => {
  const m = await startMesh(t);
  const r = await meshctl('ztunnel-config', 'certificates', '--state-dir', m.stateDir, '--node', 'node2');
  t.is(r.code, 0, r.stderr);
  t.deepEqual(lines(r.stdout), [
    'CERTIFICATE NAME                        TYPE  STATUS  VALID CERT  SERIAL NUMBER  NOT AFTER                 NOT BEFORE',
    'spiffe://cluster.local/ns/shop/sa/cart  Leaf  failed  false       NA             NA                        NA',
    'spiffe://cluster.local/ns/shop/sa/web   Leaf  ready   false       7f00           2021-01-01T00:00:00.000Z  2020-01-01T00:00:00.000Z',
  ]);
});

test('connections: named ends, the dialled target, and the protocol where the dump tells it', async (t) => {
  const m = await startMesh(t);
  const r = await meshctl('ztunnel-config', 'connections', '--state-dir', m.stateDir);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(lines(r.stdout), [
    'NODE   WORKLOAD               DIRECTION  LOCAL                       REMOTE                      REMOTE TARGET                     PROTOCOL',
    'node1  cart-7d4b9-x2x4q.shop  Inbound    cart-7d4b9-x2x4q.shop:8080  web-5f6c9-abcde.shop        -                                 -',
    'node1  cart-7d4b9-x2x4q.shop  Outbound   cart-7d4b9-x2x4q.shop       -                           db.legacy.svc.cluster.local:5432  TCP',
    'node2  web-5f6c9-abcde.shop   Outbound   web-5f6c9-abcde.shop        cart-7d4b9-x2x4q.shop:8080  cart-7d4b9-x2x4q.shop:8080        HBONE',
    'node2  web-5f6c9-abcde.shop   Outbound   web-5f6c9-abcde.shop        -                           cart.shop.svc.cluster.local:80    HBONE',
  ]);
});

test('connections --node --raw --direction: one ztunnel, addresses as they are', async (t) => {
  const m = await startMesh(t);
  const r = await meshctl('zc', 'connections', '--state-dir', m.stateDir, '--node', 'node1', '--raw', '--direction', 'outbound');
  t.is(r.code, 0, r.stderr);
  t.deepEqual(lines(r.stdout), [
    'WORKLOAD               DIRECTION  LOCAL       REMOTE  REMOTE TARGET    PROTOCOL',
    'cart-7d4b9-x2x4q.shop  Outbound   10.244.1.7  -       10.96.0.40:5432  TCP',
  ]);
});

test('all: each section under a heading, in order', async (t) => {
  const m = await startMesh(t);
  const r = await meshctl('ztunnel-config', 'all', '--state-dir', m.stateDir, '--node', 'node1', '-n', 'legacy');
  t.is(r.code, 0, r.stderr);
  t.deepEqual(lines(r.stdout), [
    'Workloads (1)',
    'NAMESPACE  POD NAME  ADDRESS      NODE   WAYPOINT  PROTOCOL',
    'legacy     db-0      10.244.1.20  node1  None      TCP',
    '',
    'Services (1)',
    'NAMESPACE  SERVICE NAME  SERVICE VIP  WAYPOINT  ENDPOINTS',
    'legacy     db            10.96.0.40   None      1/1',
    '',
    'Policies (0)',
    'NAMESPACE  POLICY NAME  ACTION  SCOPE',
    '',
    'Certificates (0)',
    'CERTIFICATE NAME  TYPE  STATUS  VALID CERT  SERIAL NUMBER  NOT AFTER  NOT BEFORE',
    '',
    'Connections (0)',
    'WORKLOAD  DIRECTION  LOCAL  REMOTE  REMOTE TARGET  PROTOCOL',
  ]);
});

// ---- json and yaml ----------------------------------------------------------------------------

test('-o json prints the dump\'s own objects (addresses as IP text); -o yaml is the same data', async (t) => {
  const m = await startMesh(t);
  const json = await meshctl('ztunnel-config', 'workloads', '--state-dir', m.stateDir, '-o', 'json', '-n', 'shop');
  t.is(json.code, 0, json.stderr);
  const ws = JSON.parse(json.stdout) as { name: string; addresses: string[]; podUid: string; services: Record<string, unknown> }[];
  t.deepEqual(
    ws.map((w) => w.name),
    ['cart-7d4b9-k9p2m', 'cart-7d4b9-x2x4q', 'waypoint-6b7d8-qwert', 'web-5f6c9-abcde'],
  );
  t.deepEqual(ws[1]!.addresses, ['10.244.1.7', 'fd00::1:7']);
  t.is(ws[1]!.podUid, 'uid-cart-1');
  t.deepEqual(Object.keys(ws[1]!.services), [CART]);

  const yml = await meshctl('ztunnel-config', 'workloads', '--state-dir', m.stateDir, '-o', 'yaml', '-n', 'shop');
  t.is(yml.code, 0, yml.stderr);
  t.deepEqual(yaml.load(yml.stdout), ws);
});

test('-o json: per-node entries carry their node; all is one object keyed by section', async (t) => {
  const m = await startMesh(t);
  const certs = JSON.parse((await meshctl('zc', 'certificates', '--state-dir', m.stateDir, '-o', 'json')).stdout) as { node: string; identity: string; state: string }[];
  t.deepEqual(
    certs.map((c) => `${c.node} ${c.identity.replace(/.*\/sa\//, '')} ${c.state}`),
    ['node1 cart ready', 'node1 waypoint ready', 'node2 cart failed', 'node2 web ready'],
  );
  const all = yaml.load((await meshctl('zc', 'all', '--state-dir', m.stateDir, '-o', 'yaml')).stdout) as Record<string, unknown[]>;
  t.deepEqual(Object.keys(all), ['workloads', 'services', 'policies', 'certificates', 'connections']);
  t.deepEqual(
    [all.workloads!.length, all.services!.length, all.policies!.length, all.certificates!.length, all.connections!.length],
    [5, 5, 3, 4, 4],
  );
});

// ---- where the ztunnels are, and what goes wrong ----------------------------------------------

test('--admin talks to one ztunnel directly, without a state dir', async (t) => {
  const m = await startMesh(t);
  const r = await meshctl('ztunnel-config', 'policies', '--admin', m.admins.node2!, '--state-dir', '/nonexistent', '-n', 'istio-system');
  t.is(r.code, 0, r.stderr);
  t.deepEqual(lines(r.stdout), ['NAMESPACE     POLICY NAME              ACTION  SCOPE', 'istio-system  converted_static_strict  DENY    WORKLOAD_SELECTOR']);
});

test('an unknown --node lists the known nodes', async (t) => {
  const m = await startMesh(t);
  const r = await meshctl('ztunnel-config', 'workloads', '--state-dir', m.stateDir, '--node', 'node9');
  t.is(r.code, 1);
  t.is(r.stdout, '');
  t.regex(r.stderr, /no node "node9" in .*mesh\.json; known nodes: node1, node2/);
});

test('an unreachable admin server is named, with what to check', async (t) => {
  const addr = await closedAddress();
  const r = await meshctl('ztunnel-config', 'services', '--admin', addr);
  t.is(r.code, 1);
  t.true(r.stderr.includes(`cannot reach ztunnel admin at ${addr} (ECONNREFUSED)`), r.stderr);
  t.regex(r.stderr, /meshctl dev status/);
  t.regex(r.stderr, /kubectl port-forward/);
});

test('one unreachable node is reported and fails the command, the others are still shown', async (t) => {
  const addr = await closedAddress();
  const m = await startMesh(t, { node3: addr });
  const r = await meshctl('ztunnel-config', 'certificates', '--state-dir', m.stateDir);
  t.is(r.code, 1);
  t.true(r.stderr.includes(`cannot reach node node3's ztunnel admin at ${addr}`), r.stderr);
  t.deepEqual(
    lines(r.stdout).map((l) => l.split(/\s{2,}/)[0]),
    ['NODE', 'node1', 'node1', 'node2', 'node2'],
  );
});

test('--admin accepts a URL form (http://host:port/)', async (t) => {
  const m = await startMesh(t);
  const r = await meshctl('ztunnel-config', 'workloads', '--admin', `http://${m.admins.node1!}/`, '-o', 'json');
  t.is(r.code, 0, r.stderr);
  t.is((JSON.parse(r.stdout) as unknown[]).length, 5);
});

test('something that is not a ztunnel admin server is called out', async (t) => {
  // ztunnel's readiness port: a real server, but /config_dump is not there.
  const readiness = await startReadinessServer({ host: HOST, port: 0, ready: () => ({ ready: true }) });
  t.teardown(() => readiness.close(0));
  const wrongPort = await meshctl('ztunnel-config', 'workloads', '--admin', `${HOST}:${readiness.port}`);
  t.is(wrongPort.code, 1);
  t.true(wrongPort.stderr.includes(`ztunnel admin at ${HOST}:${readiness.port} answered 404 to GET /config_dump: readiness is at /healthz/ready`), wrongPort.stderr);

  const other = http.createServer((_req, res) => res.end('{"status":"ok"}'));
  await new Promise<void>((resolve) => other.listen(0, HOST, resolve));
  t.teardown(() => other.close());
  const port = (other.address() as AddressInfo).port;
  const notDump = await meshctl('ztunnel-config', 'workloads', '--admin', `${HOST}:${port}`);
  t.is(notDump.code, 1);
  t.true(notDump.stderr.includes(`ztunnel admin at ${HOST}:${port} did not answer with a ztunnel config dump (it has no "workloads" list)`), notDump.stderr);
});

test('a missing state dir says how to start a mesh', async (t) => {
  const r = await meshctl('ztunnel-config', 'workloads', '--state-dir', join(tmpdir(), 'meshctl-zc-none'));
  t.is(r.code, 1);
  t.regex(r.stderr, /meshctl dev up/);
});

test('bad -o values and addresses are usage errors (exit 2)', async (t) => {
  const badOutput = await meshctl('ztunnel-config', 'workloads', '-o', 'xml');
  t.is(badOutput.code, EXIT_USAGE);
  t.regex(badOutput.stderr, /Allowed choices are table, json, yaml/);
  const badAdmin = await meshctl('ztunnel-config', 'workloads', '--admin', 'localhost');
  t.is(badAdmin.code, EXIT_USAGE);
  t.regex(badAdmin.stderr, /expected host:port/);
  t.is((await meshctl('ztunnel-config', 'nodes')).code, EXIT_USAGE);
});

test('every ztunnel-config command has help with examples', async (t) => {
  for (const sub of ['workloads', 'services', 'policies', 'certificates', 'connections', 'all']) {
    const r = await meshctl('ztunnel-config', sub, '--help');
    t.is(r.code, 0);
    t.regex(r.stdout, new RegExp(`Examples:\\n  meshctl ztunnel-config ${sub}`), sub);
  }
});

// ---- completion -------------------------------------------------------------------------------

test('completion bash: valid bash that completes ztunnel-config, its sections and -o values', async (t) => {
  const r = await meshctl('completion', 'bash');
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /ztunnel-config/);
  for (const s of ['workloads', 'services', 'policies', 'certificates', 'connections', 'all']) t.true(r.stdout.includes(`'meshctl ztunnel-config|${s}'`), s);
  const dir = mkdtempSync(join(tmpdir(), 'meshctl-completion-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const script = join(dir, 'meshctl.bash');
  writeFileSync(script, r.stdout);
  t.is((await run('bash', ['-n', script])).code, 0);
  // Drive the completion function as bash's programmable completion would.
  const complete = async (...words: string[]) => {
    const probe = `source ${script}; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _meshctl; echo "\${COMPREPLY[*]}"`;
    return (await run('bash', ['-c', probe])).stdout.trim();
  };
  t.is(await complete('meshctl', 'ztunnel-config', ''), 'workloads services policies certificates connections all help');
  t.is(await complete('meshctl', 'zc', 'cert'), 'certificates');
  t.is(await complete('meshctl', 'zc', 'workloads', '--node', 'n1', '-o', ''), 'table json yaml');
  t.is(await complete('meshctl', 'completion', ''), 'bash zsh fish');
  t.is(await complete('meshctl', 'zc', 'connections', '--dir'), '--direction');
});

test('completion zsh and fish: scripts for every command; unknown shells are usage errors', async (t) => {
  const zsh = await meshctl('completion', 'zsh');
  t.is(zsh.code, 0);
  t.regex(zsh.stdout, /^#compdef meshctl\n/);
  t.regex(zsh.stdout, /'workloads:the workloads ztunnel knows/);
  const fish = await meshctl('completion', 'fish');
  t.is(fish.code, 0);
  t.regex(fish.stdout, /-l 'output' -x -a 'table json yaml'/);
  // Checked by the shells when they are installed (they are not on every CI image).
  for (const [shell, text] of [['zsh', zsh.stdout], ['fish', fish.stdout]] as const) {
    const dir = mkdtempSync(join(tmpdir(), 'meshctl-completion-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'script'), text);
    const check = await run(shell, ['-n', join(dir, 'script')]);
    if (check.code !== 127 && check.code !== -1) t.is(check.code, 0, `${shell} -n: ${check.stderr}`);
  }
  // zsh walks the words before the cursor with the same function as bash: drive it in zsh too.
  const zdir = mkdtempSync(join(tmpdir(), 'meshctl-completion-'));
  t.teardown(() => rmSync(zdir, { recursive: true, force: true }));
  writeFileSync(join(zdir, 'meshctl.zsh'), zsh.stdout);
  const walked = await run('zsh', ['-c', `compdef() { :; }; source ${join(zdir, 'meshctl.zsh')}; cmd=meshctl; skip=0; _meshctl_walk zc workloads --node n1 -o; echo "$cmd|$skip"`]);
  if (walked.code !== 127) t.is(walked.stdout.trim(), 'meshctl ztunnel-config workloads|1', walked.stderr);
  t.is((await meshctl('completion', 'powershell')).code, EXIT_USAGE);
});

function run(cmd: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : err.code === 'ENOENT' ? 127 : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}
