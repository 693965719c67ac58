// L4 authorization: Authorizations (proto/mesh/config.proto, compiled from AuthorizationPolicy
// and PeerAuthentication by the controller) evaluated against a connection, as ztunnel does at
// the destination. Shared by ztunnel (inbound) and, later, the waypoint's L4 checks.
export { AuthzInvalidError, type AuthzErrorCode } from './errors.ts';
export { compileAuthorization, policyMatches, validateAuthorization, type CompiledAuthorization, type PeerView } from './compile.ts';
export { compilePolicies, evaluate, type CompiledPolicies, type ConnectionInfo, type Decision, type DecisionKind, type PolicySource } from './evaluate.ts';
export { cidrContains, compileCidr, parseIp, type CompiledCidr, type Ip } from './ip.ts';
