// HTTP/2 settings and liveness shared by both ends of an HBONE tunnel. The flow-control figures
// are Istio ztunnel's (src/config.rs: DEFAULT_POOL/window sizes): a 4 MiB stream window lets one
// tunnel fill a ~1 Gbit/s × 30 ms path; a 16 MiB connection window lets four do so at once
// before they share; 1 MiB frames cut per-frame overhead on bulk transfers.
import type { ClientSessionOptions, Http2Session, SecureServerSessionOptions, Settings } from 'node:http2';
import { HboneSessionError } from './errors.ts';

const MiB = 1024 * 1024;

export const STREAM_WINDOW = 4 * MiB;
export const CONNECTION_WINDOW = 16 * MiB;
export const MAX_FRAME_SIZE = 1 * MiB;
/** Streams per HTTP/2 connection: ztunnel's pool cap, and what the server advertises. */
export const MAX_STREAMS = 100;
/** ztunnel pings pooled connections every 10 s. */
export const PING_INTERVAL_MS = 10_000;
/** A PING unanswered for this long means the peer or the path is gone. */
export const PING_TIMEOUT_MS = 20_000;

export const H2_SETTINGS: Settings = Object.freeze({
  initialWindowSize: STREAM_WINDOW,
  maxFrameSize: MAX_FRAME_SIZE,
  maxConcurrentStreams: MAX_STREAMS,
  enablePush: false,
});

// Node caps what an HTTP/2 session may hold in nghttp2 and in queued writes at 10 MB by default
// and answers ENHANCE_YOUR_CALM beyond it; a full connection window (16 MiB) in flight plus
// headers for 100 streams must fit, so allow 64 MB.
const MAX_SESSION_MEMORY_MB = 64;

export const H2_SESSION_OPTIONS = Object.freeze({
  settings: H2_SETTINGS,
  maxSessionMemory: MAX_SESSION_MEMORY_MB,
  // CONNECT headers are tiny; 8 KiB of header list and 64 pairs is generous.
  maxHeaderListPairs: 64,
  maxSendHeaderBlockLength: 8192,
  peerMaxConcurrentStreams: MAX_STREAMS,
}) satisfies ClientSessionOptions & SecureServerSessionOptions;

/** Raises the connection-level receive window (RFC 9113 §6.9.2: only WINDOW_UPDATE can). */
export function widenConnectionWindow(session: Http2Session): void {
  try {
    session.setLocalWindowSize(CONNECTION_WINDOW);
  } catch {
    // The session died before it was set up; its 'close' handler deals with that.
  }
}

/**
 * PINGs `session` every `intervalMs`; destroys it with a HboneSessionError if one goes unanswered
 * for `timeoutMs`. Returns a stop function; also stops when the session closes.
 */
export function keepalive(session: Http2Session, peer: string, intervalMs: number, timeoutMs: number): () => void {
  let outstanding: NodeJS.Timeout | undefined;
  const tick = (): void => {
    if (outstanding || session.destroyed || session.closed) return;
    outstanding = setTimeout(() => {
      session.destroy(new HboneSessionError(`no HTTP/2 PING reply from ${peer} within ${timeoutMs} ms — the peer is overloaded or the path to it is down`));
    }, timeoutMs);
    outstanding.unref();
    try {
      session.ping((err) => {
        clearTimeout(outstanding);
        outstanding = undefined;
        void err; // a failed ping means the session is closing; its own handlers report that
      });
    } catch {
      clearTimeout(outstanding);
      outstanding = undefined;
    }
  };
  const timer = setInterval(tick, intervalMs);
  timer.unref();
  const stop = (): void => {
    clearInterval(timer);
    clearTimeout(outstanding);
  };
  session.once('close', stop);
  return stop;
}
