// Certificates per identity, kept fresh (ztunnel's SecretManager): the first request fetches, the
// refresh runs at half-life, a failure is retried with exponential backoff capped at 150 s
// (ztunnel's cap), and the current certificate keeps serving until it expires — a CA outage
// shorter than half a lifetime is invisible to traffic.
import { EventEmitter } from 'node:events';
import { logger } from '../common/log.ts';
import { fingerprintOf } from '../tls/index.ts';
import type { CertificateProvider, WorkloadCertificate } from './client.ts';
import { CaClientError } from './errors.ts';
import { formatSpiffeId, type SpiffeId } from './spiffe.ts';

const log = logger('identity');

export interface SecretManagerOptions {
  /** Where certificates come from (a CertificateClient, or a fake in tests). */
  readonly provider: CertificateProvider;
  /** Fraction of the remaining lifetime after which to refresh (default 0.5: half-life). */
  readonly refreshFraction?: number;
  /** First retry delay after a failure (default 1 s), doubled per failure. */
  readonly initialBackoffMs?: number;
  /** Retry delay cap (default 150 s, ztunnel's). */
  readonly maxBackoffMs?: number;
}

export type CertState = 'fetching' | 'ready' | 'refreshing' | 'failed';

/** One identity's certificate state, for the admin endpoint and `meshctl ztunnel-config certificate`. */
export interface CertStatus {
  readonly identity: string;
  readonly state: CertState;
  readonly serial: string | undefined;
  readonly notBefore: Date | undefined;
  readonly notAfter: Date | undefined;
  readonly nextRefresh: Date | undefined;
  readonly failures: number;
  readonly lastError: string | undefined;
}

export interface SecretManagerEvents {
  /** A new certificate for an identity (first one or a refresh). */
  certificate: [identity: SpiffeId, cert: WorkloadCertificate];
  /** The trust bundle changed (a root added or retired at the CA). */
  trustBundle: [roots: readonly string[]];
  /** A certificate expired with no replacement: new connections for it will fail. */
  expired: [identity: SpiffeId];
  /** A fetch failed; it will be retried. (Not 'error', which EventEmitter throws when unheard.) */
  failure: [identity: SpiffeId, error: Error];
}

interface Entry {
  identity: SpiffeId;
  current: WorkloadCertificate | undefined;
  inflight: Promise<WorkloadCertificate> | undefined;
  timer: NodeJS.Timeout | undefined;
  expiryTimer: NodeJS.Timeout | undefined;
  nextRefresh: Date | undefined;
  failures: number;
  lastError: Error | undefined;
}

const MAX_TIMER = 2 ** 31 - 1;

export class SecretManager extends EventEmitter<SecretManagerEvents> {
  private readonly provider: CertificateProvider;
  private readonly fraction: number;
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly entries = new Map<string, Entry>();
  private bundle: readonly string[] = [];
  private bundleKey = '';
  private closed = false;

  constructor(opts: SecretManagerOptions) {
    super();
    this.provider = opts.provider;
    this.fraction = opts.refreshFraction ?? 0.5;
    this.initialBackoffMs = opts.initialBackoffMs ?? 1000;
    this.maxBackoffMs = opts.maxBackoffMs ?? 150_000;
  }

  /** The current trust bundle, from the CA's latest answer. */
  get trustBundle(): readonly string[] {
    return this.bundle;
  }

  /**
   * A valid certificate for `identity`: the cached one, or the one being fetched. Rejects if the
   * fetch fails and nothing valid is cached, and while backing off from such a failure (the
   * manager keeps retrying in the background).
   */
  fetchCertificate(identity: SpiffeId): Promise<WorkloadCertificate> {
    if (this.closed) return Promise.reject(new CaClientError('MESH_ERR_CA_REQUEST', 'the secret manager is closed'));
    const key = formatSpiffeId(identity);
    let e = this.entries.get(key);
    if (!e) {
      e = { identity, current: undefined, inflight: undefined, timer: undefined, expiryTimer: undefined, nextRefresh: undefined, failures: 0, lastError: undefined };
      this.entries.set(key, e);
    }
    if (e.current && e.current.leaf.notAfter.getTime() > Date.now()) return Promise.resolve(e.current);
    if (e.inflight) return e.inflight;
    // Backing off after a failure: answer with that failure rather than hammer the CA once per
    // new connection; the scheduled retry still runs.
    if (e.timer && e.lastError) return Promise.reject(e.lastError);
    return this.attempt(e);
  }

  /** The cached certificate if it is valid now; never fetches. */
  cached(identity: SpiffeId): WorkloadCertificate | undefined {
    const c = this.entries.get(formatSpiffeId(identity))?.current;
    return c && c.leaf.notAfter.getTime() > Date.now() ? c : undefined;
  }

