// The HBONE request headers, parsed strictly: tables of (input, expected).
import test from 'ava';
import {
  formatAuthority,
  formatBaggage,
  formatForwarded,
  parseAuthority,
  parseBaggage,
  parseForwarded,
  parseTraceparent,
} from '../../src/hbone/index.ts';

test('authority: ip:port and [ipv6]:port only', (t) => {
  const ok: [string, { host: string; port: number }][] = [
    ['10.244.1.7:8080', { host: '10.244.1.7', port: 8080 }],
    ['[fd00::1]:443', { host: 'fd00::1', port: 443 }],
    ['[FD00::A]:1', { host: 'fd00::a', port: 1 }],
    ['[::ffff:10.0.0.1]:65535', { host: '::ffff:10.0.0.1', port: 65535 }],
  ];
  for (const [a, want] of ok) t.deepEqual(parseAuthority(a), want, a);
  const bad = ['', '10.0.0.1', '10.0.0.1:', '10.0.0.1:0', '10.0.0.1:65536', '10.0.0.1:080', '10.0.0.256:80', 'example.com:80', 'fd00::1:80', '[fd00::1]', '[fd00::1%eth0]:80', '[10.0.0.1]:80', ' 10.0.0.1:80', '10.0.0.1:80 ', '10.0.0.1:+80', '10.0.0.1:8a'];
  for (const a of bad) t.is(parseAuthority(a), undefined, a);
  t.is(parseAuthority(undefined), undefined);
  t.is(formatAuthority({ host: 'fd00::1', port: 80 }), '[fd00::1]:80');
  t.is(formatAuthority({ host: '10.0.0.1', port: 80 }), '10.0.0.1:80');
  t.throws(() => formatAuthority({ host: 'example.com', port: 80 }));
});

test('forwarded: the first element\'s for=, RFC 7239 forms', (t) => {
  const ok: [string, unknown][] = [
    ['for="10.0.0.1:4711"', { host: '10.0.0.1', port: 4711 }],
    ['for=10.0.0.1', { host: '10.0.0.1' }],
    ['For="[2001:db8:cafe::17]:4711"', { host: '2001:db8:cafe::17', port: 4711 }],
    ['for="[2001:db8::1]"', { host: '2001:db8::1' }],
    ['for=10.0.0.1;proto=https;by=10.0.0.2, for=10.0.0.3', { host: '10.0.0.1' }],
    ['proto=https;for="10.0.0.1:_hidden"', { host: '10.0.0.1' }],
    ['for=unknown', undefined],
    ['for=_gazonk', undefined],
    ['proto=http', undefined],
  ];
  for (const [v, want] of ok) t.deepEqual(parseForwarded(v), want, v);
  for (const v of ['for="10.0.0.1', 'for=example.com', 'for="[::1"', 'for=2001:db8::1', 'for="10.0.0.1:99999"', 'nonsense', 'for="10.0.0.1]:80"']) {
    t.throws(() => parseForwarded(v), { instanceOf: TypeError }, v);
  }
  t.is(formatForwarded({ host: 'fd00::1', port: 5 }), 'for="[fd00::1]:5"');
  t.is(formatForwarded({ host: '10.0.0.1' }), 'for="10.0.0.1"');
  t.deepEqual(parseForwarded(formatForwarded({ host: 'fd00::1', port: 5 })), { host: 'fd00::1', port: 5 });
});

test('baggage: members decoded, properties dropped, malformed discarded', (t) => {
  t.deepEqual({ ...parseBaggage('k8s.namespace.name=shop,service.name=cart%20svc;prop=1, k8s.cluster.name = c1') }, {
    'k8s.namespace.name': 'shop',
    'service.name': 'cart svc',
    'k8s.cluster.name': 'c1',
  });
  for (const v of ['novalue', 'k=v,,', 'bad key=v', 'k=%zz', 'k=a"b', 'x'.repeat(9000)]) t.is(parseBaggage(v), undefined, v.slice(0, 20));
  const b = { 'k8s.namespace.name': 'shop', 'service.name': 'a,b;c=d é' };
  t.deepEqual({ ...parseBaggage(formatBaggage(b)) }, b);
});

test('traceparent: W3C version 00, invalid ones ignored', (t) => {
  t.deepEqual(parseTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'), {
    version: '00',
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    parentId: '00f067aa0ba902b7',
    flags: '01',
  });
  t.truthy(parseTraceparent('01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future'));
  for (const v of [
    '',
    'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
    '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01',
    '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01',
    '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra',
  ]) {
    t.is(parseTraceparent(v), undefined, v);
  }
});
