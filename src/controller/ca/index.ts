// The mesh CA: roots from a Secret, the trust bundle published to every namespace, and
// CreateCertificate over gRPC for node ztunnels (Istio's impersonation check). startCa() wires
// the pieces for the controller; each piece is exported for tests and other wiring.
import { CertificateAuthority } from './authority.ts';
import { TokenReviewAuthenticator, type Authenticator } from './authn.ts';
import { NodeAuthorizer } from './authz.ts';
import { caConfig, type CaConfig } from './config.ts';
import type { CaKube } from './kube.ts';
import { RootCertPublisher } from './publisher.ts';
import { loadCaMaterial } from './root.ts';
import { CaServer } from './server.ts';

export { CertificateAuthority, createSelfSignedRoot, type CaMaterial, type IssuedCertificate } from './authority.ts';
export { bearerToken, TokenReviewAuthenticator, type Authenticator, type Caller } from './authn.ts';
export { type CachedPodsOnNode, NodeAuthorizer, NODE_NAME_EXTRA, POD_NAME_EXTRA, POD_UID_EXTRA } from './authz.ts';
export { CA_CONFIG_DEFAULTS, caConfig, type CaConfig } from './config.ts';
export { CaError, type CaErrorCode } from './errors.ts';
export {
  kubeCaBackend,
  podInfo,
  type CaKube,
  type ConfigMapStore,
  type NamespaceSource,
  type PodInfo,
  type PodLookup,
  type SecretStore,
  type TokenReviewer,
  type TokenReviewResult,
} from './kube.ts';
export { RootCertPublisher, ROOT_CONFIGMAP, ROOT_CONFIGMAP_KEY, ROOT_CONFIGMAP_LABELS } from './publisher.ts';
export { CA_CERT, CA_KEY, CERT_CHAIN, loadCaMaterial, ROOT_CERT, type RootOptions } from './root.ts';
export { CA_DEFAULTS, CaServer, IMPERSONATED_IDENTITY, type CaServerOptions, type IssueResult } from './server.ts';

export interface RunningCa {
  readonly config: CaConfig;
  readonly authority: CertificateAuthority;
  readonly server: CaServer;
  /** The node check; the controller gives it its pod informer (useCache). */
  readonly authorizer: NodeAuthorizer;
  readonly publisher: RootCertPublisher;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Loads or creates the root, starts publishing the trust bundle and serves CreateCertificate.
 * `authenticator` defaults to TokenReview through `kube`; `publishRoot: false` leaves the trust
 * bundle's publication to the caller (a replica publishes it only while it leads).
 */
export async function startCa(kube: CaKube, input: Partial<CaConfig> & { trustDomain: string }, deps: { authenticator?: Authenticator; publishRoot?: boolean } = {}): Promise<RunningCa> {
  const config = caConfig(input);
  const material = await loadCaMaterial(kube, config);
  const authority = new CertificateAuthority(material);
  const publisher = new RootCertPublisher(kube, material.roots);
  const authorizer = new NodeAuthorizer(kube, config.trustedNodeAccounts);
  const server = new CaServer({
    trustDomain: config.trustDomain,
    authority,
    authenticator: deps.authenticator ?? new TokenReviewAuthenticator(kube, { audiences: config.audiences }),
    authorizer,
    defaultTtlMs: config.defaultTtlMs,
    maxTtlMs: config.maxTtlMs,
    servingNames: config.servingNames,
  });
  // Without publishRoot the caller starts the publisher when it leads (publisher.start()).
  if (deps.publishRoot ?? true) await publisher.start();
  let port: number;
  try {
    port = await server.listen(config.host, config.port);
  } catch (e) {
    publisher.stop();
    throw e;
  }
  return {
    config,
    authority,
    server,
    authorizer,
    publisher,
    port,
    async close() {
      publisher.stop();
      await server.close();
    },
  };
}
