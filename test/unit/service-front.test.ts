// The local cluster's Service in front of the controller replicas (src/local/service-front.ts):
// new connections go round robin over the ready endpoints; taking an endpoint out leaves its
// established connections alone; with no endpoint a connection is refused (closed at once).
import net from 'node:net';
import { once } from 'node:events';
import test from 'ava';
import { ServiceFront } from '../../src/local/service-front.ts';

/** A backend that answers every connection with its name, then echoes. */
async function backend(t: import('ava').ExecutionContext, name: string): Promise<number> {
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    s.write(`${name}\n`);
    s.pipe(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as net.AddressInfo).port;
}

function dial(port: number): Promise<{ socket: net.Socket; first: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    socket.on('data', (d) => {
      buf += String(d);
      if (buf.includes('\n')) resolve({ socket, first: buf.split('\n')[0]! });
    });
    socket.once('close', () => resolve({ socket, first: buf }));
    socket.once('error', reject);
  });
}

test('new connections go round robin over the endpoints; an endpoint taken out keeps its connections; none refuses', async (t) => {
  const a = await backend(t, 'a');
  const b = await backend(t, 'b');
  const front = await ServiceFront.listen({ xds: 0 });
  t.teardown(() => front.close());
  const port = front.port('xds');
  front.setEndpoints([
    { id: 'a', ports: { xds: a } },
    { id: 'b', ports: { xds: b } },
  ]);
  const seen: string[] = [];
  const open: net.Socket[] = [];
  for (let i = 0; i < 4; i++) {
    const c = await dial(port);
    seen.push(c.first);
    open.push(c.socket);
  }
  t.deepEqual([...seen].sort(), ['a', 'a', 'b', 'b']);

  // a leaves the Service: new connections all go to b; a's open connection still echoes.
  front.setEndpoints([{ id: 'b', ports: { xds: b } }]);
  for (let i = 0; i < 3; i++) {
    const c = await dial(port);
    t.is(c.first, 'b');
    c.socket.destroy();
  }
  const onA = open[seen.indexOf('a')]!;
  onA.write('still here\n');
  const [echo] = (await once(onA, 'data')) as [Buffer];
  t.is(String(echo), 'still here\n');

  // No endpoint: refused, as a Service without ready endpoints.
  front.setEndpoints([]);
  const refused = await dial(port);
  t.is(refused.first, '');
  t.true(refused.socket.destroyed);
  for (const s of open) s.destroy();
});

test('a name the front does not listen on is refused with the reason', async (t) => {
  const front = await ServiceFront.listen({ ca: 0 });
  t.teardown(() => front.close());
  t.throws(() => front.port('relay'), { message: /no listener named relay/ });
});
