// The signing core: turns a checked CSR into a workload certificate, and issues the CA's own
// serving certificate. Knows nothing of gRPC or Kubernetes; server.ts does the checks first.
import { randomBytes } from 'node:crypto';
import { formatSpiffeId, type SpiffeId } from '../../identity/index.ts';
import { generateKeyPair, joinPem, type KeyPair } from '../../tls/index.ts';
import { type CsrInfo, x509 } from '../../tls/issuer.ts';

/** What signs: the CA certificate and key, the chain above it, and the trust bundle. */
export interface CaMaterial {
  /** The certificate that signs leaves (the root itself when self-signed). */
  readonly signingCert: string;
  readonly signingKey: KeyPair;
  /** Certificates between the leaf and the root, signingCert first; empty when it is the root. */
  readonly intermediates: readonly string[];
  /** Every root a peer may be signed by: the current one and, during a rotation, others. */
  readonly roots: readonly string[];
  readonly source: 'self-signed' | 'plugged';
}

export interface IssuedCertificate {
  /** The leaf PEM. */
  readonly leaf: string;
  /** Istio's response shape: [leaf, ...intermediates, roots] — the last element is the whole trust bundle. */
  readonly certChain: string[];
  readonly serial: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

// Certificates start a little in the past so that a node whose clock runs behind the
// controller's accepts them at once. Istio's CA backdates too; a minute covers NTP-synced nodes.
const BACKDATE_MS = 60_000;

/** RFC 5280 §4.1.2.2: positive, at most 20 octets; 16 random bytes with the top bit cleared. */
function serialNumber(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b.toString('hex');
}

export class CertificateAuthority {
  readonly material: CaMaterial;
  private readonly signer: x509.X509Certificate;
  private aki: x509.AuthorityKeyIdentifierExtension | undefined;

  constructor(material: CaMaterial) {
    this.material = material;
    this.signer = new x509.X509Certificate(material.signingCert);
  }

  get trustBundle(): readonly string[] {
    return this.material.roots;
  }

  get notAfter(): Date {
    return this.signer.notAfter;
  }

  /**
   * Signs a workload certificate for `identity` with the CSR's key: URI SAN only (critical, as
   * the subject is empty — RFC 5280 §4.2.1.6), digitalSignature + keyEncipherment, serverAuth +
   * clientAuth. The lifetime is cut at the signing certificate's own expiry. `subject` is empty
   * except on a node certificate (identity/node.ts: the node it is bound to).
   */
  async signWorkload(csr: CsrInfo, identity: SpiffeId, ttlMs: number, now = Date.now(), subject = ''): Promise<IssuedCertificate> {
    const cert = await this.sign({
      publicKey: csr.publicKey,
      sans: [{ type: 'url', value: formatSpiffeId(identity) }],
      eku: [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
      ttlMs,
      now,
      subject,
    });
    return this.issued(cert);
  }

  /** A key and a workload certificate for one of the mesh's own components (the controller's
   * relay dials the node agents' flows APIs with it). */
  async issueWorkloadKey(identity: SpiffeId, ttlMs: number): Promise<IssuedCertificate & { key: string }> {
    const keys = await generateKeyPair();
    const cert = await this.sign({
      publicKey: keys.publicKey,
      sans: [{ type: 'url', value: formatSpiffeId(identity) }],
      eku: [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
      ttlMs,
      now: Date.now(),
    });
    return { ...this.issued(cert), key: keys.privateKeyPem };
  }

  /** A key and a server certificate for the CA's own endpoint (DNS and IP SANs, serverAuth). */
  async issueServing(names: { dnsNames: readonly string[]; ipAddresses: readonly string[] }, ttlMs: number): Promise<IssuedCertificate & { key: string }> {
    const keys = await generateKeyPair();
    const cert = await this.sign({
      publicKey: keys.publicKey,
      sans: [...names.dnsNames.map((value) => ({ type: 'dns' as const, value })), ...names.ipAddresses.map((value) => ({ type: 'ip' as const, value }))],
      eku: [x509.ExtendedKeyUsage.serverAuth],
      ttlMs,
      now: Date.now(),
    });
    return { ...this.issued(cert), key: keys.privateKeyPem };
  }

  private issued(cert: x509.X509Certificate): IssuedCertificate {
    const leaf = cert.toString('pem');
    return {
      leaf,
      certChain: [leaf, ...this.material.intermediates, joinPem(this.material.roots)],
      serial: cert.serialNumber.replace(/^0+(?=.)/, '').toLowerCase(),
      notBefore: cert.notBefore,
      notAfter: cert.notAfter,
    };
  }

  private async sign(p: {
    publicKey: x509.PublicKeyType;
    sans: { type: 'url' | 'dns' | 'ip'; value: string }[];
    eku: string[];
    ttlMs: number;
    now: number;
    subject?: string;
  }): Promise<x509.X509Certificate> {
    this.aki ??= await this.authorityKeyId();
    // X.509 times have whole seconds (RFC 5280 §4.1.2.5): round outwards so the lifetime is at
    // least what was asked, within the signer's own validity.
    const notAfter = new Date(Math.min(Math.ceil((p.now + p.ttlMs) / 1000) * 1000, this.signer.notAfter.getTime()));
    const notBefore = new Date(Math.max(Math.floor((p.now - Math.min(BACKDATE_MS, p.ttlMs)) / 1000) * 1000, this.signer.notBefore.getTime()));
    return x509.X509CertificateGenerator.create({
      serialNumber: serialNumber(),
      subject: p.subject ?? '',
      issuer: this.signer.subjectName,
      notBefore,
      notAfter,
      publicKey: p.publicKey,
      signingKey: this.material.signingKey.privateKey,
      signingAlgorithm: this.material.signingKey.algorithm,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
        new x509.ExtendedKeyUsageExtension(p.eku),
        new x509.SubjectAlternativeNameExtension(p.sans, true),
        this.aki,
      ],
    });
  }

  // Taken from the signer's SKI when it has one, so chain builders that match AKI to SKI
  // (OpenSSL does) link our leaves to a plugged-in CA whose SKI was made another way.
  private async authorityKeyId(): Promise<x509.AuthorityKeyIdentifierExtension> {
    const ski = this.signer.getExtension(x509.SubjectKeyIdentifierExtension);
    if (ski) return new x509.AuthorityKeyIdentifierExtension(ski.keyId);
    return x509.AuthorityKeyIdentifierExtension.create(this.signer.publicKey);
  }
}

/** A self-signed root for `trustDomain`, valid `ttlMs` (Istio's self-signed root: 10 years). */
export async function createSelfSignedRoot(trustDomain: string, ttlMs: number): Promise<{ cert: string; key: KeyPair }> {
  const key = await generateKeyPair();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: [{ O: [trustDomain] }, { CN: ['mesh root CA'] }],
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + ttlMs),
    keys: { privateKey: key.privateKey, publicKey: key.publicKey },
    signingAlgorithm: key.algorithm,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(key.publicKey),
    ],
  });
  return { cert: cert.toString('pem'), key };
}
