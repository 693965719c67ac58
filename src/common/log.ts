// JSON-lines logs with a child logger per component. Debug detail sits behind named tracers:
// MESH_TRACE=enrol,events turns on debug for those components only. MESH_LOG_LEVEL sets the rest.
import { type Logger, pino } from 'pino';

const traced = new Set(
  (process.env.MESH_TRACE ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
);

const root = pino({
  level: process.env.MESH_LOG_LEVEL ?? 'info',
  base: { pid: process.pid },
  timestamp: pino.stdTimeFunctions.isoTime,
});

export type { Logger };

/** A component's logger; debug level when the component is named in MESH_TRACE. */
export function logger(component: string): Logger {
  const child = root.child({ component });
  if (traced.has(component) || traced.has('all')) child.level = 'debug';
  return child;
}
