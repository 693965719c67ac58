// The config stream, in process over real gRPC on 127.0.0.1: delta pushes, removal, resume,
// NACK, per-node filtering, many clients, chunking and mutual TLS.
import * as grpc from '@grpc/grpc-js';
import test, { type ExecutionContext } from 'ava';
import {
  AUTHORIZATION,
  type ChangeEvent,
  ConfigClient,
  type ConfigClientOptions,
  ConfigServer,
  type ConfigServerOptions,
  ConfigStore,
  type MeshTypes,
  SERVICE,
  sameValue,
  WORKLOAD,
  type Workload,
  XdsError,
} from '../../src/xds/index.ts';
import { Relay, service, sleep, strictPeerAuthentication, TestPki, waitFor, workload } from '../helpers/xds.ts';

const insecureServer = grpc.ServerCredentials.createInsecure();
const insecure = grpc.credentials.createInsecure();
const ALL = [WORKLOAD, SERVICE, AUTHORIZATION] as const;

async function serve(t: ExecutionContext, opts: ConfigServerOptions<MeshTypes> = {}, port = 0) {
  const server = new ConfigServer({ pushIntervalMs: 5, ...opts });
  const bound = await server.listen(`127.0.0.1:${port}`, insecureServer);
  t.teardown(() => server.close(100));
  return { server, port: bound };
}

function connect(t: ExecutionContext, port: number, node: string, opts: Partial<ConfigClientOptions<MeshTypes>> = {}) {
  const client = new ConfigClient<MeshTypes>({
    address: `127.0.0.1:${port}`,
    credentials: insecure,
    node: { id: `ztunnel~${node}`, name: node, cluster: 'Kubernetes' },
    types: ALL,
    backoff: { initialMs: 20, maxMs: 200 },
    ...opts,
  }).start();
  t.teardown(() => client.close());
  const changes: ChangeEvent[] = [];
  client.on('change', (c: ChangeEvent) => changes.push(c));
  return { client, changes };
}

const uid = (i: number) => workload(i).uid;

function inSync(client: ConfigClient, store: ConfigStore, type: typeof WORKLOAD | typeof SERVICE = WORKLOAD): boolean {
  const want = store.entries(type);
  const have = client.entries(type);
  if (want.size !== have.size) return false;
  for (const [n, e] of want) if (have.get(n)?.version !== e.version) return false;
  return true;
}

test('delta-sends-only-changes', async (t) => {
  const { server, port } = await serve(t);
  server.batch((tx) => {
    for (let i = 0; i < 20; i++) tx.set(WORKLOAD, uid(i), workload(i));
    tx.set(SERVICE, 'ns0/app-0.ns0.svc.cluster.local', service(0));
  });
  const { client, changes } = connect(t, port, 'node-a');
  await client.ready(5000);
  t.is(client.entries(WORKLOAD).size, 20);
  t.deepEqual(client.get(WORKLOAD, uid(3))?.addresses[0], Buffer.from([10, 244, 0, 3]));
  changes.length = 0;

  // One real change and one no-op set: only the change travels.
  t.true(server.set(WORKLOAD, uid(3), workload(3, { status: 'UNHEALTHY' })));
  t.false(server.set(WORKLOAD, uid(4), workload(4)));
  await waitFor(() => client.get(WORKLOAD, uid(3))?.status === 'UNHEALTHY', 'the change to arrive');
  await sleep(50);
  t.deepEqual(
    changes.map((c) => [c.type, c.updated, c.removed]),
    [[WORKLOAD, [uid(3)], []]],
  );
  t.true(inSync(client, server.store));
});

