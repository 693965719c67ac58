// PKCS#10 certificate signing requests carrying a SPIFFE URI SAN (RFC 2986, RFC 5280 §4.2.1.6).
// Written with asn1js and node:crypto rather than @peculiar/x509: a workload's CSR has one fixed
// shape, and that library (with tsyringe and reflect-metadata) took ~270 ms and ~20 MB of a
// ztunnel's start. Reading CSRs is the CA's job (src/tls/issuer.ts).
import { KeyObject, sign, webcrypto } from 'node:crypto';
import * as asn1 from 'asn1js';
import type { KeyPair, SigningAlgorithm } from './keys.ts';

const OID = {
  extensionRequest: '1.2.840.113549.1.9.14', // PKCS#9, RFC 2985 §5.4.2
  subjectAltName: '2.5.29.17', // RFC 5280 §4.2.1.6
  ecdsaWithSha256: '1.2.840.10045.4.3.2', // RFC 5758 §3.2
  ecdsaWithSha384: '1.2.840.10045.4.3.3',
  sha256WithRsa: '1.2.840.113549.1.1.11', // RFC 4055 §5
};

/** A DER block we already hold (the key's SubjectPublicKeyInfo), as an element. */
function der(bytes: Uint8Array): asn1.AsnType {
  const parsed = asn1.fromBER(bytes);
  if (parsed.offset === -1) throw new Error(`not DER: ${parsed.result.error}`);
  return parsed.result;
}

/** The signatureAlgorithm of RFC 2986 §4.2 and the digest Node signs with. */
function signatureAlgorithm(alg: SigningAlgorithm): { id: asn1.Sequence; digest: string } {
  if (alg.name === 'ECDSA') {
    // ECDSA identifiers take no parameters (RFC 5758 §3.2).
    return alg.hash === 'SHA-384'
      ? { id: new asn1.Sequence({ value: [new asn1.ObjectIdentifier({ value: OID.ecdsaWithSha384 })] }), digest: 'sha384' }
      : { id: new asn1.Sequence({ value: [new asn1.ObjectIdentifier({ value: OID.ecdsaWithSha256 })] }), digest: 'sha256' };
  }
  return { id: new asn1.Sequence({ value: [new asn1.ObjectIdentifier({ value: OID.sha256WithRsa }), new asn1.Null()] }), digest: 'sha256' };
}

/** A CSR for `keys` whose only SAN is the URI `uri`; the subject is empty, as Istio's are. */
export async function createCsr(keys: KeyPair, uri: string): Promise<string> {
  const spki = new Uint8Array(await webcrypto.subtle.exportKey('spki', keys.publicKey));
  // GeneralNames with one uniformResourceIdentifier: [6] IMPLICIT IA5String (RFC 5280 §4.2.1.6).
  const generalNames = new asn1.Sequence({ value: [new asn1.Primitive({ idBlock: { tagClass: 3, tagNumber: 6 }, valueHex: new TextEncoder().encode(uri) })] });
  const sanExtension = new asn1.Sequence({
    value: [
      new asn1.ObjectIdentifier({ value: OID.subjectAltName }),
      // Critical: the subject is empty (RFC 5280 §4.2.1.6).
      new asn1.Boolean({ value: true }),
      new asn1.OctetString({ valueHex: generalNames.toBER() }),
    ],
  });
  const info = new asn1.Sequence({
    value: [
      new asn1.Integer({ value: 0 }), // version v1
      new asn1.Sequence(), // subject: the empty Name
      der(spki), // subjectPKInfo, as WebCrypto exported it
      // attributes [0] IMPLICIT SET OF Attribute: one extensionRequest holding Extensions.
      new asn1.Constructed({
        idBlock: { tagClass: 3, tagNumber: 0 },
        value: [new asn1.Sequence({ value: [new asn1.ObjectIdentifier({ value: OID.extensionRequest }), new asn1.Set({ value: [new asn1.Sequence({ value: [sanExtension] })] })] })],
      }),
    ],
  });
  const infoDer = new Uint8Array(info.toBER());
  const alg = signatureAlgorithm(keys.algorithm);
  // Node signs ECDSA in DER (r, s), as X.509 wants; WebCrypto's sign would give IEEE P1363.
  const signature = sign(alg.digest, infoDer, KeyObject.from(keys.privateKey));
  const csr = new asn1.Sequence({ value: [info, alg.id, new asn1.BitString({ valueHex: signature })] });
  const b64 = Buffer.from(csr.toBER()).toString('base64');
  return `-----BEGIN CERTIFICATE REQUEST-----\n${b64.replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END CERTIFICATE REQUEST-----\n`;
}
