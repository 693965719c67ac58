// README.md's settings tables are the schemas' (src/agent/config.ts, src/ztunnel/config.ts,
// src/controller/config.ts, src/waypoint/config.ts, src/cni/install.ts): every variable, its default and what it sets, in schema order. On a
// mismatch the test prints the table to paste.
import { readFileSync } from 'node:fs';
import test from 'ava';
import { AGENT_SETTINGS } from '../../src/agent/config.ts';
import { CNI_INSTALL_SETTINGS } from '../../src/cni/install.ts';
import { CONTROLLER_SETTINGS } from '../../src/controller/config.ts';
import type { SettingsSchema } from '../../src/common/settings.ts';
import { WAYPOINT_SETTINGS } from '../../src/waypoint/config.ts';
import { ZTUNNEL_SETTINGS } from '../../src/ztunnel/config.ts';

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

function table(schema: SettingsSchema<Record<string, never>>): string {
  const rows = Object.values(schema.settings).map((s) => `| \`${s.env}\` | ${s.shown} | ${s.doc} |`);
  return ['| variable | default | meaning |', '|---|---|---|', ...rows].join('\n');
}

/** The table under `heading`: its lines up to the first line that is not a table row. */
function readmeTable(heading: string): string | undefined {
  const lines = README.split('\n');
  const at = lines.indexOf(heading);
  if (at < 0) return undefined;
  const start = lines.findIndex((l, i) => i > at && l.startsWith('|'));
  const end = lines.findIndex((l, i) => i > start && !l.startsWith('|'));
  return lines.slice(start, end < 0 ? undefined : end).join('\n');
}

for (const [heading, schema] of [
  ['### Node agent', AGENT_SETTINGS],
  ['### ztunnel', ZTUNNEL_SETTINGS],
  ['### Controller', CONTROLLER_SETTINGS],
  ['### Waypoint', WAYPOINT_SETTINGS],
  ['### CNI installer', CNI_INSTALL_SETTINGS],
] as const) {
  test(`README "${heading.slice(4)}" lists exactly the settings of ${schema.component}`, (t) => {
    const expected = table(schema as unknown as SettingsSchema<Record<string, never>>);
    const found = readmeTable(heading);
    t.truthy(found, `README.md has a "${heading}" section`);
    if (found !== expected) t.log(`the table for ${heading}:\n${expected}`);
    t.is(found, expected);
  });
}
