// What only a CA needs: reading CSRs and issuing certificates with @peculiar/x509. A separate face
// from src/tls/index.ts on purpose: that library, with tsyringe and the reflect-metadata polyfill,
// costs ~270 ms and ~20 MB to load, and ztunnel and the waypoint never issue anything.
import { createPublicKey } from 'node:crypto';
import { TlsError } from './errors.ts';
import { publicKeyFingerprint } from './keys.ts';
import { x509 } from './x509.ts';

export { x509 };

function keyDetails(spki: ArrayBuffer): CsrInfo['key'] {
  try {
    const k = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
    const d = k.asymmetricKeyDetails ?? {};
    return { type: k.asymmetricKeyType ?? 'unknown', ...(d.namedCurve ? { curve: d.namedCurve } : {}), ...(d.modulusLength ? { bits: d.modulusLength } : {}) };
  } catch {
    return { type: 'unknown' };
  }
}

/** URI, DNS and IP subject alternative names of a SAN extension. */
export function sansOf(ext: x509.SubjectAlternativeNameExtension | null | undefined): {
  uris: string[];
  dnsNames: string[];
  ipAddresses: string[];
} {
  const uris: string[] = [];
  const dnsNames: string[] = [];
  const ipAddresses: string[] = [];
  for (const n of ext?.names.items ?? []) {
    if (n.type === 'url') uris.push(n.value);
    else if (n.type === 'dns') dnsNames.push(n.value);
    else if (n.type === 'ip') ipAddresses.push(n.value);
  }
  return { uris, dnsNames, ipAddresses };
}

const SAN_OID = '2.5.29.17'; // id-ce-subjectAltName, RFC 5280 §4.2.1.6

export interface CsrInfo {
  readonly uris: readonly string[];
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
  /** Number of SAN entries of any type (URI, DNS, IP, email, ...). */
  readonly sanCount: number;
  readonly subject: string;
  /** The requester's public key, to put in the certificate. */
  readonly publicKey: x509.PublicKey;
  readonly publicKeyFingerprint: string;
  /** The key's type and size as Node's crypto reads it: 'ec' with its curve, 'rsa' with its bits, ... */
  readonly key: { readonly type: string; readonly curve?: string; readonly bits?: number };
}

/** Parses a PEM CSR and checks its self-signature (proof of possession of the key). */
export async function parseCsr(pem: string): Promise<CsrInfo> {
  if (typeof pem !== 'string' || !pem.includes('-----BEGIN CERTIFICATE REQUEST-----')) {
    throw new TlsError('MESH_ERR_CSR', 'the CSR is not a PEM "CERTIFICATE REQUEST" block');
  }
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(pem);
    void csr.publicKey.algorithm;
  } catch (e) {
    throw new TlsError('MESH_ERR_CSR', `the CSR cannot be parsed as PKCS#10: ${(e as Error).message}`, e);
  }
  let ok: boolean;
  try {
    ok = await csr.verify();
  } catch (e) {
    throw new TlsError('MESH_ERR_CSR', `the CSR's signature cannot be checked (unsupported key or signature algorithm?): ${(e as Error).message}`, e);
  }
  if (!ok) throw new TlsError('MESH_ERR_CSR', "the CSR's signature does not verify with its own public key");
  const sanExts = csr.extensions.filter((e) => e.type === SAN_OID);
  if (sanExts.length > 1) throw new TlsError('MESH_ERR_CSR', 'the CSR has more than one subjectAltName extension');
  const ext = sanExts[0] ? new x509.SubjectAlternativeNameExtension(sanExts[0].rawData) : undefined;
  const sans = sansOf(ext);
  return Object.freeze({
    ...sans,
    sanCount: ext?.names.items.length ?? 0,
    subject: csr.subject,
    publicKey: csr.publicKey,
    publicKeyFingerprint: publicKeyFingerprint(csr.publicKey.rawData),
    key: keyDetails(csr.publicKey.rawData),
  });
}
