// Settings: read once at start from named environment variables into a frozen, validated object.
// Each process declares one schema with defineSettings() (src/agent/config.ts,
// src/ztunnel/config.ts, src/controller/config.ts) from the helpers below and the pieces several
// processes share (src/common/shared-settings.ts). A schema knows every MESH_* variable its
// process reads, so a misspelt or misplaced one stops the process with a message that names it,
// instead of silently leaving a default in force. Other variables of the host are not ours and
// are ignored.
import { isIP } from 'node:net';
import { LEVELS } from './log.ts';

/** A setting that is missing, malformed or unknown. The message names the variable. */
export class ConfigError extends Error {
  readonly code = 'MESH_ERR_CONFIG';
  override name = 'ConfigError';
}

/** The environment, as process.env has it. */
export type Env = Readonly<Record<string, string | undefined>>;
/** The values read so far, by field: derived defaults read those declared before them. */
export type Earlier = Readonly<Record<string, unknown>>;

/** Our variables are the ones with this prefix; the schema of a process lists those it reads. */
export const PREFIX = 'MESH_';

type Fallback<T> =
  | { kind: 'default'; value: T | ((earlier: Earlier) => T); why: string }
  | { kind: 'optional' }
  | { kind: 'required'; why: string };

/** One environment variable: how it is parsed, and what holds when it is not set (and why). */
export class Setting<T> {
  readonly env: string;
  /** What it sets, as the README's tables say it. */
  readonly doc: string;
  /** The default as the README shows it ('–' when there is none). */
  readonly shown: string;
  readonly #parse: (raw: string) => T;
  readonly #fallback: Fallback<T>;

  constructor(env: string, parse: (raw: string) => T, fallback: Fallback<T>, doc: string, shown: string) {
    this.env = env;
    this.#parse = parse;
    this.#fallback = fallback;
    this.doc = doc;
    this.shown = shown;
  }

  /** Why the default is what it is (or why the setting must be given). */
  get why(): string | undefined {
    return this.#fallback.kind === 'optional' ? undefined : this.#fallback.why;
  }

  /** The value from `raw` (empty counts as unset, as a Kubernetes env entry with no value). */
  read(raw: string | undefined, earlier: Earlier, component: string): T {
    if (raw !== undefined && raw !== '') return this.#parse(raw);
    const f = this.#fallback;
    if (f.kind === 'default') return typeof f.value === 'function' ? (f.value as (e: Earlier) => T)(earlier) : f.value;
    if (f.kind === 'required') throw new ConfigError(`${this.env} is not set: ${component} needs it (${f.why})`);
    return undefined as T;
  }

