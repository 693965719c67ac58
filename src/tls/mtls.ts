// Mutual TLS 1.3 with SPIFFE identities. Chains are verified by OpenSSL against our trust bundle
// only (never the system store); the peer's identity is its certificate's single URI SAN
// (X509-SVID spec §2: exactly one URI SAN), compared with what the caller expects — DNS names and
// the hostname are ignored. HBONE sends no SNI, like ztunnel, so the client sets no servername.
import type { PeerCertificate, TLSSocket, ConnectionOptions, TlsOptions } from 'node:tls';
// spiffe.ts directly, not identity/index.ts: the identity client imports tls/, and this keeps
// the module graph acyclic.
import { formatSpiffeId, parseSpiffeId, type SpiffeId } from '../identity/spiffe.ts';
import { joinPem, mergeBundles, parseAltNames } from './cert.ts';
import { TlsError } from './errors.ts';

/** One side's credentials: its key, its chain (leaf first) and the roots it trusts. */
export interface MtlsCredentials {
  /** PEM private key of the leaf. */
  readonly key: string;
  /** Leaf first, then intermediates: PEM strings or one PEM text. */
  readonly certChain: string | readonly string[];
  /** Trust bundle: every root that may sign a peer, several at once during a rotation. */
  readonly roots: string | readonly string[];
}

/**
 * Who may be on the other end. `identities`: the peer must be one of these exactly (a client
 * dialing a workload: the workload's identity plus its service's). `trustDomains`: the peer's
 * identity must be in one of these (a server accepting any workload of the mesh). Both may be set.
 */
export interface PeerPolicy {
  readonly identities?: Iterable<string | SpiffeId>;
  readonly trustDomains?: Iterable<string>;
}

const TLS13 = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' } as const;

function base(creds: MtlsCredentials): { key: string; cert: string; ca: string[] } {
  const chain = typeof creds.certChain === 'string' ? [creds.certChain] : creds.certChain;
  return { key: creds.key, cert: joinPem(mergeBundles(...chain)), ca: mergeBundles(creds.roots) };
}

/**
 * Options for tls.createServer / http2.createSecureServer: TLS 1.3 only, client certificate
 * required and verified against `roots`. Node has no server-side verify hook, so call
 * verifyPeer(socket, policy) on 'secureConnection' before reading from the socket.
 */
export function mtlsServerOptions(creds: MtlsCredentials, opts: { alpn?: string[] } = {}): TlsOptions {
  return {
    ...base(creds),
    ...TLS13,
    requestCert: true,
    rejectUnauthorized: true,
    ...(opts.alpn ? { ALPNProtocols: opts.alpn } : {}),
  };
}

/**
 * Options for tls.connect / http2.connect: TLS 1.3 only, our chain presented, the server's chain
 * verified against `roots` and its URI SAN against `expect` during the handshake.
 */
export function mtlsClientOptions(creds: MtlsCredentials, expect: PeerPolicy, opts: { alpn?: string[] } = {}): ConnectionOptions {
  return {
    ...base(creds),
    ...TLS13,
    rejectUnauthorized: true,
    checkServerIdentity: spiffeCheckServerIdentity(expect),
    ...(opts.alpn ? { ALPNProtocols: opts.alpn } : {}),
  };
}

/** A tls `checkServerIdentity` that checks the SPIFFE identity instead of the hostname. */
export function spiffeCheckServerIdentity(expect: PeerPolicy): (host: string, cert: PeerCertificate) => Error | undefined {
  const compiled = compile(expect);
  return (_host, cert) => {
    try {
      checkIdentity(identityOf(cert), compiled, 'server');
      return undefined;
    } catch (e) {
      return e as Error;
    }
  };
}

/** The verified peer's identity; throws MESH_ERR_PEER_IDENTITY if it presented none usable. */
export function peerSpiffeId(socket: TLSSocket): SpiffeId {
  if (!socket.authorized) {
    throw new TlsError('MESH_ERR_PEER_IDENTITY', `peer certificate was not verified: ${String(socket.authorizationError ?? 'no certificate')}`);
  }
  const cert = socket.getPeerCertificate();
  if (!cert?.raw) throw new TlsError('MESH_ERR_PEER_IDENTITY', 'peer presented no certificate');
  return identityOf(cert);
}

/** Server side: the peer's identity if the policy admits it; throws MESH_ERR_PEER_IDENTITY otherwise. */
export function verifyPeer(socket: TLSSocket, policy: PeerPolicy): SpiffeId {
  const id = peerSpiffeId(socket);
  checkIdentity(id, compile(policy), 'client');
  return id;
}

interface Compiled {
  identities: Set<string> | undefined;
  trustDomains: Set<string> | undefined;
}

function compile(p: PeerPolicy): Compiled {
  return {
    identities: p.identities ? new Set([...p.identities].map((i) => (typeof i === 'string' ? i : formatSpiffeId(i)))) : undefined,
    trustDomains: p.trustDomains ? new Set(p.trustDomains) : undefined,
  };
}

function checkIdentity(id: SpiffeId, p: Compiled, peer: 'server' | 'client'): void {
  const uri = formatSpiffeId(id);
  if (p.trustDomains && !p.trustDomains.has(id.trustDomain)) {
    throw new TlsError(
      'MESH_ERR_PEER_IDENTITY',
      `${peer} identity ${uri} is in trust domain "${id.trustDomain}", expected ${[...p.trustDomains].map((t) => `"${t}"`).join(' or ')}`,
    );
  }
  if (p.identities && !p.identities.has(uri)) {
    throw new TlsError(
      'MESH_ERR_PEER_IDENTITY',
      `${peer} identity ${uri} is not one of the expected identities (${[...p.identities].join(', ') || 'none'}) — the address may belong to another workload now`,
    );
  }
}

// Parsed identities by certificate fingerprint: a pooled peer presents the same cert many times.
const cache = new Map<string, SpiffeId>();
const CACHE_MAX = 1024;

function identityOf(cert: PeerCertificate): SpiffeId {
  const fingerprint = cert.fingerprint256;
  const hit = fingerprint ? cache.get(fingerprint) : undefined;
  if (hit) return hit;
  const { uris } = parseAltNames(cert.subjectaltname);
  if (uris.length !== 1) {
    throw new TlsError('MESH_ERR_PEER_IDENTITY', `peer certificate has ${uris.length} URI SANs, a mesh certificate has exactly one (its SPIFFE identity)`);
  }
  let id: SpiffeId;
  try {
    id = parseSpiffeId(uris[0]!);
  } catch (e) {
    throw new TlsError('MESH_ERR_PEER_IDENTITY', `peer certificate's URI SAN is not a mesh identity: ${(e as Error).message}`, e);
  }
  if (fingerprint) {
    if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value!);
    cache.set(fingerprint, id);
  }
  return id;
}
