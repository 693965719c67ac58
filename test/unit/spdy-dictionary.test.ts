// The SPDY/3.1 header dictionary is a wire constant: kubectl's zlib streams name it by Adler-32.
import test from 'ava';
import { SPDY3_DICTIONARY } from '../../src/local/apiserver/spdy-dictionary.ts';

function adler32(b: Buffer): number {
  let a = 1;
  let s = 0;
  for (const byte of b) {
    a = (a + byte) % 65521;
    s = (s + a) % 65521;
  }
  return ((s << 16) | a) >>> 0;
}

test('the SPDY/3 dictionary has the length and Adler-32 that clients announce', (t) => {
  t.is(SPDY3_DICTIONARY.length, 1423);
  t.is(adler32(SPDY3_DICTIONARY), 0xe3c6a7c2);
});
