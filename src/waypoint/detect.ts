// Which protocol a tunnelled stream speaks, from its first bytes: the HTTP/2 connection preface
// (h2c with prior knowledge, RFC 9113 §3.4 — gRPC included), an HTTP/1.x request line, or
// anything else (TCP, policed at L4 only), as Envoy's http_inspector tells them apart for Istio.
// A common method decides at once (a malformed request after it then gets a 400 from the
// parser); any other method token counts only with a whole "METHOD target HTTP/1.x" line, so a
// text protocol that starts with a word and a space is not taken for HTTP.
import type { Duplex } from 'node:stream';

export type Detected = 'http1' | 'http2' | 'tcp';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
// RFC 9110 §9.3 and PATCH (RFC 5789): nearly every request starts with one of these.
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'].map((m) => Buffer.from(`${m} `, 'latin1'));
// RFC 9112 §3: method (a token) SP request-target SP HTTP-version CRLF.
const REQUEST_LINE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+ [^\s]+ HTTP\/1\.[01]\r$/;
// A request line can be long (a query string), but one longer than this is not worth waiting for.
const MAX_LINE = 8192;
const TOKEN_CHARS = /^[!#$%&'*+.^_`|~0-9A-Za-z-]*$/;

/** The protocol of `head`, or undefined while more bytes could still change the answer. */
export function classify(head: Buffer): Detected | undefined {
  const n = Math.min(head.length, PREFACE.length);
  if (head.subarray(0, n).equals(PREFACE.subarray(0, n))) return head.length >= PREFACE.length ? 'http2' : undefined;
  for (const m of METHODS) {
    if (head.length >= m.length && head.subarray(0, m.length).equals(m)) return 'http1';
  }
  const eol = head.indexOf(0x0a);
  if (eol >= 0) return REQUEST_LINE.test(head.toString('latin1', 0, eol)) ? 'http1' : 'tcp';
  // No whole line yet: keep reading while it can still become a request line.
  const sp = head.indexOf(0x20);
  const method = head.toString('latin1', 0, sp < 0 ? head.length : sp);
  return head.length < MAX_LINE && method.length > 0 && TOKEN_CHARS.test(method) ? undefined : 'tcp';
}

/**
 * Reads until the protocol is known and puts the bytes back (unshift), so the parser that takes
 * the stream sees them. A client that says nothing for `timeoutMs` (a server-first protocol) is
 * TCP. `head` is returned only when the stream ended before a decision and could not take the
 * bytes back: the caller forwards them itself.
 */
export function detect(stream: Duplex, timeoutMs: number): Promise<{ protocol: Detected; head: Buffer | undefined }> {
  return new Promise((resolve) => {
    let head = Buffer.alloc(0);
    const finish = (protocol: Detected, unread: boolean): void => {
      clearTimeout(timer);
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      stream.off('close', onEnd);
      if (unread && head.length > 0) stream.unshift(head);
      resolve({ protocol, head: unread ? undefined : head });
    };
    const onReadable = (): void => {
      // Stop at the decision: reading on to EOF would schedule 'end', after which no unshift.
      for (let chunk: Buffer | null; (chunk = stream.read() as Buffer | null) !== null; ) {
        head = Buffer.concat([head, chunk]);
        const p = classify(head);
        if (p) return finish(p, true);
      }
    };
    const onEnd = (): void => finish('tcp', false);
    const timer = setTimeout(() => finish('tcp', true), timeoutMs);
    stream.on('readable', onReadable);
    stream.once('end', onEnd);
    stream.once('close', onEnd);
  });
}
