// The API server's own CA and serving certificate, made on first start and reused after, so that a
// kubeconfig written once keeps working across restarts. Keys come from node:crypto (native RSA
// generation is ~50x faster than node-forge's); node-forge builds and signs the X.509 certificates.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import forge from 'node-forge';
import { writeFileAtomic } from './files.ts';

export interface ServingPki {
  caCertPem: string;
  certPem: string;
  keyPem: string;
}

const CA_YEARS = 10;
const SERVING_YEARS = 2;

/** The `kubernetes` Service's ClusterIP (the first of kube-apiserver's default service range,
 * 10.96.0.0/16): pods reach the API server there (src/local/runtime/api-service.ts), so it is on
 * the serving certificate, as kube-apiserver puts it on its own. */
export const KUBERNETES_SERVICE_IP = '10.96.0.1';
const SERVICE_NAMES = ['kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local'];

/** Loads dataDir/pki or creates it: a CA, and a serving cert for 127.0.0.1, localhost and the
 * `kubernetes` Service (its ClusterIP and names). */
export async function loadOrCreatePki(dataDir: string): Promise<ServingPki> {
  const dir = join(dataDir, 'pki');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const files = { ca: join(dir, 'ca.crt'), caKey: join(dir, 'ca.key'), cert: join(dir, 'apiserver.crt'), key: join(dir, 'apiserver.key') };
  const existing = await Promise.all([files.ca, files.cert, files.key].map((p) => readFile(p, 'utf8').catch(() => undefined)));
  const [caCertPem, certPem, keyPem] = existing;
  if (caCertPem && certPem && keyPem && stillValid(certPem) && namesService(certPem)) return { caCertPem, certPem, keyPem };

  // A CA whose key is on disk is reused to reissue an expired serving cert; otherwise start over.
  let ca: { cert: forge.pki.Certificate; key: forge.pki.rsa.PrivateKey; pem: string };
  const caKeyPem = await readFile(files.caKey, 'utf8').catch(() => undefined);
  if (caCertPem && caKeyPem && stillValid(caCertPem)) {
    ca = { cert: forge.pki.certificateFromPem(caCertPem), key: forge.pki.privateKeyFromPem(caKeyPem), pem: caCertPem };
  } else {
    const keys = rsaKeys();
    const cert = forge.pki.createCertificate();
    cert.publicKey = forge.pki.publicKeyFromPem(keys.publicPem);
    cert.serialNumber = serial();
    setValidity(cert, CA_YEARS);
    const subject = [{ name: 'commonName', value: 'mesh-local-ca' }];
    cert.setSubject(subject);
    cert.setIssuer(subject);
    cert.setExtensions([
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
      { name: 'subjectKeyIdentifier' },
    ]);
    const key = forge.pki.privateKeyFromPem(keys.privatePem);
    cert.sign(key, forge.md.sha256.create());
    const pem = forge.pki.certificateToPem(cert);
    await writeFileAtomic(files.caKey, keys.privatePem, 0o600);
    await writeFileAtomic(files.ca, pem, 0o644);
    ca = { cert, key, pem };
  }

  const keys = rsaKeys();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(keys.publicPem);
  cert.serialNumber = serial();
  setValidity(cert, SERVING_YEARS);
  cert.setSubject([{ name: 'commonName', value: 'mesh-apiserver' }]);
  cert.setIssuer(ca.cert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    // type 7 = iPAddress, type 2 = dNSName (RFC 5280 §4.2.1.6)
    {
      name: 'subjectAltName',
      altNames: [{ type: 7, ip: '127.0.0.1' }, { type: 7, ip: KUBERNETES_SERVICE_IP }, { type: 2, value: 'localhost' }, ...SERVICE_NAMES.map((value) => ({ type: 2, value }))],
    },
  ]);
  cert.sign(ca.key, forge.md.sha256.create());
  const servingPem = forge.pki.certificateToPem(cert);
  await writeFileAtomic(files.key, keys.privatePem, 0o600);
  await writeFileAtomic(files.cert, servingPem, 0o644);
  return { caCertPem: ca.pem, certPem: servingPem, keyPem: keys.privatePem };
}

function rsaKeys(): { publicPem: string; privatePem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    // PKCS#1: the form node-forge's privateKeyFromPem reads.
    privatePem: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
  };
}

function setValidity(cert: forge.pki.Certificate, years: number): void {
  const now = Date.now();
  cert.validity.notBefore = new Date(now - 60 * 60 * 1000); // tolerate clock skew
  cert.validity.notAfter = new Date(now + years * 365 * 24 * 3600 * 1000);
}

/** A positive 16-byte serial (RFC 5280 §4.1.2.2: positive, at most 20 octets). */
function serial(): string {
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f;
  return b.toString('hex');
}

/** Whether a serving certificate names the `kubernetes` Service's IP (ones made before pods could
 * reach the API server do not; they are reissued by the same CA, so kubeconfigs keep working). */
function namesService(pem: string): boolean {
  try {
    const san = forge.pki.certificateFromPem(pem).getExtension('subjectAltName') as { altNames?: { ip?: string }[] } | null;
    return Boolean(san?.altNames?.some((a) => a.ip === KUBERNETES_SERVICE_IP));
  } catch {
    return false;
  }
}

function stillValid(pem: string): boolean {
  try {
    const cert = forge.pki.certificateFromPem(pem);
    return cert.validity.notAfter.getTime() > Date.now() + 24 * 3600 * 1000;
  } catch {
    return false;
  }
}
