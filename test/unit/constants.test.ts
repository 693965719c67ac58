// The numbers TypeScript shares with the eBPF programs (src/common/constants.ts) are the ones
// bpf/mesh_shared.h defines: a change on one side only fails here. Only the names mirrored in
// TypeScript are compared, so a new #define in the header does not break this test.
import { readFileSync } from 'node:fs';
import test from 'ava';
import * as constants from '../../src/common/constants.ts';
import { CA_DEFAULTS } from '../../src/controller/ca/index.ts';
import { CONTROLLER_DEFAULTS } from '../../src/controller/controller.ts';
import { HBONE_PORT as MODEL_HBONE_PORT } from '../../src/controller/model/index.ts';
import { DELIVERY_MARK, DELIVERY_TABLE, layout } from '../../src/datapath/index.ts';
import { ADMIN_DEFAULTS } from '../../src/admin/index.ts';
import { ZTUNNEL_SETTINGS } from '../../src/ztunnel/config.ts';

/** `#define NAME value` lines with a numeric value (decimal or hex), comments allowed after. */
function defines(path: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of readFileSync(new URL(path, import.meta.url), 'utf8').split('\n')) {
    const m = /^\s*#\s*define\s+(\w+)\s+(0x[0-9a-fA-F]+|\d+)[uUlL]*\b/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

const shared = defines('../../bpf/mesh_shared.h');
const maps = defines('../../bpf/mesh_maps.bpf.h');

test('the header is parsed: its defines are there', (t) => {
  t.is(shared.get('MESH_PORT_HBONE'), 15008);
  t.is(shared.get('MESH_MARK_DEFAULT'), 0x539);
  t.true(shared.size >= Object.keys(constants.MESH_SHARED_H).length);
});

test('every value mirrored in src/common/constants.ts equals its #define in bpf/mesh_shared.h', (t) => {
  for (const [name, value] of Object.entries(constants.MESH_SHARED_H)) {
    t.true(shared.has(name), `${name} is defined in bpf/mesh_shared.h`);
    t.is(shared.get(name), value, `${name}: TypeScript ${value}, header ${shared.get(name)}`);
  }
});

test('event kinds and reasons decoded by layout.ts are the header\'s', (t) => {
  for (const [value, name] of Object.entries(layout.EVENT_KINDS)) t.is(shared.get(`MESH_EV_${name}`), Number(value), `MESH_EV_${name}`);
  // layout.ts names reasons for people; the header for C.
  const header: Record<string, string> = {
    '': 'MESH_R_NONE',
    loopback: 'MESH_R_LOOPBACK',
    'own-address': 'MESH_R_OWN_ADDR',
    'mesh-port': 'MESH_R_MESH_PORT',
    marked: 'MESH_R_MARKED',
    'excluded-port': 'MESH_R_EXCL_PORT',
    'excluded-cidr': 'MESH_R_EXCL_CIDR',
    'inside-pod': 'MESH_R_INSIDE',
    'no-ztunnel-socket': 'MESH_R_NO_SOCKET',
    'ztunnel-delivery': 'MESH_R_DELIVERY',
  };
  for (const [value, name] of Object.entries(layout.EVENT_REASONS)) {
    if (!(name in header)) continue; // named by whoever added it; the layout test covers the struct
    t.is(shared.get(header[name]!), Number(value), `${header[name]} (${name || 'none'})`);
  }
  t.is(maps.get('MESH_STAT_EVENTS_LOST'), layout.STAT_EVENTS_LOST);
});

test('the rest of the code takes these numbers from the one module', (t) => {
  t.is(layout.POD_F_TRANSPARENT, constants.POD_F_TRANSPARENT);
  t.is(layout.SOCK_HBONE, constants.SOCK_HBONE);
  t.is(DELIVERY_MARK, constants.DELIVERY_MARK);
  t.is(DELIVERY_TABLE, constants.DELIVERY_TABLE);
  t.is(MODEL_HBONE_PORT, constants.HBONE_PORT, "a waypoint's HBONE port is ztunnel's");
  t.not(constants.DELIVERY_MARK, constants.ZTUNNEL_MARK_DEFAULT, 'deliveries carry a mark of their own');
  t.is(CA_DEFAULTS.port, constants.CONTROLLER_CA_PORT, "the CA's own default port is the nodes' default CA port");
  t.is(CONTROLLER_DEFAULTS.xdsPort, constants.CONTROLLER_XDS_PORT);
  t.is(CA_DEFAULTS.defaultTtlMs, CONTROLLER_DEFAULTS.workloadCertTtlMs);
  t.is(ZTUNNEL_SETTINGS.read({ MESH_NODE_NAME: 'n' }).adminPort, ADMIN_DEFAULTS.adminPort);
});
