// JSON-lines logs with a child logger per component. Debug detail sits behind named tracers:
// MESH_TRACE=enrol,events turns on debug for those components only. MESH_LOG_LEVEL sets the rest.
// Both are read here, when the first module asks for a logger (before any settings schema is
// read); each process's schema (src/common/settings.ts, LOG_SETTINGS) validates them.
//
// One logger per component and process: every logger('hbone') returns the same child, so a level
// set on it at run time (ztunnel's /logging) reaches every module that logs as 'hbone'. pino
// children do not follow a parent's level once made, so a fresh child per call could not be
// reached at all.
import { type Logger, pino } from 'pino';

export type { Logger };

export const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LevelName = (typeof LEVELS)[number];

export function isLevel(s: string): s is LevelName {
  return (LEVELS as readonly string[]).includes(s);
}

const traced = new Set(
  (process.env.MESH_TRACE ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
);

// A bad MESH_LOG_LEVEL is reported by the process's settings, with the other settings' errors;
// pino would throw here, at import, with no word on where the level came from.
const envLevel = process.env.MESH_LOG_LEVEL;
const root = pino({
  level: envLevel && isLevel(envLevel) ? envLevel : 'info',
  base: { pid: process.pid },
  timestamp: pino.stdTimeFunctions.isoTime,
});

const components = new Map<string, Logger>();

/** A component's logger (the same one for every caller); debug when MESH_TRACE names it. */
export function logger(component: string): Logger {
  let child = components.get(component);
  if (!child) {
    child = root.child({ component });
    if (traced.has(component) || traced.has('all')) child.level = 'debug';
    components.set(component, child);
  }
  return child;
}

/** Every component logger this process has made, by component: what /logging adjusts. */
export function componentLoggers(): ReadonlyMap<string, Logger> {
  return components;
}