test('removal-reaches-clients', async (t) => {
  const { server, port } = await serve(t);
  for (let i = 0; i < 5; i++) server.set(WORKLOAD, uid(i), workload(i));
  server.set(AUTHORIZATION, 'shop/strict', strictPeerAuthentication('shop'));
  const a = connect(t, port, 'node-a');
  const b = connect(t, port, 'node-b');
  await Promise.all([a.client.ready(), b.client.ready()]);
  t.is(a.client.get(AUTHORIZATION, 'shop/strict')?.rules[0]?.clauses[0]?.matches[0]?.notPrincipals[0]?.matchType, 'presence');

  server.batch((tx) => {
    tx.remove(WORKLOAD, uid(2));
    tx.remove(AUTHORIZATION, 'shop/strict');
  });
  for (const { client } of [a, b]) {
    await waitFor(() => !client.entries(WORKLOAD).has(uid(2)) && client.entries(AUTHORIZATION).size === 0, 'removals');
    t.is(client.entries(WORKLOAD).size, 4);
  }
  t.true(a.changes.some((c) => c.type === WORKLOAD && c.removed.includes(uid(2)) && c.updated.length === 0));
});

test('resume-after-server-restart-sends-nothing-unchanged', async (t) => {
  const store = new ConfigStore<MeshTypes>();
  for (let i = 0; i < 100; i++) store.set(WORKLOAD, uid(i), workload(i));
  const first = await serve(t, { store });
  const { client, changes } = connect(t, first.port, 'node-a');
  await client.ready();
  changes.length = 0;

  // The controller restarts; while it is down one workload changes.
  await first.server.close(100);
  await waitFor(() => !client.status().connected, 'the client to notice');
  t.is(client.entries(WORKLOAD).size, 100, 'the last good config stays while disconnected');
  store.set(WORKLOAD, uid(7), workload(7, { status: 'UNHEALTHY' }));
  const second = await serve(t, { store }, first.port);
  await waitFor(() => client.status().connects === 2 && inSync(client, store), 'resume');
  await sleep(50);
  t.deepEqual(changes.map((c) => c.updated), [[uid(7)]], 'only the resource that changed while down');

  // A controller that rebuilds an equal model from scratch offers the same versions: nothing moves.
  await second.server.close(100);
  const rebuilt = new ConfigStore<MeshTypes>();
  for (let i = 99; i >= 0; i--) rebuilt.set(WORKLOAD, uid(i), i === 7 ? workload(7, { status: 'UNHEALTHY' }) : workload(i));
  changes.length = 0;
  const third = await serve(t, { store: rebuilt }, first.port);
  await waitFor(() => client.status().connects === 3, 'the third connection');
  await waitFor(() => third.server.status().clients[0]?.types[WORKLOAD]?.synced === true, 'the client to ack');
  t.deepEqual(changes, []);
  t.is(third.server.status().clients[0]?.types[WORKLOAD]?.resources, 100);
});

test('client-reconnect-resumes-without-resend', async (t) => {
  const { server, port } = await serve(t);
  for (let i = 0; i < 50; i++) server.set(WORKLOAD, uid(i), workload(i));
  const relay = new Relay(port);
  t.teardown(() => relay.close());
  const { client, changes } = connect(t, await relay.listen(), 'node-a');
  await client.ready();
  changes.length = 0;
  const pushes: number[] = [];
  server.on('ack', (a: { resources: number }) => pushes.push(a.resources));

  relay.cut();
  await waitFor(() => client.status().connects === 2, 'reconnect');
  await waitFor(() => server.status().clients[0]?.types[WORKLOAD]?.synced === true, 'resync');
  t.deepEqual(changes, [], 'nothing re-applied');
  t.true(pushes.every((n) => n === 0), `only empty sync markers were sent, got ${pushes}`);

  server.remove(WORKLOAD, uid(0));
  await waitFor(() => client.entries(WORKLOAD).size === 49, 'a change after resume');
});

