// gRPC credentials that follow certificate rotation. grpc-js reads a CertificateProvider on
// every new connection (client) and swaps the server's secure context when it changes, so a
// config stream, a CA client or the flows API picks up a renewed certificate and a new trust
// bundle without a restart — the lesson of DESIGN.md: a renewal counts only where it is used.
import * as grpc from '@grpc/grpc-js';
import { mergeBundles } from '../tls/index.ts';
import type { WorkloadCertificate } from './client.ts';
import { CaClientError } from './errors.ts';
import type { SecretManager } from './manager.ts';
import { formatSpiffeId, type SpiffeId } from './spiffe.ts';

type CaListener = grpc.experimental.CaCertificateUpdateListener;
type IdListener = grpc.experimental.IdentityCertificateUpdateListener;

/**
 * One identity's certificate from a SecretManager (refreshed at half-life), and the roots to
 * trust: the bundle the CA last returned (a root added or retired there during a rotation counts
 * at once), or `staticRoots` (the mounted mesh-ca-root-cert bundle) before the CA has answered.
 * Without `identity` it provides roots only (a CA client, which has no certificate of its own).
 */
export class RotatingCertificates implements grpc.experimental.CertificateProvider {
  private readonly secrets: SecretManager;
  private readonly key: string | undefined;
  private readonly staticRoots: readonly string[];
  private readonly caListeners = new Set<CaListener>();
  private readonly idListeners = new Set<IdListener>();
  private ca: grpc.experimental.CaCertificateUpdate | undefined;
  private id: grpc.experimental.IdentityCertificateUpdate | undefined;
  private rootsKey = '';
  private readonly onCert = (identity: SpiffeId, cert: WorkloadCertificate) => {
    if (formatSpiffeId(identity) === this.key) this.setIdentity(cert);
  };
  private readonly onBundle = () => this.setRoots();

  constructor(secrets: SecretManager, identity: SpiffeId | undefined, staticRoots: string | readonly string[] = []) {
    this.secrets = secrets;
    this.key = identity ? formatSpiffeId(identity) : undefined;
    this.staticRoots = mergeBundles(...(typeof staticRoots === 'string' ? [staticRoots] : staticRoots));
    secrets.on('certificate', this.onCert);
    secrets.on('trustBundle', this.onBundle);
    if (this.staticRoots.length === 0 && secrets.trustBundle.length === 0) {
      throw new CaClientError('MESH_ERR_CA_REQUEST', 'no trust roots to check the controller with: the mesh-ca-root-cert bundle (MESH_CA_ROOT_FILE) is empty or holds no PEM certificate');
    }
    const current = identity ? secrets.cached(identity) : undefined;
    if (current) this.setIdentity(current);
    this.setRoots();
  }

  private setIdentity(cert: WorkloadCertificate): void {
    this.id = { certificate: Buffer.from(cert.certChain.join('\n')), privateKey: Buffer.from(cert.key) };
    for (const l of this.idListeners) l(this.id);
    this.setRoots();
  }

  private setRoots(): void {
    // The CA's current bundle once it has answered (a root it retired stops being trusted); the
    // mounted one until then.
    const bundle = this.secrets.trustBundle;
    const roots = bundle.length ? mergeBundles(bundle) : this.staticRoots;
    const key = roots.join('');
    if (roots.length === 0 || key === this.rootsKey) return;
    this.rootsKey = key;
    this.ca = { caCertificate: Buffer.from(key) };
    for (const l of this.caListeners) l(this.ca);
  }

  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    if (this.ca) process.nextTick(listener, this.ca);
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdListener): void {
    this.idListeners.add(listener);
    if (this.id) process.nextTick(listener, this.id);
  }

  removeIdentityCertificateListener(listener: IdListener): void {
    this.idListeners.delete(listener);
  }

  /** Client credentials presenting the current certificate (when there is an identity). */
  channelCredentials(verify: grpc.VerifyOptions = {}): grpc.ChannelCredentials {
    return grpc.experimental.createCertificateProviderChannelCredentials(this, this.key ? this : null, verify);
  }

  /** Server credentials presenting the current certificate and requiring a client certificate
   * chained to the current roots. */
  serverCredentials(): grpc.ServerCredentials {
    // The same object provides both; grpc-js's factory names its arguments in another order
    // than its constructor, which passing one provider for both makes moot.
    return grpc.experimental.createCertificateProviderServerCredentials(this, this, true);
  }

  close(): void {
    this.secrets.off('certificate', this.onCert);
    this.secrets.off('trustBundle', this.onBundle);
    this.caListeners.clear();
    this.idListeners.clear();
  }
}
