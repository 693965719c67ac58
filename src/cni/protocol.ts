// The CNI protocol as a plugin sees it (CNI spec 1.1, SPEC.md "Section 2: Execution Protocol"):
// the command and the container in environment variables, the network configuration (with the
// previous plugin's result when chained) on stdin, one JSON result on stdout, and on failure the
// spec's error object on stdout with a non-zero exit code. Pure: no I/O, so the unit tests drive it.

/** The versions this plugin speaks. Chained plugins only exist since 0.3.0 (prevResult). */
export const SUPPORTED_VERSIONS = Object.freeze(['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']);

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'STATUS' | 'GC';
const COMMANDS: readonly CniCommand[] = ['ADD', 'DEL', 'CHECK', 'VERSION', 'STATUS', 'GC'];

/** Error codes: 1–99 are the spec's well-known ones, 100+ are this plugin's (SPEC.md "Error"). */
export const CODES = Object.freeze({
  INCOMPATIBLE_VERSION: 1,
  UNSUPPORTED_FIELD: 2,
  CONTAINER_UNKNOWN: 3,
  INVALID_ENV: 4,
  IO: 5,
  DECODE: 6,
  INVALID_CONFIG: 7,
  TRY_AGAIN_LATER: 11,
  /** STATUS: the plugin cannot serve ADD now (spec 1.1). */
  NOT_AVAILABLE: 50,
  /** The Kubernetes API could not tell whether the pod belongs in the mesh. */
  KUBE_API: 100,
  /** The agent refused the pod (its message says why). */
  ENROL_FAILED: 101,
  /** CHECK: the pod's enrolment is not what its labels ask for. */
  DRIFT: 102,
});

/** A failure the runtime is told about: the spec's {code, msg, details}. */
export class CniError extends Error {
  readonly cniCode: number;
  readonly details: string | undefined;
  override name = 'CniError';

  constructor(cniCode: number, msg: string, details?: string) {
    super(msg);
    this.cniCode = cniCode;
    this.details = details;
  }
}

/** The subset of a CNI result (types 0.3.x/0.4.0/1.x) that this plugin reads. */
export interface CniResult {
  cniVersion?: string;
  interfaces?: { name: string; mac?: string; sandbox?: string }[];
  ips?: { address: string; gateway?: string; interface?: number; version?: string }[];
  [k: string]: unknown;
}

/** This plugin's entry in the conflist: `type` plus our settings; the rest is the runtime's. */
export interface NetConf {
  cniVersion: string;
  name: string;
  type: string;
  prevResult?: CniResult;
  [k: string]: unknown;
}

export interface Invocation {
  command: CniCommand;
  containerId: string;
  netns: string;
  ifName: string;
  /** CNI_ARGS as key=value pairs (K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_UID, …). */
  args: Readonly<Record<string, string>>;
  /** Absent for VERSION, which may come without a config. */
  conf: NetConf | undefined;
}

