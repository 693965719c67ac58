// Lines (access log, flow records) gathered and written joined: one write per `maxChars` of text,
// or `maxMs` after the first line of a quiet spell, instead of a syscall (and a wake-up of
// whoever reads) per line. ztunnel's flow records and access log (zds-client.ts,
// telemetry/access-log.ts: one write per line was 7–11% and ~9% of ztunnel's CPU under connection
// churn) and the waypoint's (a line of each per request: 15% of its CPU at 1,000 rps) go through
// it (issue 16).

/** Log lines (ztunnel's and the waypoint's access logs): ~8 KiB writes, or 250 ms after the first. */
export const LOG_BATCH = { maxChars: 8 * 1024, maxMs: 250 } as const;
/** Flow records to the node agent (ztunnel's, the waypoint's L7 ones): 64 KiB writes, or 100 ms after the first. */
export const FLOW_BATCH = { maxChars: 64 * 1024, maxMs: 100 } as const;

export class LineBatch {
  readonly #write: (text: string, lines: number) => void;
  readonly #maxChars: number;
  readonly #maxMs: number;
  #pending = '';
  #lines = 0;
  #timer: NodeJS.Timeout | undefined;

  /** `write` gets the joined text (each line with its own '\n') and how many lines it holds. */
  constructor(write: (text: string, lines: number) => void, opts: { maxChars: number; maxMs: number }) {
    this.#write = write;
    this.#maxChars = opts.maxChars;
    this.#maxMs = opts.maxMs;
  }

  /** Characters waiting. */
  get chars(): number {
    return this.#pending.length;
  }

  /** Adds a line, which must end with '\n'. */
  push(line: string): void {
    if (this.#lines === 0) {
      this.#timer = setTimeout(this.flush, this.#maxMs);
      this.#timer.unref();
    }
    // V8 joins the strings lazily (a rope); the write flattens it once.
    this.#pending += line;
    this.#lines++;
    if (this.#pending.length >= this.#maxChars) this.flush();
  }

  /** Writes what waits (at the timer, at the size limit, and before the process ends). */
  readonly flush = (): void => {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const n = this.#lines;
    if (n === 0) return;
    const text = this.#pending;
    this.#pending = '';
    this.#lines = 0;
    this.#write(text, n);
  };
}
