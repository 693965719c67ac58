import test from 'ava';
import {
  AddressError,
  formatMeshAddress,
  meshAddress,
  parseCidr,
  rawAddress,
} from '../../src/datapath/addr.ts';

test('IPv4 addresses are stored v4-mapped and format back as dotted quads', (t) => {
  const b = meshAddress('10.1.2.3');
  t.is(b.toString('hex'), '00000000000000000000ffff0a010203');
  t.is(formatMeshAddress(b), '10.1.2.3');
  t.is(rawAddress('10.1.2.3').toString('hex'), '0a010203');
});

test('the IPv4 fast path agrees with the general one on edge values', (t) => {
  for (const ip of ['0.0.0.0', '255.255.255.255', '127.0.0.6', '192.168.100.1', '1.22.203.4']) {
    t.is(formatMeshAddress(meshAddress(ip)), ip);
    t.deepEqual([...rawAddress(ip)], ip.split('.').map(Number));
    t.is(meshAddress(ip).toString('hex'), meshAddress(`::ffff:${ip}`).toString('hex'), `${ip} v4-mapped`);
  }
  t.is(formatMeshAddress(meshAddress('::ffff:10.0.0.1')), '10.0.0.1');
});

test('IPv6 addresses round-trip in RFC 5952 form', (t) => {
  t.is(formatMeshAddress(meshAddress('fd00:101:0:0::2')), 'fd00:101::2');
  t.is(formatMeshAddress(meshAddress('::1')), '::1');
  t.is(formatMeshAddress(Buffer.alloc(16)), '');
});

test('CIDRs give the prefix within 128 bits', (t) => {
  t.like(parseCidr('10.0.0.0/8'), { bits: 104, family: 4 });
  t.like(parseCidr('fd00::/16'), { bits: 16, family: 6 });
});

test('bad addresses and CIDRs are named in the error', (t) => {
  t.throws(() => meshAddress('10.0.0.300'), { instanceOf: AddressError, message: /'10\.0\.0\.300'/ });
  t.throws(() => meshAddress('10.1'), { instanceOf: AddressError });
  t.throws(() => parseCidr('10.0.0.0/40'), { instanceOf: AddressError, message: /10\.0\.0\.0\/40/ });
  t.throws(() => parseCidr('nope'), { instanceOf: AddressError });
});
