// Private keys. Workload keys are ECDSA P-256 (what Istio's ztunnel generates: fast to make, small
// handshakes). A user-supplied CA key may also be P-384 or RSA, as Istio's plug-in CA allows.
import { createHash, createPrivateKey, createPublicKey, KeyObject, webcrypto } from 'node:crypto';
import { TlsError } from './errors.ts';

const subtle = webcrypto.subtle;

/** WebCrypto parameters for signing with a key; `hash` matches the key's strength. */
export type SigningAlgorithm =
  | { name: 'ECDSA'; namedCurve: 'P-256' | 'P-384'; hash: 'SHA-256' | 'SHA-384' }
  | { name: 'RSASSA-PKCS1-v1_5'; hash: 'SHA-256' };

type CryptoKey = webcrypto.CryptoKey;

export interface KeyPair {
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
  /** PKCS#8 PEM, as Node's tls module takes it. */
  readonly privateKeyPem: string;
  readonly algorithm: SigningAlgorithm;
}

export const P256: SigningAlgorithm = Object.freeze({ name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' });

/** A fresh ECDSA P-256 key pair. */
export async function generateKeyPair(): Promise<KeyPair> {
  const pair = (await subtle.generateKey(P256, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  return Object.freeze({
    privateKey: pair.privateKey,
    publicKey: pair.publicKey,
    privateKeyPem: pkcs8Pem(pair.privateKey),
    algorithm: P256,
  });
}

/**
 * Imports a PEM private key (PKCS#8 "PRIVATE KEY", SEC1 "EC PRIVATE KEY" or PKCS#1 "RSA PRIVATE
 * KEY", as openssl and Istio's tooling write them) for signing.
 */
export async function importPrivateKey(pem: string, what = 'private key'): Promise<KeyPair> {
  let keyObject;
  try {
    keyObject = createPrivateKey(pem);
  } catch (e) {
    throw new TlsError('MESH_ERR_KEY', `${what} is not a readable unencrypted PEM private key: ${(e as Error).message}`, e);
  }
  let algorithm: SigningAlgorithm;
  const details = keyObject.asymmetricKeyDetails ?? {};
  if (keyObject.asymmetricKeyType === 'ec' && details.namedCurve === 'prime256v1') {
    algorithm = P256;
  } else if (keyObject.asymmetricKeyType === 'ec' && details.namedCurve === 'secp384r1') {
    algorithm = { name: 'ECDSA', namedCurve: 'P-384', hash: 'SHA-384' };
  } else if (keyObject.asymmetricKeyType === 'rsa' && (details.modulusLength ?? 0) >= 2048) {
    algorithm = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  } else {
    throw new TlsError(
      'MESH_ERR_KEY',
      `${what} is ${keyObject.asymmetricKeyType}${details.namedCurve ? ` ${details.namedCurve}` : ''}${details.modulusLength ? ` ${details.modulusLength}-bit` : ''}; supported are EC P-256, EC P-384 and RSA ≥ 2048 bits`,
    );
  }
  const pkcs8 = keyObject.export({ format: 'der', type: 'pkcs8' });
  const spki = createPublicKey(keyObject).export({ format: 'der', type: 'spki' });
  const privateKey = await subtle.importKey('pkcs8', pkcs8, algorithm, true, ['sign']);
  const publicKey = await subtle.importKey('spki', spki, algorithm, true, ['verify']);
  return Object.freeze({ privateKey, publicKey, privateKeyPem: pkcs8Pem(privateKey), algorithm });
}

/** PKCS#8 PEM of a WebCrypto private key, as Node's tls module takes it (Node writes the PEM). */
function pkcs8Pem(key: CryptoKey): string {
  return KeyObject.from(key).export({ type: 'pkcs8', format: 'pem' }) as string;
}

/** SHA-256 of a SubjectPublicKeyInfo (DER), lowercase hex: matches keys across certs and CSRs. */
export function publicKeyFingerprint(spkiDer: ArrayBuffer | Uint8Array): string {
  return createHash('sha256').update(spkiDer instanceof Uint8Array ? spkiDer : new Uint8Array(spkiDer)).digest('hex');
}

/** The fingerprint of a key pair's public key, comparable with CertInfo.publicKeyFingerprint. */
export async function keyPairFingerprint(keys: KeyPair): Promise<string> {
  return publicKeyFingerprint(await subtle.exportKey('spki', keys.publicKey));
}