test('nack-keeps-last-good-version-and-is-reported', async (t) => {
  const { server, port } = await serve(t);
  server.set(WORKLOAD, uid(1), workload(1));
  const nacks: unknown[] = [];
  server.on('nack', (n) => nacks.push(n));
  const { client } = connect(t, port, 'node-a', {
    validate: (type, _name, value) =>
      type === WORKLOAD && (value as Workload).network === 'bad' ? 'network "bad" is not one this node can reach' : undefined,
  });
  await client.ready();
  const good = client.entries(WORKLOAD).get(uid(1))!.version;

  // One bad and one good resource in the same batch: the response is refused whole, the good one
  // follows on its own, the bad one stays out.
  server.batch((tx) => {
    tx.set(WORKLOAD, uid(1), workload(1, { network: 'bad' }));
    tx.set(WORKLOAD, uid(2), workload(2));
  });
  await waitFor(() => client.entries(WORKLOAD).has(uid(2)), 'the good resource');
  t.is(client.entries(WORKLOAD).get(uid(1))?.version, good, 'the last good version stays');
  t.is(client.get(WORKLOAD, uid(1))?.network, '');
  const rejections = server.status().rejections['ztunnel~node-a'];
  t.is(rejections?.length, 1);
  t.like(rejections?.[0], { type: WORKLOAD, name: uid(1), version: server.store.get(WORKLOAD, uid(1))!.version });
  t.regex(rejections![0]!.message, /not one this node can reach/);
  t.like(client.status().types[WORKLOAD]?.lastReject?.errors[0], { name: uid(1) });

  // Not retried while it is unchanged, not even after a reconnect.
  await sleep(100);
  t.is(nacks.length, 1);

  // A fixed version goes through and clears the report.
  server.set(WORKLOAD, uid(1), workload(1, { network: 'net-2' }));
  await waitFor(() => client.get(WORKLOAD, uid(1))?.network === 'net-2', 'the fixed resource');
  t.is(server.status().rejections['ztunnel~node-a'], undefined);
  t.is(nacks.length, 1);
});

test('refusals-belong-to-the-stream: a reconnected client is offered the refused resource again and keeps its last good state', async (t) => {
  const { server, port } = await serve(t);
  const relay = new Relay(port);
  t.teardown(() => relay.close());
  const nacks: unknown[] = [];
  server.on('nack', (n) => nacks.push(n));
  server.set(WORKLOAD, uid(1), workload(1, { network: 'bad' }));
  server.set(WORKLOAD, uid(2), workload(2));
  const { client } = connect(t, await relay.listen(), 'node-a', {
    validate: (_type, _name, value) => ((value as Workload).network === 'bad' ? 'bad network' : undefined),
  });
  await client.ready();
  t.deepEqual([...client.entries(WORKLOAD).keys()], [uid(2)]);
  t.is(nacks.length, 1);
  // Another stream claiming the same node id refuses everything: that stays with it.
  const { client: impostor } = connect(t, port, 'node-a', { validate: () => 'refuse all' });
  await waitFor(() => nacks.length >= 2, 'the impostor\'s NACK');
  await impostor.close();
  relay.cut();
  await waitFor(() => client.status().connects === 2, 'reconnect');
  await waitFor(() => server.status().clients.length === 1 && server.status().clients[0]?.types[WORKLOAD]?.synced === true, 'resync');
  await waitFor(() => nacks.length === 3, 'the bad resource offered again to the new stream, and refused again');
  t.deepEqual([...client.entries(WORKLOAD).keys()], [uid(2)], 'the last good state stays; nothing withheld by the other stream');
});

