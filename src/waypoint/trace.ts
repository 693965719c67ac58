// W3C Trace Context (https://www.w3.org/TR/trace-context/) at the waypoint: every request leaves
// with a traceparent naming this hop, so traces join across the mesh before the waypoint emits
// spans of its own.
import { randomBytes } from 'node:crypto';
import { parseTraceparent } from '../hbone/index.ts';

/**
 * W3C Trace Context §3.2 for an intermediary: keep the caller's trace-id and flags, put our own
 * parent-id in (this hop's span); start a trace when there is none or it is invalid. Not sampled
 * until the waypoint emits spans.
 */
export function nextTraceparent(incoming: string | undefined): string {
  const parent = incoming ? parseTraceparent(incoming) : undefined;
  const traceId = parent?.traceId ?? randomHex(16);
  return `00-${traceId}-${randomHex(8)}-${parent?.flags ?? '00'}`;
}

// Random ids come from a refilled pool: one randomBytes() per request was a visible share of
// the per-request CPU in bench/waypoint-engine.ts.
let randomPool = Buffer.alloc(0);
let randomOffset = 0;

/** `n` random bytes as hex; never all zeros (W3C Trace Context: such ids are invalid). */
function randomHex(n: number): string {
  if (randomOffset + n > randomPool.length) {
    randomPool = randomBytes(4096);
    randomOffset = 0;
  }
  const hex = randomPool.toString('hex', randomOffset, randomOffset + n);
  randomOffset += n;
  return /^0+$/.test(hex) ? randomHex(n) : hex;
}
