// Certificate and PEM helpers: what ztunnel, the controller and meshctl need to read from a cert.
import { X509Certificate as NodeX509, createHash } from 'node:crypto';
import { TlsError } from './errors.ts';

export interface CertInfo {
  readonly pem: string;
  /** Serial number, lowercase hex without leading zeros. */
  readonly serial: string;
  readonly subject: string;
  readonly issuer: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly uris: readonly string[];
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
  readonly isCA: boolean;
  /** SHA-256 of the DER, lowercase hex: identifies a certificate in bundles and logs. */
  readonly fingerprint: string;
  /** SHA-256 of the SubjectPublicKeyInfo, lowercase hex: matches a cert to its CSR or key. */
  readonly publicKeyFingerprint: string;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

/** The CERTIFICATE blocks of a PEM bundle, each normalised; throws if there are none. */
export function splitPemBundle(text: string, what = 'PEM bundle'): string[] {
  if (typeof text !== 'string') throw new TlsError('MESH_ERR_PEM', `${what} is not text`);
  const out: string[] = [];
  for (const m of text.matchAll(PEM_BLOCK)) {
    if (m[1] !== 'CERTIFICATE') continue;
    const body = m[2]!.replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]+=*$/.test(body)) throw new TlsError('MESH_ERR_PEM', `${what} has a CERTIFICATE block that is not base64`);
    out.push(`-----BEGIN CERTIFICATE-----\n${body.replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END CERTIFICATE-----\n`);
  }
  if (!out.length) throw new TlsError('MESH_ERR_PEM', `${what} contains no "-----BEGIN CERTIFICATE-----" block`);
  return out;
}

/** One PEM text from several certificates or bundles. */
export function joinPem(certs: Iterable<string>): string {
  return [...certs].map((c) => (c.endsWith('\n') ? c : `${c}\n`)).join('');
}

/** Certificates of all bundles, de-duplicated by fingerprint, in first-seen order. */
export function mergeBundles(...bundles: (string | readonly string[])[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const b of bundles) {
    for (const pem of typeof b === 'string' ? splitPemBundle(b) : b.flatMap((x) => splitPemBundle(x))) {
      const fp = fingerprintOf(pem);
      if (seen.has(fp)) continue;
      seen.add(fp);
      out.push(pem);
    }
  }
  return out;
}

export function fingerprintOf(pem: string): string {
  return createHash('sha256').update(derOf(pem)).digest('hex');
}

/**
 * Reads a PEM certificate (or DER bytes); errors name the problem. Uses Node's native X.509
 * (≈0.1 ms) rather than the ASN.1 library (≈2 ms): ztunnel reads every peer's certificate.
 */
export function parseCertificate(input: string | Uint8Array, what = 'certificate'): CertInfo {
  let cert: NodeX509;
  try {
    cert = new NodeX509(typeof input === 'string' ? splitPemBundle(input, what)[0]! : input);
  } catch (e) {
    if (e instanceof TlsError) throw e;
    throw new TlsError('MESH_ERR_CERT', `${what} is not a valid X.509 certificate: ${(e as Error).message}`, e);
  }
  const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
  return Object.freeze({
    pem: cert.toString(),
    serial: cert.serialNumber.replace(/^0+(?=.)/, '').toLowerCase(),
    subject: (cert.subject ?? '').replaceAll('\n', ', '),
    issuer: (cert.issuer ?? '').replaceAll('\n', ', '),
    notBefore: cert.validFromDate,
    notAfter: cert.validToDate,
    ...parseAltNames(cert.subjectAltName),
    isCA: cert.ca,
    fingerprint: cert.fingerprint256.replaceAll(':', '').toLowerCase(),
    publicKeyFingerprint: createHash('sha256').update(spki).digest('hex'),
  });
}

/**
 * URI, DNS and IP names from Node's subjectAltName text ("URI:spiffe://a, DNS:b, IP Address:c",
 * also PeerCertificate.subjectaltname). Since CVE-2021-44532 Node writes a value that holds a
 * comma or quote as a JSON string with the comma escaped, so splitting on ", " is safe.
 */
export function parseAltNames(text: string | undefined): { uris: string[]; dnsNames: string[]; ipAddresses: string[] } {
  const uris: string[] = [];
  const dnsNames: string[] = [];
  const ipAddresses: string[] = [];
  for (const entry of text ? text.split(', ') : []) {
    const colon = entry.indexOf(':');
    if (colon < 0) continue;
    const kind = entry.slice(0, colon);
    let value = entry.slice(colon + 1);
    if (value.startsWith('"')) {
      try {
        value = JSON.parse(value) as string;
      } catch {
        // keep the quoted text: it can only fail our checks later, never pass them
      }
    }
    if (kind === 'URI') uris.push(value);
    else if (kind === 'DNS') dnsNames.push(value);
    else if (kind === 'IP Address') ipAddresses.push(value);
  }
  return { uris, dnsNames, ipAddresses };
}

/** Whether `cert` was signed by `issuer` (names chain and the signature verifies). */
export function isIssuedBy(certPem: string, issuerPem: string): boolean {
  const c = new NodeX509(certPem);
  const i = new NodeX509(issuerPem);
  return c.checkIssued(i) && c.verify(i.publicKey);
}

/**
 * Checks that `leaf` chains through `intermediates` to one of `roots` and that every certificate
 * is within its validity at `at`. Returns the root used; throws MESH_ERR_CERT saying where it broke.
 */
export function verifyChain(leaf: string, intermediates: readonly string[], roots: readonly string[], at = new Date()): string {
  const pool = [...intermediates.map((p) => new NodeX509(p)), ...roots.map((p) => new NodeX509(p))];
  const rootSet = new Set(roots.map(fingerprintOf));
  let cur = new NodeX509(leaf);
  for (let depth = 0; depth < 10; depth++) {
    if (at < new Date(cur.validFrom) || at > new Date(cur.validTo)) {
      throw new TlsError('MESH_ERR_CERT', `certificate "${cur.subject || cur.subjectAltName}" is not valid at ${at.toISOString()} (valid ${cur.validFrom} – ${cur.validTo})`);
    }
    if (rootSet.has(fingerprintOf(cur.toString()))) return cur.toString();
    const issuer = pool.find((p) => cur.checkIssued(p) && cur.verify(p.publicKey));
    if (!issuer) {
      throw new TlsError('MESH_ERR_CERT', `no certificate in the chain or trust bundle issued "${cur.subject || cur.subjectAltName}" (issuer "${cur.issuer}") — is the trust bundle current?`);
    }
    cur = issuer;
  }
  throw new TlsError('MESH_ERR_CERT', 'certificate chain is longer than 10');
}

/** The DER bytes of the first PEM block. */
function derOf(pem: string): Uint8Array {
  const m = /-----BEGIN [A-Z0-9 ]+-----([\s\S]*?)-----END /.exec(pem);
  if (!m) throw new TlsError('MESH_ERR_PEM', 'not a PEM block');
  return Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
}
