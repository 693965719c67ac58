// Node credentials: which node a component's certificate speaks for.
//
// Every node's agent and ztunnel run as the same service account (mesh-system/mesh-node), so
// the SPIFFE ID alone cannot tell node1 from node2. The CA binds the node the way Kubernetes
// binds a kubelet's client certificate (CN=system:node:<name>, O=system:nodes, which the node
// authorizer trusts): when a node asks for its own node identity, the CA learns the node from
// the token review (the token's bound pod, or its node-name claim) and writes it into the
// certificate's subject, O=mesh:nodes, CN=mesh:node:<name>. The SPIFFE ID stays the only URI SAN
// (X509-SVID §2), and the node name is never taken from what the client says about itself.

export const NODE_ORGANIZATION = 'mesh:nodes';

/** The controller's service account (its Deployment's, in the mesh's namespace): the identity its
 * flow relay presents, the only client a node's flows API serves. */
export const CONTROLLER_SERVICE_ACCOUNT = 'mesh-controller';
const CN_PREFIX = 'mesh:node:';

/** The subject the CA writes on a node certificate, in RFC 4514 form for the X.509 builder. */
export function nodeSubject(node: string): string {
  // A node name is a DNS-1123 subdomain: no character that needs escaping in a DN.
  return `CN=${CN_PREFIX}${node}, O=${NODE_ORGANIZATION}`;
}

/** The subject as Node's TLS reports a peer certificate's: each attribute a string or a list. */
export interface SubjectFields {
  readonly subject?: Readonly<Record<string, string | readonly string[] | undefined>> | null;
}

/** The node a peer certificate is bound to, or undefined when it is not a node certificate. */
export function nodeOfCertificate(cert: SubjectFields | undefined): string | undefined {
  const subject = cert?.subject;
  if (!subject) return undefined;
  const one = (v: string | readonly string[] | undefined): string | undefined => (typeof v === 'string' ? v : v?.length === 1 ? v[0] : undefined);
  if (one(subject.O) !== NODE_ORGANIZATION) return undefined;
  const cn = one(subject.CN);
  if (!cn?.startsWith(CN_PREFIX)) return undefined;
  const node = cn.slice(CN_PREFIX.length);
  return node || undefined;
}
