// Bearer tokens. The admin token is a random string in dataDir/auth/admin-token. Service-account
// tokens are JWTs (RFC 7519) signed HS256 with a key in dataDir/auth/sa-signing-key, carrying the
// same claims as a real bound token (iss, sub, aud, exp, kubernetes.io.{namespace, serviceaccount,
// pod}); verification also requires that the ServiceAccount (and a bound pod) still exist with the
// same uid, so deleting one revokes its tokens — as the real legacy-token/bound-token checks do.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from './files.ts';

export const ISSUER = 'https://kubernetes.default.svc.cluster.local';
export const DEFAULT_AUDIENCE = 'https://kubernetes.default.svc.cluster.local';
export const ADMIN_USER = { username: 'mesh:admin', uid: 'mesh-admin', groups: ['system:masters', 'system:authenticated'] };

export interface UserInfo {
  username: string;
  uid: string;
  groups: string[];
  extra?: Record<string, string[]>;
}

export interface SaClaims {
  iss: string;
  sub: string;
  aud: string[];
  exp: number;
  iat: number;
  nbf: number;
  jti: string;
  'kubernetes.io': {
    namespace: string;
    serviceaccount: { name: string; uid: string };
    pod?: { name: string; uid: string };
  };
}

/** Looks up the live uid of an object, to tie tokens to the objects that exist now. */
export type UidLookup = (resource: 'serviceaccounts' | 'pods', namespace: string, name: string) => string | undefined;

export class Tokens {
  readonly adminToken: string;
  private readonly key: Buffer;

  private constructor(adminToken: string, key: Buffer) {
    this.adminToken = adminToken;
    this.key = key;
  }

  static async open(dataDir: string): Promise<Tokens> {
    const dir = join(dataDir, 'auth');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const admin = await readOrCreate(join(dir, 'admin-token'), () => randomBytes(32).toString('base64url'));
    const key = await readOrCreate(join(dir, 'sa-signing-key'), () => randomBytes(32).toString('base64'));
    return new Tokens(admin.trim(), Buffer.from(key.trim(), 'base64'));
  }

  issue(sa: { namespace: string; name: string; uid: string }, opts: { audiences?: string[]; expirationSeconds?: number; pod?: { name: string; uid: string } } = {}): { token: string; expiration: Date } {
    const now = Math.floor(Date.now() / 1000);
    const exp = now + (opts.expirationSeconds ?? 3600);
    const claims: SaClaims = {
      iss: ISSUER,
      sub: `system:serviceaccount:${sa.namespace}:${sa.name}`,
      aud: opts.audiences?.length ? opts.audiences : [DEFAULT_AUDIENCE],
      exp,
      iat: now,
      nbf: now,
      jti: randomBytes(16).toString('hex'),
      'kubernetes.io': { namespace: sa.namespace, serviceaccount: { name: sa.name, uid: sa.uid }, ...(opts.pod ? { pod: opts.pod } : {}) },
    };
    const head = b64json({ alg: 'HS256', typ: 'JWT', kid: 'mesh-local' });
    const body = b64json(claims);
    return { token: `${head}.${body}.${this.sign(`${head}.${body}`)}`, expiration: new Date(exp * 1000) };
  }

  /**
   * The user a bearer token authenticates, or undefined. `audiences`, when given, must intersect
   * the token's (TokenReview spec.audiences); the admin token has no audience restriction.
   */
  authenticate(token: string, lookup: UidLookup, audiences?: string[]): { user: UserInfo; audiences: string[] } | undefined {
    if (safeEqual(token, this.adminToken)) return { user: ADMIN_USER, audiences: audiences ?? [] };
    const parts = token.split('.');
    if (parts.length !== 3) return undefined;
    const [head, body, sig] = parts as [string, string, string];
    if (!safeEqual(sig, this.sign(`${head}.${body}`))) return undefined;
    let claims: SaClaims;
    try {
      claims = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as SaClaims;
    } catch {
      return undefined;
    }
    const now = Math.floor(Date.now() / 1000);
    if (claims.exp <= now || claims.nbf > now + 60) return undefined;
    const k = claims['kubernetes.io'];
    if (!k?.serviceaccount) return undefined;
    if (lookup('serviceaccounts', k.namespace, k.serviceaccount.name) !== k.serviceaccount.uid) return undefined;
    if (k.pod && lookup('pods', k.namespace, k.pod.name) !== k.pod.uid) return undefined;
    const wanted = audiences?.length ? audiences : [DEFAULT_AUDIENCE];
    const matched = wanted.filter((a) => claims.aud.includes(a));
    if (!matched.length && audiences?.length) return undefined;
    const extra: Record<string, string[]> = {};
    if (k.pod) {
      extra['authentication.kubernetes.io/pod-name'] = [k.pod.name];
      extra['authentication.kubernetes.io/pod-uid'] = [k.pod.uid];
    }
    extra['authentication.kubernetes.io/credential-id'] = [`JTI=${claims.jti}`];
    return {
      user: {
        username: claims.sub,
        uid: k.serviceaccount.uid,
        groups: ['system:serviceaccounts', `system:serviceaccounts:${k.namespace}`, 'system:authenticated'],
        extra,
      },
      audiences: matched.length ? matched : claims.aud,
    };
  }

  private sign(input: string): string {
    return createHmac('sha256', this.key).update(input).digest('base64url');
  }
}

const b64json = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

async function readOrCreate(path: string, make: () => string): Promise<string> {
  const existing = await readFile(path, 'utf8').catch(() => undefined);
  if (existing?.trim()) return existing;
  const v = make();
  await writeFileAtomic(path, `${v}\n`, 0o600);
  return v;
}
