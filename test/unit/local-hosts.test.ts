// The local cluster's per-pod hosts files (src/local/runtime/dns.ts): rewritten in place (the
// pod's bind mount pins the inode), exactly the rendered text after growing and shrinking, and
// not touched when nothing changed.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { HostsWriter } from '../../src/local/runtime/dns.ts';

test('hosts files are rewritten in place, exact after growing and shrinking, and left alone when unchanged', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-hosts-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const w = new HostsWriter(dir);
  const pod = { ip: '10.100.0.5', hostname: 'web', namespace: 'shop' };
  w.addPod('n1-shop-web', pod);
  const file = join(dir, 'n1-shop-web', 'hosts');
  const inode = statSync(file).ino;
  const many = ['catalog', 'orders', 'payments', 'frontend'].map((name, i) => ({ name, namespace: 'shop', clusterIP: `10.96.0.${10 + i}` }));
  w.setServices(many);
  t.is(readFileSync(file, 'utf8'), w.render(pod));
  t.regex(readFileSync(file, 'utf8'), /10\.96\.0\.13\tfrontend\.shop\.svc\.cluster\.local .* frontend\n/);
  w.setServices(many.slice(0, 1));
  t.is(readFileSync(file, 'utf8'), w.render(pod), 'a shorter file leaves no tail of the longer one');
  t.notRegex(readFileSync(file, 'utf8'), /orders/);
  t.is(statSync(file).ino, inode, 'same inode: the pod\'s bind mount sees the change');
  const mtime = statSync(file).mtimeMs;
  await new Promise((r) => setTimeout(r, 30));
  w.setServices(many.slice(0, 1));
  t.is(statSync(file).mtimeMs, mtime, 'an unchanged file is not written');
});
