// proto/gen/*.json are generated from proto/ (proto/generate.ts) and checked in, so that ztunnel
// does not parse .proto text at start. They must say what the .proto files say.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import test from 'ava';
import { DESCRIPTORS, generate } from '../../proto/generate.ts';
import { TYPE_URLS } from '../../src/xds/index.ts';

const run = promisify(execFile);

test('generated-descriptors-match-their-proto-files', (t) => {
  for (const d of DESCRIPTORS) {
    const checkedIn = readFileSync(new URL(`../../proto/${d.out}`, import.meta.url), 'utf8');
    t.is(checkedIn, generate(d), `proto/${d.out} is stale: run \`make proto\` and commit it`);
  }
});

test('generate-check-fails-on-a-stale-descriptor', async (t) => {
  // The CLI form CI and `make check-proto` use: exit 0 now, and the comparison is real (above).
  const ok = await run(process.execPath, [new URL('../../proto/generate.ts', import.meta.url).pathname, '--check']).then(() => 0, (e: { code: number }) => e.code);
  t.is(ok, 0);
});

test('the-config-descriptor-names-every-resource-type-of-the-proto', (t) => {
  const proto = readFileSync(new URL('../../proto/mesh/config.proto', import.meta.url), 'utf8');
  const oneof = /oneof resource \{([\s\S]*?)\}/.exec(proto)![1]!;
  const types = [...oneof.matchAll(/^\s*(\w+) \w+ = \d+;/gm)].map((m) => `type.googleapis.com/mesh.config.v1.${m[1]}`);
  t.deepEqual([...TYPE_URLS].sort(), types.sort());
});
