// SPIFFE identities as the mesh uses them: spiffe://<trust-domain>/ns/<namespace>/sa/<sa>
// (Istio's form). Syntax per the SPIFFE ID spec (spiffe/spiffe standards/SPIFFE-ID.md §2):
// trust domain of [a-z0-9._-], path segments of [A-Za-z0-9._-], no query, fragment, port or
// userinfo, at most 2048 bytes; plus Kubernetes' own name rules for the namespace (a DNS-1123
// label) and the service account (a DNS-1123 subdomain).
import { IdentityError } from './errors.ts';

export interface SpiffeId {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

const MAX_URI = 2048;
const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Throws unless `td` is a valid trust domain name. */
export function validateTrustDomain(td: string): string {
  if (!td) throw new IdentityError('MESH_ERR_TRUST_DOMAIN', 'the trust domain is empty; set it (e.g. "cluster.local")');
  if (td.length > 255 || !TRUST_DOMAIN.test(td)) {
    throw new IdentityError(
      'MESH_ERR_TRUST_DOMAIN',
      `trust domain "${td}" is invalid: only lowercase letters, digits, ".", "-" and "_" are allowed (SPIFFE ID spec §2.1)`,
    );
  }
  return td;
}

/** Builds a validated identity. */
export function spiffeId(trustDomain: string, namespace: string, serviceAccount: string): SpiffeId {
  validateTrustDomain(trustDomain);
  if (namespace.length > 63 || !DNS1123_LABEL.test(namespace)) {
    throw new IdentityError('MESH_ERR_SPIFFE_ID', `namespace "${namespace}" is not a valid Kubernetes namespace name (DNS-1123 label)`);
  }
  if (serviceAccount.length > 253 || !DNS1123_SUBDOMAIN.test(serviceAccount)) {
    throw new IdentityError(
      'MESH_ERR_SPIFFE_ID',
      `service account "${serviceAccount}" is not a valid Kubernetes service account name (DNS-1123 subdomain)`,
    );
  }
  return Object.freeze({ trustDomain, namespace, serviceAccount });
}

/** The URI form, e.g. spiffe://cluster.local/ns/shop/sa/cart. */
export function formatSpiffeId(id: SpiffeId): string {
  return `spiffe://${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

/** Parses a URI into an identity; the error says which part is wrong. */
export function parseSpiffeId(uri: string): SpiffeId {
  const bad = (why: string): IdentityError =>
    new IdentityError('MESH_ERR_SPIFFE_ID', `"${clip(uri)}" is not a mesh identity: ${why} (expected spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>)`);
  if (typeof uri !== 'string' || !uri) throw bad('it is empty');
  if (uri.length > MAX_URI) throw bad(`it is longer than ${MAX_URI} bytes`);
  if (!uri.startsWith('spiffe://')) throw bad('the scheme must be "spiffe://" (lowercase)');
  if (/[?#]/.test(uri)) throw bad('a query or fragment is not allowed');
  const rest = uri.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  const td = slash < 0 ? rest : rest.slice(0, slash);
  if (!td) throw bad('the trust domain is missing');
  if (/[@:]/.test(td)) throw bad('the trust domain must not carry a port or user info');
  if (!TRUST_DOMAIN.test(td)) throw bad(`trust domain "${td}" has characters outside [a-z0-9._-]`);
  if (slash < 0) throw bad('the path is missing');
  const segments = rest.slice(slash + 1).split('/');
  for (const s of segments) {
    if (!s) throw bad('the path has an empty segment');
    if (s === '.' || s === '..') throw bad('the path has a "." or ".." segment');
    if (!/^[A-Za-z0-9._-]+$/.test(s)) throw bad(`path segment "${s}" has characters outside [A-Za-z0-9._-]`);
  }
  if (segments.length !== 4 || segments[0] !== 'ns' || segments[2] !== 'sa') {
    throw bad('the path must be exactly /ns/<namespace>/sa/<service-account>');
  }
  try {
    return spiffeId(td, segments[1]!, segments[3]!);
  } catch (e) {
    throw bad((e as Error).message);
  }
}

/** Whether `uri` parses as a mesh identity. */
export function isSpiffeId(uri: string): boolean {
  try {
    parseSpiffeId(uri);
    return true;
  } catch {
    return false;
  }
}

/** Throws MESH_ERR_TRUST_DOMAIN unless `id` is in one of the accepted trust domains. */
export function checkTrustDomain(id: SpiffeId, accepted: string | Iterable<string>): void {
  const set = typeof accepted === 'string' ? [accepted] : [...accepted];
  if (set.includes(id.trustDomain)) return;
  throw new IdentityError(
    'MESH_ERR_TRUST_DOMAIN',
    `identity ${formatSpiffeId(id)} is in trust domain "${id.trustDomain}", but only ${set.map((t) => `"${t}"`).join(', ') || '(none)'} ${set.length === 1 ? 'is' : 'are'} accepted — check the mesh's trust domain setting on both sides`,
  );
}

export function sameSpiffeId(a: SpiffeId, b: SpiffeId): boolean {
  return a.trustDomain === b.trustDomain && a.namespace === b.namespace && a.serviceAccount === b.serviceAccount;
}

function clip(s: string): string {
  return typeof s === 'string' && s.length > 120 ? `${s.slice(0, 117)}...` : String(s);
}
