// splice() between two real TCP connections on 127.0.0.1: what it copies, what it counts (the
// counter feeds istio_tcp_*_bytes_total and the flows), and how it ends. Listeners on port 0.
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import * as net from 'node:net';
import test from 'ava';
import { splice } from '../../src/hbone/index.ts';

/** A connected pair: `near` is ours (given to splice), `far` is the peer's end. */
async function pair(): Promise<{ near: net.Socket; far: net.Socket; close(): void }> {
  const server = net.createServer({ allowHalfOpen: true });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const far = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
  const [near] = (await once(server, 'connection')) as [net.Socket];
  server.close();
  far.on('error', () => {});
  near.on('error', () => {});
  return { near, far, close: () => (far.destroy(), near.destroy()) };
}

function collect(s: net.Socket): Promise<Buffer> {
  const parts: Buffer[] = [];
  s.on('data', (d: Buffer) => parts.push(d));
  return once(s, 'end').then(() => Buffer.concat(parts));
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

test('splice-counts-each-byte-once-both-ways: 8 MB one way in large writes, small messages the other', async (t) => {
  const client = await pair();
  const app = await pair();
  t.teardown(() => (client.close(), app.close()));
  const counted = { aToB: 0, bToA: 0, calls: 0 };
  const result = splice(client.near, app.near, {
    aToB: (n) => ((counted.aToB += n), counted.calls++),
    bToA: (n) => ((counted.bToA += n), counted.calls++),
  });
  const upload = randomBytes(8 << 20);
  const atApp = collect(app.far);
  const atClient = collect(client.far);
  for (let i = 0; i < upload.length; i += 256 << 10) client.far.write(upload.subarray(i, i + (256 << 10)));
  client.far.end();
  const replies = Array.from({ length: 20 }, (_, i) => Buffer.from(`reply ${i};`));
  for (const r of replies) app.far.write(r);
  app.far.end();
  const [gotAtApp, gotAtClient, r] = await Promise.all([atApp, atClient, result]);
  t.is(sha(gotAtApp), sha(upload), 'the app got the upload byte for byte, in order');
  t.is(gotAtClient.toString(), Buffer.concat(replies).toString());
  t.is(r.error, undefined);
  t.is(r.aToB, upload.length);
  t.is(r.bToA, gotAtClient.length);
  t.deepEqual([counted.aToB, counted.bToA], [r.aToB, r.bToA], 'the counter heard of every byte exactly once');
  t.true(counted.calls > 1);
});

test('splice-carries-half-close: the client ends, the app still answers, then both close cleanly', async (t) => {
  const client = await pair();
  const app = await pair();
  t.teardown(() => (client.close(), app.close()));
  const result = splice(client.near, app.near);
  const request = collect(app.far);
  client.far.end('question');
  t.is((await request).toString(), 'question', "the client's FIN reached the app after its bytes");
  const answer = collect(client.far);
  app.far.end('answer, after the client had finished sending');
  t.is((await answer).toString(), 'answer, after the client had finished sending');
  const r = await result;
  t.is(r.error, undefined);
  t.deepEqual([r.aToB, r.bToA], [8, 45]);
});

test('splice-resets-the-other-side-when-one-dies', async (t) => {
  const client = await pair();
  const app = await pair();
  t.teardown(() => (client.close(), app.close()));
  const result = splice(client.near, app.near);
  client.far.write('partial request');
  await once(app.far, 'data');
  let appError: NodeJS.ErrnoException | undefined;
  app.far.once('error', (e) => (appError = e));
  const appSideClosed = new Promise((resolve) => app.far.once('close', resolve));
  client.far.resetAndDestroy();
  const r = await result;
  t.truthy(r.error, 'an abnormal end is reported');
  await appSideClosed;
  t.is(appError?.code, 'ECONNRESET', 'the app got a reset, not a clean FIN that would pass for a complete request');
});
