// LineBatch (src/common/line-batch.ts): lines leave joined, in order, none lost or cut — at the
// size limit, at the timer, and on flush().
import test from 'ava';
import { LineBatch } from '../../src/common/line-batch.ts';

test('lines leave joined at the size limit, at the timer and on flush, in order', async (t) => {
  const writes: [string, number][] = [];
  const b = new LineBatch((text, n) => writes.push([text, n]), { maxChars: 10, maxMs: 30 });
  b.push('abcd\n');
  t.is(b.chars, 5);
  t.deepEqual(writes, [], 'nothing leaves before the limit or the timer');
  b.push('efgh\n');
  t.deepEqual(writes, [['abcd\nefgh\n', 2]], 'the size limit writes at once');
  b.push('i\n');
  await new Promise((r) => setTimeout(r, 60));
  t.deepEqual(writes[1], ['i\n', 1], 'the timer writes a quiet spell’s lines');
  b.push('j\n');
  b.flush();
  b.flush();
  t.deepEqual(writes.slice(2), [['j\n', 1]], 'flush writes what waits, once');
  t.is(b.chars, 0);
});
