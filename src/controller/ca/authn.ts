// Who is calling: a bearer token checked with the Kubernetes TokenReview API.
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

/** Authenticates service-account tokens through TokenReview (authentication.k8s.io/v1). */
export class TokenReviewAuthenticator implements Authenticator {
  private readonly reviewer: TokenReviewer;
  private readonly audiences: readonly string[] | undefined;

  /** `audiences`: the token must be minted for one of them (empty: the API server's default). */
  constructor(reviewer: TokenReviewer, opts: { audiences?: readonly string[] } = {}) {
    this.reviewer = reviewer;
    this.audiences = opts.audiences?.length ? opts.audiences : undefined;
  }

  async authenticate(token: string): Promise<Caller> {
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