test('malformed-resource-for-one-client-does-not-break-others', async (t) => {
  const { server, port } = await serve(t);
  for (let i = 0; i < 10; i++) server.set(WORKLOAD, uid(i), workload(i));
  // A node whose ztunnel checks address lengths, and one (an older build) that does not.
  const strict = connect(t, port, 'node-a', {
    validate: (type, name, value) => {
      if (type !== WORKLOAD) return undefined;
      const bad = (value as Workload).addresses.find((a) => a.length !== 4 && a.length !== 16);
      return bad ? new Error(`${name}: address of ${bad.length} bytes`) : undefined;
    },
  });
  const lax = connect(t, port, 'node-b');
  await Promise.all([strict.client.ready(), lax.client.ready()]);

  server.set(WORKLOAD, uid(3), workload(3, { addresses: [Buffer.from([1, 2, 3, 4, 5])] }));
  await waitFor(() => lax.client.get(WORKLOAD, uid(3))?.addresses[0]?.length === 5, 'the lax client');
  await waitFor(() => server.status().rejections['ztunnel~node-a']?.length === 1, 'the NACK');

  // Both streams carry on.
  server.set(WORKLOAD, uid(11), workload(11));
  server.remove(WORKLOAD, uid(0));
  for (const { client } of [strict, lax]) {
    await waitFor(() => client.entries(WORKLOAD).has(uid(11)) && !client.entries(WORKLOAD).has(uid(0)), 'later changes');
    t.is(client.status().connects, 1);
  }
  t.is(strict.client.get(WORKLOAD, uid(3))?.addresses[0]?.length, 4);

  // A value that does not fit the message never enters the store.
  const before = server.store.generation;
  const err = t.throws(() => server.set(WORKLOAD, uid(12), { ...workload(12), waypoint: 'nope' } as unknown as Workload), {
    instanceOf: XdsError,
  });
  t.is(err?.code, 'MESH_ERR_XDS_ENCODE');
  t.regex(err!.message, /waypoint/);
  t.is(server.store.generation, before);
  t.false(server.store.entries(WORKLOAD).has(uid(12)));
});

test('per-node-filter-sends-each-node-only-its-workloads', async (t) => {
  const { server, port } = await serve(t, {
    filter: (node, type, _name, value) => type !== WORKLOAD || (value as Workload).node === node.name,
  });
  for (let i = 0; i < 40; i++) server.set(WORKLOAD, uid(i), workload(i));
  server.set(SERVICE, 's', service(1));
  const a = connect(t, port, 'node-0');
  const b = connect(t, port, 'node-1');
  await Promise.all([a.client.ready(), b.client.ready()]);
  t.is(a.client.entries(WORKLOAD).size, 10);
  t.true([...a.client.entries(WORKLOAD).values()].every((e) => e.value.node === 'node-0'));
  t.is(b.client.entries(WORKLOAD).size, 10);
  t.is(a.client.entries(SERVICE).size, 1);

  // The pod moves from node-0 to node-1.
  server.set(WORKLOAD, uid(0), workload(0, { node: 'node-1' }));
  await waitFor(() => !a.client.entries(WORKLOAD).has(uid(0)), 'removal from node-0');
  await waitFor(() => b.client.entries(WORKLOAD).has(uid(0)), 'arrival at node-1');
  t.is(server.status().clients.find((c) => c.node?.name === 'node-0')?.types[WORKLOAD]?.resources, 9);
});

test('fifty-clients-converge', async (t) => {
  const { server, port } = await serve(t);
  for (let i = 0; i < 500; i++) server.set(WORKLOAD, uid(i), workload(i));
  const clients = Array.from({ length: 50 }, (_, i) => connect(t, port, `node-${i}`).client);
  await Promise.all(clients.map((c) => c.ready(10_000)));
  for (let round = 0; round < 10; round++) {
    server.batch((tx) => {
      for (let i = round * 40; i < round * 40 + 40; i++) tx.set(WORKLOAD, uid(i), workload(i, { canonicalRevision: `v${round}` }));
      tx.remove(WORKLOAD, uid(499 - round));
    });
    await sleep(round % 3);
  }
  await waitFor(() => clients.every((c) => inSync(c, server.store)), 'every client to converge', 10_000);
  t.is(server.status().clients.length, 50);
  t.true(server.status().clients.every((c) => c.types[WORKLOAD]?.synced));
});

