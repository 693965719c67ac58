// Who is calling: a bearer token checked with the Kubernetes TokenReview API.
import { createHash } from 'node:crypto';
import { logger } from '../../common/log.ts';
import { CaError, unauthenticated } from './errors.ts';
import type { TokenReviewer } from './kube.ts';

const log = logger('ca');

/** An authenticated caller, as the API server describes it. */
export interface Caller {
  /** e.g. system:serviceaccount:mesh-system:mesh-node */
  readonly username: string;
  /** TokenReview user.extra: authentication.kubernetes.io/{node-name,pod-name,pod-uid,...}. */
  readonly extra: Readonly<Record<string, readonly string[]>>;
}

/** Contract: resolves the caller of a bearer token, or rejects with MESH_ERR_CA_UNAUTHENTICATED. */
export interface Authenticator {
  authenticate(token: string): Promise<Caller>;
}

/** How long an accepted token is taken without asking again: the API server's own cache of
 * token authentications (tokenSuccessCacheTTL, 10 s). Refusals are never kept. */
const TOKEN_CACHE_TTL_MS = 10_000;
const TOKEN_CACHE_MAX = 4096;

/** The `exp` claim of a JWT, in ms — read, not verified (TokenReview verifies): it only shortens the cache. */
function expiryOf(token: string): number | undefined {
  try {
    const exp = (JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { exp?: unknown }).exp;
    return typeof exp === 'number' ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Authenticates service-account tokens through TokenReview (authentication.k8s.io/v1). A token
 * accepted less than `cacheTtlMs` ago (and not expired) is not reviewed again, and requests that
 * arrive together share one review: a restarted ztunnel asks for its node certificate and its
 * pods' at once, with one token, and each review was a round trip to the API server on that
 * path (ARCHITECTURE.md, "Crash"). Keyed by the token's SHA-256; a refusal or a failed review is
 * forgotten as soon as it is answered.
 */
export class TokenReviewAuthenticator implements Authenticator {
  private readonly reviewer: TokenReviewer;
  private readonly audiences: readonly string[] | undefined;
  private readonly ttlMs: number;
  private readonly cache = new Map<string, { caller: Promise<Caller>; until: number }>();

  /** `audiences`: the token must be minted for one of them (empty: the API server's default).
   * `cacheTtlMs`: how long an accepted token stays accepted without a review (0: review every time). */
  constructor(reviewer: TokenReviewer, opts: { audiences?: readonly string[]; cacheTtlMs?: number } = {}) {
    this.reviewer = reviewer;
    this.audiences = opts.audiences?.length ? opts.audiences : undefined;
    this.ttlMs = opts.cacheTtlMs ?? TOKEN_CACHE_TTL_MS;
  }

  authenticate(token: string): Promise<Caller> {
    if (this.ttlMs <= 0) return this.review(token);
    const key = createHash('sha256').update(token).digest('base64');
    const now = Date.now();
    const hit = this.cache.get(key);
    if (hit && hit.until > now) return hit.caller;
    if (hit) this.cache.delete(key);
    if (this.cache.size >= TOKEN_CACHE_MAX) {
      for (const [k, e] of this.cache) if (e.until <= now) this.cache.delete(k);
      // Still full: the oldest entries go (a Map iterates in insertion order).
      for (const k of this.cache.keys()) {
        if (this.cache.size < TOKEN_CACHE_MAX) break;
        this.cache.delete(k);
      }
    }
    const exp = expiryOf(token);
    const entry = { caller: this.review(token), until: Math.min(now + this.ttlMs, exp ?? Infinity) };
    this.cache.set(key, entry);
    entry.caller.catch(() => {
      if (this.cache.get(key) === entry) this.cache.delete(key);
    });
    return entry.caller;
  }

  private async review(token: string): Promise<Caller> {
    let r;
    try {
      r = await this.reviewer.reviewToken(token, this.audiences);
    } catch (e) {
      // The API server is unreachable: not the caller's fault, so UNAVAILABLE (retry), not UNAUTHENTICATED.
      log.warn({ err: (e as Error).message }, 'TokenReview failed');
      throw e instanceof CaError ? e : new CaError('MESH_ERR_CA_KUBE', `TokenReview failed: ${(e as Error).message}`, e);
    }
    if (!r.authenticated || !r.user?.username) {
      const aud = this.audiences ? ` for audience ${this.audiences.join(', ')}` : '';
      throw unauthenticated(`the bearer token was rejected by the Kubernetes API server${aud}: ${r.error || 'not authenticated'} — is it a current service-account token?`);
    }
    // authentication.k8s.io/v1: a client that sets spec.audiences must check that status.audiences
    // holds one of them; an authenticator that ignores audiences answers without it, and the
    // token was then only checked against the API server's own audience.
    if (this.audiences && !(r.audiences ?? []).some((a) => this.audiences!.includes(a))) {
      throw unauthenticated(
        `the bearer token is not valid for audience ${this.audiences.join(', ')} (the API server confirmed ${JSON.stringify(r.audiences ?? [])}) — mount a projected token with audience ${this.audiences[0]}`,
      );
    }
    return Object.freeze({ username: r.user.username, extra: r.user.extra ?? {} });
  }
}

/** The token of an `authorization: Bearer <token>` value, or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return m?.[1];
}
