// Editing the node's CNI configuration, as istio-cni's installer does: find the primary network's
// file (the runtime uses the lexically first one in the conf dir), append our entry to its
// "plugins" chain, and take it out again. Pure text in, text out; src/cni/install.ts does the I/O.

export const PLUGIN_TYPE = 'mesh-cni';

/** The file a runtime loads: the lexically first .conflist/.conf/.json (libcni's ConfFiles order). */
export function primaryConfFile(names: readonly string[]): string | undefined {
  return names.filter((n) => /\.(conflist|conf|json)$/.test(n) && !n.startsWith('.')).sort()[0];
}

export class ConflistError extends Error {
  readonly code = 'MESH_ERR_CNI_CONFLIST';
}

interface Conflist {
  cniVersion?: string;
  name?: string;
  plugins: Record<string, unknown>[];
  [k: string]: unknown;
}

function parse(text: string, file: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new ConflistError(`${file} is not JSON: ${(e as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ConflistError(`${file} is not a JSON object`);
  return v as Record<string, unknown>;
}

/**
 * The file as a conflist: a single-plugin .conf becomes a list of one (its cniVersion and name
 * move up to the list, as libcni's ConfListFromConf does).
 */
export function asConflist(text: string, file: string): Conflist {
  const obj = parse(text, file);
  if (Array.isArray(obj['plugins'])) return obj as Conflist;
  if (typeof obj['type'] !== 'string') throw new ConflistError(`${file} has neither "plugins" nor "type": not a CNI network configuration`);
  const { cniVersion, name, ...plugin } = obj;
  return { ...(typeof cniVersion === 'string' ? { cniVersion } : {}), ...(typeof name === 'string' ? { name } : {}), plugins: [plugin] };
}

/** Whether our entry is in the chain. */
export function hasPlugin(list: Conflist): boolean {
  return list.plugins.some((p) => p['type'] === PLUGIN_TYPE);
}

/**
 * The primary file's text with our entry last in the chain (replacing one already there, so that
 * changed settings take effect). Returns the text unchanged when it is already exactly so.
 */
export function insertPlugin(text: string, file: string, entry: Record<string, unknown>): string {
  const list = asConflist(text, file);
  const ours = { ...entry, type: PLUGIN_TYPE };
  const others = list.plugins.filter((p) => p['type'] !== PLUGIN_TYPE);
  if (others.length === 0) throw new ConflistError(`${file} has no plugin but ours: there is no primary network to chain after`);
  const next = { ...list, plugins: [...others, ours] };
  const out = `${JSON.stringify(next, null, 2)}\n`;
  // Idempotent to the byte: an unchanged file is not rewritten (and its watchers not woken).
  return JSON.stringify(parse(text, file)) === JSON.stringify(next) ? text : out;
}

/** The text without our entry (unchanged if it has none). */
export function removePlugin(text: string, file: string): string {
  const obj = parse(text, file);
  if (!Array.isArray(obj['plugins'])) return text;
  const list = obj as Conflist;
  if (!hasPlugin(list)) return text;
  return `${JSON.stringify({ ...list, plugins: list.plugins.filter((p) => p['type'] !== PLUGIN_TYPE) }, null, 2)}\n`;
}

/** A .conf file's name once it holds a list: libcni reads lists only from .conflist files. */
export function conflistName(file: string): string {
  return file.replace(/\.(conf|json)$/, '.conflist');
}