test('large-state-is-split-and-ready-only-when-complete', async (t) => {
  const { server, port } = await serve(t, { maxResponseBytes: 4096 });
  for (let i = 0; i < 300; i++) server.set(WORKLOAD, uid(i), workload(i));
  const { client, changes } = connect(t, port, 'node-a');
  let readyAt = -1;
  client.on('ready', (type: string) => {
    if (type === WORKLOAD) readyAt = client.entries(WORKLOAD).size;
  });
  await client.ready();
  t.true(changes.filter((c) => c.type === WORKLOAD).length > 5, 'several responses');
  t.is(readyAt, 300);
});

test('named-subscription-gets-only-those-names', async (t) => {
  const { server, port } = await serve(t);
  for (let i = 0; i < 10; i++) server.set(WORKLOAD, uid(i), workload(i));
  const { client } = connect(t, port, 'node-a', { types: [WORKLOAD], names: { [WORKLOAD]: [uid(1), uid(2), 'missing'] } });
  await client.ready();
  t.deepEqual([...client.entries(WORKLOAD).keys()].sort(), [uid(1), uid(2)]);
  server.set(WORKLOAD, 'missing', workload(99));
  await waitFor(() => client.entries(WORKLOAD).has('missing'), 'a subscribed name that appears later');
});

test('versions-are-content-hashes-independent-of-map-order', (t) => {
  const a = new ConfigStore<MeshTypes>();
  const b = new ConfigStore<MeshTypes>();
  const services = { 'x/a': { ports: [] }, 'x/b': { ports: [{ servicePort: 1, targetPort: 2, appProtocol: '' }] } };
  a.set(WORKLOAD, 'w', workload(1, { services }));
  b.set(WORKLOAD, 'w', workload(1, { services: { 'x/b': services['x/b'], 'x/a': services['x/a'] } }));
  t.is(a.get(WORKLOAD, 'w')!.version, b.get(WORKLOAD, 'w')!.version);
  t.not(a.get(WORKLOAD, 'w')!.version, new ConfigStore<MeshTypes>().get(WORKLOAD, 'w')?.version);
  t.throws(() => a.set('type.googleapis.com/nope' as typeof WORKLOAD, 'x', workload(1)), {
    message: /unknown resource type/,
  });
});

test('mtls-stream-exposes-the-peer-identity-to-the-authorizer', async (t) => {
  const pki = new TestPki();
  const serverPem = pki.issue('controller', { ip: ['127.0.0.1'], dns: ['localhost'] });
  const good = pki.issue('ztunnel', { uri: ['spiffe://cluster.local/ns/mesh-system/sa/ztunnel'] });
  const other = pki.issue('app', { uri: ['spiffe://cluster.local/ns/shop/sa/default'] });
  const seen: string[][] = [];
  const server = new ConfigServer<MeshTypes>({
    pushIntervalMs: 5,
    authorize: (peer) => {
      seen.push([...peer.uris]);
      return peer.uris.includes('spiffe://cluster.local/ns/mesh-system/sa/ztunnel')
        ? undefined
        : `identity ${peer.uris.join(',')} is not a node agent`;
    },
  });
  const port = await server.listen(
    '127.0.0.1:0',
    grpc.ServerCredentials.createSsl(pki.ca.cert, [{ cert_chain: serverPem.cert, private_key: serverPem.key }], true),
  );
  t.teardown(() => server.close(100));
  server.set(WORKLOAD, uid(1), workload(1));

  const mk = (pem: { cert: Buffer; key: Buffer }) =>
    connect(t, port, 'node-a', {
      credentials: grpc.credentials.createSsl(pki.ca.cert, pem.key, pem.cert),
      // The certificate names localhost; TLS SNI may not carry an IP address (RFC 6066 §3).
      channelOptions: { 'grpc.ssl_target_name_override': 'localhost' },
    }).client;
  const ok = mk(good);
  await ok.ready();
  t.is(ok.entries(WORKLOAD).size, 1);
  t.deepEqual(server.status().clients[0]?.uris, ['spiffe://cluster.local/ns/mesh-system/sa/ztunnel']);

  const refused = mk(other);
  await waitFor(() => /PERMISSION_DENIED.*not a node agent/.test(refused.status().lastError ?? ''), 'the refusal');
  t.false(refused.isReady());
  t.deepEqual(seen.slice(0, 2), [
    ['spiffe://cluster.local/ns/mesh-system/sa/ztunnel'],
    ['spiffe://cluster.local/ns/shop/sa/default'],
  ]);

  // Without a client certificate the TLS handshake itself fails.
  const anonymous = connect(t, port, 'node-b', {
    credentials: grpc.credentials.createSsl(pki.ca.cert),
    channelOptions: { 'grpc.ssl_target_name_override': 'localhost' },
  }).client;
  await t.throwsAsync(anonymous.ready(500), { code: 'MESH_ERR_XDS_NOT_READY' } as never);
});