/** Parses CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web`. */
export function parseArgs(raw: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of (raw ?? '').split(';')) {
    if (!pair) continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new CniError(CODES.INVALID_ENV, `CNI_ARGS: '${pair}' is not KEY=VALUE`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}

function need(env: Readonly<Record<string, string | undefined>>, name: string, command: string): string {
  const v = env[name];
  if (v === undefined || v === '') throw new CniError(CODES.INVALID_ENV, `${name} is not set: ${command} needs it`);
  return v;
}

/** Reads the invocation from the environment and stdin, as a runtime passes it. */
export function parseInvocation(env: Readonly<Record<string, string | undefined>>, stdin: string): Invocation {
  const raw = env['CNI_COMMAND'];
  if (!raw) throw new CniError(CODES.INVALID_ENV, `CNI_COMMAND is not set: this is a CNI plugin, run by the container runtime (commands: ${COMMANDS.join(', ')})`);
  if (!(COMMANDS as readonly string[]).includes(raw)) throw new CniError(CODES.INVALID_ENV, `CNI_COMMAND '${raw}' is not one of ${COMMANDS.join(', ')}`);
  const command = raw as CniCommand;
  let conf: NetConf | undefined;
  if (stdin.trim() !== '') {
    try {
      conf = JSON.parse(stdin) as NetConf;
    } catch (e) {
      throw new CniError(CODES.DECODE, `the network configuration on stdin is not JSON: ${(e as Error).message}`);
    }
    if (typeof conf !== 'object' || conf === null || Array.isArray(conf)) throw new CniError(CODES.DECODE, 'the network configuration on stdin is not a JSON object');
  }
  if (command === 'VERSION') return { command, containerId: '', netns: '', ifName: '', args: {}, conf };
  if (!conf) throw new CniError(CODES.DECODE, `${command} needs the network configuration on stdin`);
  if (typeof conf.cniVersion !== 'string') throw new CniError(CODES.INVALID_CONFIG, 'the network configuration has no cniVersion');
  if (!SUPPORTED_VERSIONS.includes(conf.cniVersion)) {
    throw new CniError(CODES.INCOMPATIBLE_VERSION, `cniVersion ${conf.cniVersion} is not supported (supported: ${SUPPORTED_VERSIONS.join(', ')})`);
  }
  // STATUS and GC concern the network, not a container (spec 1.1).
  const perContainer = command === 'ADD' || command === 'DEL' || command === 'CHECK';
  return {
    command,
    containerId: perContainer ? need(env, 'CNI_CONTAINERID', command) : '',
    // DEL may come without a netns (the sandbox is already gone): the spec allows it.
    netns: command === 'DEL' ? (env['CNI_NETNS'] ?? '') : perContainer ? need(env, 'CNI_NETNS', command) : '',
    ifName: perContainer ? need(env, 'CNI_IFNAME', command) : '',
    args: parseArgs(env['CNI_ARGS']),
    conf,
  };
}

/** What ADD prints: the previous result, unchanged but for the version the runtime asked in. */
export function passThrough(conf: NetConf): CniResult {
  if (!conf.prevResult) {
    throw new CniError(
      CODES.INVALID_CONFIG,
      `${conf.type} is a chained plugin: put it after the primary CNI plugin in the conflist's "plugins" (it got no prevResult)`,
    );
  }
  return { ...conf.prevResult, cniVersion: conf.cniVersion };
}

/**
 * The pod's addresses from the previous result: at most one IPv4 and one IPv6, those of the
 * container's interfaces (the ones with a sandbox) when the result says which those are.
 */
export function podAddresses(result: CniResult | undefined): string[] {
  const ifaces = result?.interfaces ?? [];
  const out: string[] = [];
  let v4 = false;
  let v6 = false;
  for (const ip of result?.ips ?? []) {
    if (typeof ip.interface === 'number' && ifaces[ip.interface] && !ifaces[ip.interface]!.sandbox) continue;
    const addr = ip.address.split('/')[0]!;
    const six = addr.includes(':');
    if (six ? v6 : v4) continue;
    if (six) v6 = true;
    else v4 = true;
    out.push(addr);
  }
  return out;
}

/** The spec's error object. */
export function errorJson(e: unknown, cniVersion: string): { cniVersion: string; code: number; msg: string; details?: string } {
  if (e instanceof CniError) return { cniVersion, code: e.cniCode, msg: e.message, ...(e.details ? { details: e.details } : {}) };
  const err = e as Error;
  return { cniVersion, code: CODES.IO, msg: err?.message ?? String(e), ...(err?.stack ? { details: err.stack } : {}) };
}

/** VERSION's answer. */
export function versionResult(conf: NetConf | undefined): { cniVersion: string; supportedVersions: readonly string[] } {
  return { cniVersion: conf?.cniVersion && SUPPORTED_VERSIONS.includes(conf.cniVersion) ? conf.cniVersion : SUPPORTED_VERSIONS.at(-1)!, supportedVersions: SUPPORTED_VERSIONS };
}
