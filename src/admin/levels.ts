// Runtime log levels for /logging: the loggers of the components, changed together
// (`level=debug`) or one by one (`xds=debug`), or as MESH_TRACE does (`trace=xds,hbone` → debug
// for those). src/common/log.ts keeps one logger per component, shared by every module that logs
// under that name, so changing the level of the registered logger changes what the traffic code
// (hbone, authz, xds, identity, ztunnel) writes. ztunnel's composition root registers all of them
// (ofProcess) and the access log, which is a logger of its own.
import type { Logger } from 'pino';
import { componentLoggers, isLevel, type LevelName, LEVELS } from '../common/log.ts';

export { isLevel, type LevelName, LEVELS };

export class LogLevels {
  readonly #loggers = new Map<string, { logger: Logger; initial: string }>();

  /** Every component logger of this process (src/common/log.ts), and `extra` ones by name.
   * Loggers are made when their modules load, so by the time a process's main runs they all exist. */
  static ofProcess(extra: Readonly<Record<string, Logger>> = {}): LogLevels {
    const levels = new LogLevels();
    for (const [component, logger] of componentLoggers()) levels.register(component, logger);
    for (const [component, logger] of Object.entries(extra)) levels.register(component, logger);
    return levels;
  }

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