test('bursts-coalesce-into-few-responses', async (t) => {
  const { server, port } = await serve(t, { pushIntervalMs: 100 });
  server.set(WORKLOAD, uid(1), workload(1));
  const { client, changes } = connect(t, port, 'node-a', { types: [WORKLOAD] });
  await client.ready();
  await sleep(120);
  changes.length = 0;
  // 30 changes to one resource over ~30 ms, as a flapping readiness probe would make.
  for (let r = 0; r < 30; r++) {
    server.set(WORKLOAD, uid(1), workload(1, { canonicalRevision: `r${r}` }));
    await sleep(1);
  }
  await waitFor(() => client.get(WORKLOAD, uid(1))?.canonicalRevision === 'r29', 'the last version');
  t.true(changes.length <= 2, `${changes.length} responses`);
});

test('a value equal to the one held keeps its entry: not encoded again, no change, no client woken', (t) => {
  const store = new ConfigStore();
  const w = { uid: 'u1', name: 'a', namespace: 'ns', addresses: [Uint8Array.from([10, 0, 0, 1])], services: { 'ns/s': { ports: [{ servicePort: 80, targetPort: 8080 }] } } };
  t.true(store.set(WORKLOAD, 'u1', w as never));
  const held = store.get(WORKLOAD, 'u1')!;
  let woken = 0;
  store.subscribe(() => woken++);
  // A rebuilt model: new objects, other key order, same content.
  const again = { services: { 'ns/s': { ports: [{ targetPort: 8080, servicePort: 80 }] } }, addresses: [Uint8Array.from([10, 0, 0, 1])], namespace: 'ns', name: 'a', uid: 'u1' };
  t.false(store.set(WORKLOAD, 'u1', again as never));
  t.is(store.get(WORKLOAD, 'u1'), held, 'the entry (its bytes and version) is the one held');
  t.is(woken, 0);
  // One byte of an address differs: a new version.
  t.true(store.set(WORKLOAD, 'u1', { ...again, addresses: [Uint8Array.from([10, 0, 0, 2])] } as never));
  t.not(store.get(WORKLOAD, 'u1')!.version, held.version);
  t.is(woken, 1);
});

test('sameValue: plain data equal key order aside; arrays in order; bytes by content; anything else by identity', (t) => {
  t.true(sameValue({ a: 1, b: [1, { c: 'x' }] }, { b: [1, { c: 'x' }], a: 1 }));
  t.false(sameValue([1, 2], [2, 1]));
  t.false(sameValue({ a: 1 }, { a: 1, b: undefined }), 'a key on one side only');
  t.true(sameValue(Uint8Array.from([1, 2]), Buffer.from([1, 2])));
  t.false(sameValue(Uint8Array.from([1, 2]), Uint8Array.from([1, 3])));
  t.false(sameValue(new Date(0), new Date(0)), 'not plain data: encoded, never assumed equal');
  t.false(sameValue({ a: null }, { a: {} }));
});
