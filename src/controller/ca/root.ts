// Where the CA's key comes from. Istio's plug-in CA layout first: a user-supplied Secret
// (default mesh-system/cacerts) with ca-cert.pem, ca-key.pem, root-cert.pem and cert-chain.pem.
// Otherwise a self-signed root kept in our own Secret (default mesh-system/mesh-ca), made on first
// start; two replicas starting together race on create, and the loser re-reads the winner's.
import { logger } from '../../common/log.ts';
import {
  fingerprintOf,
  importPrivateKey,
  keyPairFingerprint,
  mergeBundles,
  parseCertificate,
  splitPemBundle,
  TlsError,
  verifyChain,
} from '../../tls/index.ts';
import { type CaMaterial, createSelfSignedRoot } from './authority.ts';
import { CaError } from './errors.ts';
import type { SecretStore } from './kube.ts';

const log = logger('ca');

export interface RootOptions {
  readonly trustDomain: string;
  readonly namespace: string;
  /** The user's plug-in CA Secret (Istio: cacerts). */
  readonly pluggedSecret: string;
  /** Our self-signed root's Secret. */
  readonly selfSignedSecret: string;
  readonly selfSignedTtlMs: number;
  /** More roots to trust besides the CA's own (PEM), e.g. the previous root during a rotation. */
  readonly extraRoots?: string;
}

export const CA_CERT = 'ca-cert.pem';
export const CA_KEY = 'ca-key.pem';
export const ROOT_CERT = 'root-cert.pem';
export const CERT_CHAIN = 'cert-chain.pem';

/** Reads (or makes) the CA material; errors say which Secret and key is wrong. */
export async function loadCaMaterial(store: SecretStore, o: RootOptions): Promise<CaMaterial> {
  const plugged = await store.readSecret(o.namespace, o.pluggedSecret);
  if (plugged) {
    const m = await fromSecret(plugged, `${o.namespace}/${o.pluggedSecret}`, 'plugged', o);
    log.info({ secret: `${o.namespace}/${o.pluggedSecret}`, roots: m.roots.length }, 'using the plugged-in CA');
    return m;
  }
  const name = `${o.namespace}/${o.selfSignedSecret}`;
  let own = await store.readSecret(o.namespace, o.selfSignedSecret);
  if (!own) {
    const root = await createSelfSignedRoot(o.trustDomain, o.selfSignedTtlMs);
    const data = { [CA_CERT]: root.cert, [CA_KEY]: root.key.privateKeyPem, [ROOT_CERT]: root.cert };
    const outcome = await store.createSecret(o.namespace, o.selfSignedSecret, data);
    if (outcome === 'created') {
      log.info({ secret: name, fingerprint: fingerprintOf(root.cert) }, 'created a self-signed root');
      own = data;
    } else {
      own = await store.readSecret(o.namespace, o.selfSignedSecret);
      if (!own) throw new CaError('MESH_ERR_CA_ROOT', `Secret ${name} was reported as existing but cannot be read back`);
    }
  }
  return fromSecret(own, name, 'self-signed', o);
}

async function fromSecret(data: Record<string, string>, name: string, source: CaMaterial['source'], o: RootOptions): Promise<CaMaterial> {
  const need = (key: string): string => {
    const v = data[key];
    if (!v?.trim()) throw new CaError('MESH_ERR_CA_ROOT', `Secret ${name} has no "${key}"; a CA Secret needs ${CA_CERT} and ${CA_KEY}${source === 'plugged' ? ` (and ${ROOT_CERT}, ${CERT_CHAIN} as for Istio's plug-in CA)` : ''}`);
    return v;
  };
  try {
    const signingCert = splitPemBundle(need(CA_CERT), `${name} ${CA_CERT}`)[0]!;
    const info = parseCertificate(signingCert, `${name} ${CA_CERT}`);
    if (!info.isCA) throw new CaError('MESH_ERR_CA_ROOT', `${name} ${CA_CERT} is not a CA certificate (basicConstraints CA:TRUE is missing)`);
    if (info.notAfter.getTime() <= Date.now()) throw new CaError('MESH_ERR_CA_ROOT', `${name} ${CA_CERT} expired at ${info.notAfter.toISOString()}; supply a new CA`);
    const signingKey = await importPrivateKey(need(CA_KEY), `${name} ${CA_KEY}`);
    if ((await keyPairFingerprint(signingKey)) !== info.publicKeyFingerprint) {
      throw new CaError('MESH_ERR_CA_ROOT', `${name} ${CA_KEY} does not belong to ${CA_CERT} (the public keys differ)`);
    }
    const selfSigned = info.subject === info.issuer;
    const declaredRoots = data[ROOT_CERT]?.trim() ? splitPemBundle(data[ROOT_CERT], `${name} ${ROOT_CERT}`) : selfSigned ? [signingCert] : [];
    if (!declaredRoots.length) throw new CaError('MESH_ERR_CA_ROOT', `Secret ${name}: ${CA_CERT} is an intermediate, so ${ROOT_CERT} is required`);
    const roots = mergeBundles(declaredRoots, o.extraRoots ? [o.extraRoots] : []);
    const rootSet = new Set(roots.map(fingerprintOf));
    // cert-chain.pem (Istio: ca-cert, intermediates, root) gives what sits between leaf and root.
    const chain = data[CERT_CHAIN]?.trim() ? splitPemBundle(data[CERT_CHAIN], `${name} ${CERT_CHAIN}`) : [];
    const intermediates = mergeBundles([signingCert, ...chain]).filter((c) => !rootSet.has(fingerprintOf(c)));
    // The signing cert must chain to the bundle, or nobody would accept what we sign.
    try {
      verifyChain(signingCert, intermediates.slice(1), roots);
    } catch (e) {
      throw new CaError('MESH_ERR_CA_ROOT', `Secret ${name}: ${CA_CERT} does not chain to any certificate in ${ROOT_CERT}: ${(e as Error).message}`, e);
    }
    return Object.freeze({ signingCert, signingKey, intermediates, roots, source });
  } catch (e) {
    if (e instanceof CaError) throw e;
    if (e instanceof TlsError) throw new CaError('MESH_ERR_CA_ROOT', `Secret ${name}: ${e.message}`, e);
    throw e;
  }
}

