// Certificates and mutual TLS: keys, CSRs, certificate reading, PEM bundles, and TLS options that
// verify peers by SPIFFE identity. Shared by ztunnel, the waypoint, the config stream and the CA.
export { TlsError, type TlsErrorCode } from './errors.ts';
export { generateKeyPair, importPrivateKey, keyPairFingerprint, publicKeyFingerprint, P256, type KeyPair, type SigningAlgorithm } from './keys.ts';
export { createCsr } from './csr.ts';
export {
  fingerprintOf,
  isIssuedBy,
  joinPem,
  mergeBundles,
  parseAltNames,
  parseCertificate,
  splitPemBundle,
  verifyChain,
  type CertInfo,
} from './cert.ts';
export {
  mtlsClientOptions,
  mtlsServerOptions,
  peerSpiffeId,
  spiffeCheckServerIdentity,
  verifyPeer,
  type MtlsCredentials,
  type PeerPolicy,
} from './mtls.ts';
// Reading CSRs and issuing certificates (@peculiar/x509, heavy to load) is in ./issuer.ts.
