// Runtime log levels for /logging: the loggers of the components that registered, changed
// together (`level=debug`) or one by one (`xds=debug`), or as MESH_TRACE does (`trace=xds,hbone`
// → debug for those). pino children do not follow a parent's level once created, so the levels
// can only be changed on loggers that were handed to register() — the ztunnel's composition root
// registers its component loggers and the access log.
import type { Logger } from 'pino';

export const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LevelName = (typeof LEVELS)[number];

export function isLevel(s: string): s is LevelName {
  return (LEVELS as readonly string[]).includes(s);
}

export class LogLevels {
  readonly #loggers = new Map<string, { logger: Logger; initial: string }>();

  /** Makes a component's logger adjustable; the level it has now is what `reset` restores. */
  register(component: string, logger: Logger): this {
    this.#loggers.set(component, { logger, initial: logger.level });
    return this;
  }

  /** component → level. */
  levels(): Record<string, string> {
    return Object.fromEntries([...this.#loggers].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => [k, v.logger.level]));
  }

  components(): string[] {
    return Object.keys(this.levels());
  }

  has(component: string): boolean {
    return this.#loggers.has(component);
  }

  setAll(level: LevelName): void {
    for (const { logger } of this.#loggers.values()) logger.level = level;
  }

  set(component: string, level: LevelName): void {
    const e = this.#loggers.get(component);
    if (!e) throw new Error(`no component "${component}"`);
    e.logger.level = level;
  }

  reset(): void {
    for (const e of this.#loggers.values()) e.logger.level = e.initial;
  }
}
