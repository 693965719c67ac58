// SPIFFE identities, and getting certificates for them from the CA: the client that sends CSRs
// and the per-identity cache that refreshes them (ztunnel's identity/ module).
export { CaClientError, IdentityError, type CaClientErrorCode, type IdentityErrorCode } from './errors.ts';
export {
  checkTrustDomain,
  formatSpiffeId,
  isSpiffeId,
  parseSpiffeId,
  sameSpiffeId,
  spiffeId,
  validateTrustDomain,
  type SpiffeId,
} from './spiffe.ts';
export { CA_TOKEN_AUDIENCE, CertificateClient, tokenFile, type CertificateClientOptions, type CertificateProvider, type WorkloadCertificate } from './client.ts';
export { SecretManager, type CertState, type CertStatus, type SecretManagerEvents, type SecretManagerOptions } from './manager.ts';
export { CA_PROTO_PATH, CA_SERVICE, caServiceClient, stringStruct, structString, type CertificateRequest, type CertificateResponse, type ProtoStruct } from './ca-proto.ts';
export { CONTROLLER_SERVICE_ACCOUNT, NODE_ORGANIZATION, nodeOfCertificate, nodeSubject, type SubjectFields } from './node.ts';
export { RotatingCertificates } from './credentials.ts';
