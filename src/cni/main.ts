// Entry point of the mesh CNI plugin, run by the container runtime once per command
// (bin/mesh-cni; the node image carries it to the CNI bin dir). Reads the environment and stdin,
// writes the result (or the spec's error object) to stdout, and one line for the runtime's log
// to stderr.
import { errorJson, parseInvocation } from './protocol.ts';
import { runPlugin } from './plugin.ts';

async function readStdin(): Promise<string> {
  // A runtime always passes a config; a terminal does not (VERSION needs none).
  if (process.stdin.isTTY) return '';
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString();
}

let cniVersion = '1.1.0';
try {
  const inv = parseInvocation(process.env, await readStdin());
  if (inv.conf?.cniVersion) cniVersion = inv.conf.cniVersion;
  const out = await runPlugin(inv);
  if (out.result !== undefined) process.stdout.write(`${JSON.stringify(out.result)}\n`);
  // performance.now() counts from the process's start: the plugin's whole cost but Node's own start.
  process.stderr.write(`mesh-cni ${inv.command} ${inv.containerId}: ${out.note} (${performance.now().toFixed(0)} ms)\n`);
  process.exitCode = 0;
} catch (e) {
  process.stdout.write(`${JSON.stringify(errorJson(e, cniVersion))}\n`);
  process.exitCode = 1;
}
