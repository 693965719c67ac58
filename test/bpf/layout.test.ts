// The structs shared with the eBPF programs: sizes and offsets in src/datapath/layout.ts must match
// the compiled object's BTF (Cilium's alignchecker idea), so neither side can drift.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import test from 'ava';
import { bpfObjectPath } from '../../src/datapath/index.ts';
import { EVENT_KINDS, EVENT_REASONS, LAYOUT } from '../../src/datapath/layout.ts';

interface BtfStruct {
  size: number;
  fields: Record<string, number>;
}

function structsFromBtf(objectPath: string): Map<string, BtfStruct> {
  const raw = execFileSync('bpftool', ['btf', 'dump', 'file', objectPath, 'format', 'raw'], {
    encoding: 'utf8',
  });
  const out = new Map<string, BtfStruct>();
  let current: BtfStruct | undefined;
  for (const line of raw.split('\n')) {
    const head = /^\[\d+\] STRUCT '([^']+)' size=(\d+)/.exec(line);
    if (head) {
      current = { size: Number(head[2]), fields: {} };
      out.set(head[1]!, current);
      continue;
    }
    const member = /^\t'([^']+)' type_id=\d+ bits_offset=(\d+)/.exec(line);
    if (member && current) current.fields[member[1]!] = Number(member[2]) / 8;
    else if (!line.startsWith('\t')) current = undefined;
  }
  return out;
}

const btf = structsFromBtf(bpfObjectPath);

for (const [name, want] of Object.entries(LAYOUT)) {
  test(`${name} has the same size and offsets in C and TypeScript`, (t) => {
    const got = btf.get(name);
    t.truthy(got, `${name} is not in the object's BTF`);
    t.is(got?.size, want.size);
    t.deepEqual(got?.fields, want.fields);
  });
}

// Constants are not in the BTF: read them from the header, so that a new reason or kind cannot
// reach user space as a bare number.
test('every event kind and reason in bpf/mesh_shared.h has a name in TypeScript, and no other', (t) => {
  const header = readFileSync(new URL('../../bpf/mesh_shared.h', import.meta.url), 'utf8');
  const numbers = (prefix: string) =>
    [...header.matchAll(new RegExp(`^#define ${prefix}\\w+ (\\d+)`, 'gm'))].map((m) => Number(m[1])).sort((a, b) => a - b);
  const keys = (o: object) => Object.keys(o).map(Number).sort((a, b) => a - b);
  t.deepEqual(keys(EVENT_KINDS), numbers('MESH_EV_'));
  t.deepEqual(keys(EVENT_REASONS), numbers('MESH_R_'));
});