  /** The same variable, which this process cannot do without. */
  required(why: string): Setting<Exclude<T, undefined>> {
    return new Setting(this.env, this.#parse as (raw: string) => Exclude<T, undefined>, { kind: 'required', why }, this.doc, '– (required)');
  }
}

/** How a setting behaves when unset: a default and the reason for it, nothing, or an error. */
export type Unset<T> =
  | { default: T | ((earlier: Earlier) => T); why: string; shown?: string }
  | { optional: true; shown?: string }
  | { required: string };

type Read<T, U> = U extends { optional: true } ? T | undefined : T;

function setting<T, U extends Unset<T>>(env: string, doc: string, parse: (raw: string) => T, unset: U, show: (v: T) => string): Setting<Read<T, U>> {
  let fallback: Fallback<T>;
  let shown: string;
  if ('default' in unset) {
    fallback = { kind: 'default', value: unset.default, why: unset.why };
    shown = unset.shown ?? (typeof unset.default === 'function' ? '(derived)' : `\`${show(unset.default)}\``);
  } else if ('optional' in unset) {
    fallback = { kind: 'optional' };
    shown = unset.shown ?? '–';
  } else {
    fallback = { kind: 'required', why: unset.required };
    shown = '– (required)';
  }
  return new Setting(env, parse, fallback, doc, shown) as Setting<Read<T, U>>;
}

function bad(env: string, raw: string, expected: string): ConfigError {
  return new ConfigError(`${env}=${raw}: expected ${expected}`);
}

// ---- the kinds of value -------------------------------------------------------------------------

/** Any non-empty text. */
export function str<U extends Unset<string>>(env: string, doc: string, unset: U): Setting<Read<string, U>> {
  return setting(env, doc, (raw) => raw, unset, (v) => v);
}

/** One of a fixed set of words. */
export function oneOf<const W extends string, U extends Unset<W>>(env: string, doc: string, words: readonly W[], unset: U): Setting<Read<W, U>> {
  const parse = (raw: string): W => {
    if ((words as readonly string[]).includes(raw)) return raw as W;
    throw bad(env, raw, `one of ${words.join(', ')}`);
  };
  return setting(env, doc, parse, unset, (v) => v);
}

/** Comma-separated words; blanks dropped. */
export function list<U extends Unset<readonly string[]>>(env: string, doc: string, unset: U): Setting<Read<readonly string[], U>> {
  const parse = (raw: string) => Object.freeze(raw.split(',').map((s) => s.trim()).filter(Boolean));
  return setting(env, doc, parse, unset, (v) => v.join(','));
}

/** An integer in [min, max], decimal, or hexadecimal with 0x (marks are written that way). */
export function int<U extends Unset<number>>(env: string, doc: string, range: { min: number; max: number; hex?: boolean }, unset: U): Setting<Read<number, U>> {
  const parse = (raw: string): number => {
    const form = range.hex ? /^(0x[0-9a-f]+|\d+)$/i : /^\d+$/;
    const v = form.test(raw.trim()) ? Number(raw.trim()) : NaN;
    if (!Number.isSafeInteger(v) || v < range.min || v > range.max) {
      const fmt = (n: number) => (range.hex ? `0x${n.toString(16)}` : String(n));
      throw bad(env, raw, `an integer from ${fmt(range.min)} to ${fmt(range.max)}`);
    }
    return v;
  };
  return setting(env, doc, parse, unset, (v) => (range.hex ? `0x${v.toString(16)}` : String(v)));
}

/** A percentage, 0 to 100, decimals allowed (Istio's randomSamplingPercentage takes 0.01). */
export function percent<U extends Unset<number>>(env: string, doc: string, unset: U): Setting<Read<number, U>> {
  const parse = (raw: string): number => {
    const v = /^\d+(\.\d+)?$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
    if (!(v >= 0 && v <= 100)) throw bad(env, raw, 'a percentage from 0 to 100 (decimals allowed: 0.5)');
    return v;
  };
  return setting(env, doc, parse, unset, String);
}

/** An http:// or https:// URL. */
export function httpUrl<U extends Unset<string>>(env: string, doc: string, unset: U): Setting<Read<string, U>> {
  const parse = (raw: string): string => {
    let u: URL;
    try {
      u = new URL(raw.trim());
    } catch {
      throw bad(env, raw, 'an http:// or https:// URL');
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw bad(env, raw, 'an http:// or https:// URL');
    return raw.trim();
  };
  return setting(env, doc, parse, unset, (v) => v);
}

/** A TCP port; 0 asks the kernel for a free one (tests, and the local cluster, where every
 * component shares the host's network namespace). */
export function port<U extends Unset<number>>(env: string, doc: string, unset: U): Setting<Read<number, U>> {
  const parse = (raw: string): number => {
    const v = /^\d+$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
    if (!Number.isInteger(v) || v > 65535) throw bad(env, raw, 'a port number, 0-65535 (0 picks a free one)');
    return v;
  };
  return setting(env, doc, parse, unset, String);
}

const TRUE = ['1', 'true', 'on', 'yes'];
const FALSE = ['0', 'false', 'off', 'no'];

export function bool<U extends Unset<boolean>>(env: string, doc: string, unset: U): Setting<Read<boolean, U>> {
  const parse = (raw: string): boolean => {
    const v = raw.trim().toLowerCase();
    if (TRUE.includes(v)) return true;
    if (FALSE.includes(v)) return false;
    throw bad(env, raw, 'true or false');
  };
  return setting(env, doc, parse, unset, String);
}

/** An IPv4 or IPv6 address. */
export function ip<U extends Unset<string>>(env: string, doc: string, unset: U): Setting<Read<string, U>> {
  const parse = (raw: string): string => {
    if (!isIP(raw.trim())) throw bad(env, raw, 'an IPv4 or IPv6 address');
    return raw.trim();
  };
  return setting(env, doc, parse, unset, (v) => v);
}

/** `host:port`, `[v6]:port`; the text is kept as given (gRPC and net.connect take it so). */
export function hostPort<U extends Unset<string>>(env: string, doc: string, unset: U): Setting<Read<string, U>> {
  const parse = (raw: string): string => {
    const m = /^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):(\d+)$/.exec(raw.trim());
    if (!m || Number(m[2]) > 65535) throw bad(env, raw, 'host:port (an IPv6 address in brackets, [fd00::1]:15010)');
    return raw.trim();
  };
  return setting(env, doc, parse, unset, (v) => v);
}

/** A gRPC target: `host:port`, or `unix:/absolute/path` for a socket reached through a mount. */
export function grpcTarget<U extends Unset<string>>(env: string, doc: string, unset: U): Setting<Read<string, U>> {
  const parse = (raw: string): string => {
    const v = raw.trim();
    if (/^unix:\/[^\s]+$/.test(v)) return v;
    if (!/^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):(\d+)$/.exec(v) || Number(v.slice(v.lastIndexOf(':') + 1)) > 65535) {
      throw bad(env, raw, 'host:port (an IPv6 address in brackets, [fd00::1]:15010) or unix:/path/to/socket');
    }
    return v;
  };
  return setting(env, doc, parse, unset, (v) => v);
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * A duration as Go's time.ParseDuration writes it, as Istio's settings take them
 * (DEFAULT_WORKLOAD_CERT_TTL=24h): numbers with units, ms, s, m or h, one or more (1h30m), a
 * fraction allowed (1.5h). Go has no days; neither do we. Returns milliseconds.
 */
export function parseDuration(raw: string): number | undefined {
  const s = raw.trim();
  if (s === '') return undefined;
  // Go takes a bare 0 (time.ParseDuration: `if s == "0"`), as "no limit" settings are written.
  if (s === '0') return 0;
  let ms = 0;
  let rest = s;
  while (rest !== '') {
    const m = /^(\d+(?:\.\d*)?|\.\d+)(ms|h|m|s)/.exec(rest);
    if (!m) return undefined;
    ms += Number(m[1]) * UNIT_MS[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  return Number.isFinite(ms) ? Math.round(ms) : undefined;
}

/** Milliseconds as the shortest Go duration: 86400000 → "24h", 5400000 → "1h30m". */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  let out = '';
  let rest = ms;
  for (const [unit, size] of [['h', 3_600_000], ['m', 60_000], ['s', 1000], ['ms', 1]] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) out += `${n}${unit}`;
    rest -= n * size;
  }
  return out;
}

export function duration<U extends Unset<number>>(env: string, doc: string, range: { minMs: number; maxMs?: number }, unset: U): Setting<Read<number, U>> {
  const parse = (raw: string): number => {
    const ms = parseDuration(raw);
    if (ms === undefined) {
      const days = /^\s*(\d+)\s*d\s*$/.exec(raw);
      const hint = days ? ` (Go durations have no days: ${Number(days[1]) * 24}h)` : '';
      throw bad(env, raw, `a duration such as 30s, 90m, 24h or 1h30m (units ms, s, m, h)${hint}`);
    }
    if (ms < range.minMs || (range.maxMs !== undefined && ms > range.maxMs)) {
      throw bad(env, raw, `a duration of at least ${formatDuration(range.minMs)}${range.maxMs !== undefined ? ` and at most ${formatDuration(range.maxMs)}` : ''}`);
    }
    return ms;
  };
  return setting(env, doc, parse, unset, formatDuration);
}

// ---- a process's schema -------------------------------------------------------------------------

type Schema = Record<string, Setting<unknown>>;
export type Values<S extends Schema> = { readonly [K in keyof S]: S[K] extends Setting<infer T> ? T : never };

/** Every process logs; src/common/log.ts reads these when it is first imported (loggers are made
 * at module load, before any schema is read), and the schema validates them. */
export const LOG_SETTINGS = Object.freeze({
  logLevel: oneOf('MESH_LOG_LEVEL', 'log level of every component', LEVELS, {
    default: 'info',
    why: "pino's default: one line per lifecycle event, nothing per packet or per connection",
  }),
  trace: list('MESH_TRACE', 'components logged at debug (`MESH_TRACE=enrol,xds`; `all` for every one)', {
    default: Object.freeze([]) as readonly string[],
    why: 'debug detail is asked for per component, by name (STYLE.md: named tracers)',
    shown: '–',
  }),
});

export interface SettingsSchema<S extends Schema> {
  /** The process, as errors name it: "the agent", "ztunnel". */
  readonly component: string;
  /** Its settings by field, the log settings first. */
  readonly settings: typeof LOG_SETTINGS & S;
  /** Every variable it reads, in schema order. */
  readonly names: readonly string[];
  /** Reads and validates the environment; throws ConfigError naming the variable. */
  read(env: Env): Values<typeof LOG_SETTINGS & S>;
}

/**
 * One process's settings. `check` sees every value and returns a problem (naming the variables)
 * for a combination that cannot work.
 */
export function defineSettings<S extends Schema>(component: string, settings: S, check?: (v: Values<typeof LOG_SETTINGS & S>) => string | undefined): SettingsSchema<S> {
  const all = { ...LOG_SETTINGS, ...settings } as typeof LOG_SETTINGS & S;
  const byEnv = new Map<string, string>();
  for (const [field, s] of Object.entries(all)) {
    const other = byEnv.get(s.env);
    if (other !== undefined) throw new Error(`${component}: ${s.env} is read into both ${other} and ${field}`);
    byEnv.set(s.env, field);
  }
  const names = Object.freeze([...byEnv.keys()]);
  return Object.freeze({
    component,
    settings: all,
    names,
    read(env: Env) {
      rejectUnknown(env, names, component);
      const values: Record<string, unknown> = {};
      for (const [field, s] of Object.entries(all)) values[field] = s.read(env[s.env], values, component);
      const v = values as Values<typeof LOG_SETTINGS & S>;
      const problem = check?.(v);
      if (problem) throw new ConfigError(problem);
      return Object.freeze(v);
    },
  });
}

function rejectUnknown(env: Env, names: readonly string[], component: string): void {
  const known = new Set(names);
  const unknown = Object.keys(env).filter((k) => k.startsWith(PREFIX) && !known.has(k)).sort();
  if (unknown.length === 0) return;
  const each = unknown.map((k) => {
    const near = closest(k, names);
    return near ? `${k} (did you mean ${near}?)` : k;
  });
  throw new ConfigError(`unknown setting${unknown.length > 1 ? 's' : ''} ${each.join(', ')}: ${component} reads ${names.join(', ')}`);
}

/** The known name within a few edits of `name` (a typo, a missing or extra letter). */
function closest(name: string, names: readonly string[]): string | undefined {
  let best: { name: string; d: number } | undefined;
  for (const n of names) {
    const d = editDistance(name, n);
    if (d <= Math.max(2, Math.floor(n.length / 6)) && (!best || d < best.d)) best = { name: n, d };
  }
  return best?.name;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

/**
 * The environment for starting a mesh process with settings of the caller's choosing: the host's
 * variables (PATH, HOME, NODE_*) and the log settings every process shares, without the caller's
 * other MESH_* variables — a test's or meshctl's own (MESH_DEV_STATE_DIR) are not the child's,
 * and it would refuse them.
 */
export function hostEnv(env: Env = process.env): Record<string, string> {
  const shared = new Set(Object.values(LOG_SETTINGS).map((s) => s.env));
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && (!k.startsWith(PREFIX) || shared.has(k))) out[k] = v;
  return out;
}