  /** Stops refreshing `identity` (its last pod left the node) and drops its certificate. */
  forget(identity: SpiffeId): void {
    const key = formatSpiffeId(identity);
    const e = this.entries.get(key);
    if (!e) return;
    clearTimeout(e.timer);
    clearTimeout(e.expiryTimer);
    this.entries.delete(key);
  }

  status(): CertStatus[] {
    return [...this.entries.entries()].map(([identity, e]) => ({
      identity,
      state: e.inflight ? (e.current ? 'refreshing' : 'fetching') : e.current ? 'ready' : 'failed',
      serial: e.current?.leaf.serial,
      notBefore: e.current?.leaf.notBefore,
      notAfter: e.current?.leaf.notAfter,
      nextRefresh: e.nextRefresh,
      failures: e.failures,
      lastError: e.lastError?.message,
    }));
  }

  close(): void {
    this.closed = true;
    for (const e of this.entries.values()) {
      clearTimeout(e.timer);
      clearTimeout(e.expiryTimer);
    }
    this.entries.clear();
  }

  private attempt(e: Entry): Promise<WorkloadCertificate> {
    clearTimeout(e.timer);
    e.timer = undefined;
    e.nextRefresh = undefined;
    const p = this.provider.fetch(e.identity).then(
      (cert) => {
        e.inflight = undefined;
        if (this.entries.get(formatSpiffeId(e.identity)) !== e) return cert; // forgotten meanwhile
        this.installed(e, cert);
        return cert;
      },
      (err: Error) => {
        e.inflight = undefined;
        if (this.entries.get(formatSpiffeId(e.identity)) === e) this.failed(e, err);
        throw err;
      },
    );
    e.inflight = p;
    // The rejection is handled by whoever awaits fetchCertificate; background refreshes have no
    // awaiter, and their failure is already logged and rescheduled.
    p.catch(() => undefined);
    return p;
  }

  private installed(e: Entry, cert: WorkloadCertificate): void {
    e.current = cert;
    e.failures = 0;
    e.lastError = undefined;
    const start = Math.max(cert.leaf.notBefore.getTime(), cert.receivedAt.getTime());
    const at = start + (cert.leaf.notAfter.getTime() - start) * this.fraction;
    this.schedule(e, at - Date.now());
    clearTimeout(e.expiryTimer);
    e.expiryTimer = this.timer(() => this.expire(e, cert), cert.leaf.notAfter.getTime() - Date.now());
    log.debug({ identity: formatSpiffeId(e.identity), serial: cert.leaf.serial, notAfter: cert.leaf.notAfter, refreshAt: new Date(at) }, 'certificate installed');
    this.setBundle(cert.roots);
    this.emit('certificate', e.identity, cert);
  }

  private failed(e: Entry, err: Error): void {
    e.failures++;
    e.lastError = err;
    const base = Math.min(this.initialBackoffMs * 2 ** (e.failures - 1), this.maxBackoffMs);
    // ±10 % jitter so the nodes of a cluster do not retry in lockstep after a CA outage.
    const delay = Math.min(this.maxBackoffMs, base * (0.9 + Math.random() * 0.2));
    this.schedule(e, delay);
    log.warn(
      { identity: formatSpiffeId(e.identity), failures: e.failures, retryInMs: Math.round(delay), validUntil: e.current?.leaf.notAfter, err: err.message },
      e.current ? 'certificate refresh failed; keeping the current certificate' : 'certificate fetch failed',
    );
    this.emit('failure', e.identity, err);
  }

  private expire(e: Entry, cert: WorkloadCertificate): void {
    if (e.current !== cert) return;
    // Node timers may fire a millisecond early; the certificate is valid until notAfter.
    const left = cert.leaf.notAfter.getTime() - Date.now();
    if (left > 0) {
      e.expiryTimer = this.timer(() => this.expire(e, cert), left + 1);
      return;
    }
    e.current = undefined;
    log.warn({ identity: formatSpiffeId(e.identity), serial: cert.leaf.serial }, 'certificate expired without a replacement');
    this.emit('expired', e.identity);
  }

  private schedule(e: Entry, delayMs: number): void {
    clearTimeout(e.timer);
    e.nextRefresh = new Date(Date.now() + Math.max(0, delayMs));
    e.timer = this.timer(() => {
      e.timer = undefined;
      if (!this.closed && !e.inflight) void this.attempt(e);
    }, delayMs);
  }

  private timer(fn: () => void, delayMs: number): NodeJS.Timeout {
    const t = setTimeout(fn, Math.min(MAX_TIMER, Math.max(0, delayMs)));
    t.unref();
    return t;
  }

  private setBundle(roots: readonly string[]): void {
    const key = roots.map(fingerprintOf).sort().join(',');
    if (key === this.bundleKey) return;
    this.bundleKey = key;
    this.bundle = roots;
    this.emit('trustBundle', roots);
  }
}
