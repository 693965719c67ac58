// The node image's entry for `meshctl check --pre-install`: the host checks of `meshctl check`,
// plus the CNI conf dir, as JSON on stdout. Small on purpose — the image holds only what its
// entries import (src/images/build.ts), and this needs neither commander nor the API client.
//   node src/cli/node-check.ts [--cni-conf-dir DIR] [--bpffs-dir DIR]
import { parseArgs } from 'node:util';
import { runChecks } from './checks.ts';
import { gatherHostFacts, listDir } from './host-facts.ts';
import { checkCniConfDir } from './precheck.ts';

const { values } = parseArgs({ options: { 'cni-conf-dir': { type: 'string' }, 'bpffs-dir': { type: 'string', default: process.env.MESH_BPFFS_DIR || '/sys/fs/bpf/mesh' } } });
const cni = values['cni-conf-dir'];
const results = [...runChecks(gatherHostFacts(values['bpffs-dir'])), ...(cni ? [checkCniConfDir(cni, listDir(cni))] : [])];
process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
process.exitCode = results.some((r) => r.status === 'fail') ? 1 : 0;
