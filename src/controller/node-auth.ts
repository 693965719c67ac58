// Who a node is, from its credentials: the config stream admits a node's own credential only and
// takes the node from it, and the flow relay accepts at a node's address only that node's agent.
// The CA binds a node's own identity to the node its token review names (identity/node.ts);
// ARCHITECTURE.md "Identity" has the decision.
import * as grpc from '@grpc/grpc-js';
import { nodeOfCertificate, parseSpiffeId, type SubjectFields } from '../identity/index.ts';
import { type PeerInfo, uriSans } from '../xds/index.ts';

/** The components that follow the config stream, as they name themselves in node.id. */
const NODE_COMPONENTS = ['agent', 'ztunnel'];
const SA_USER = /^system:serviceaccount:([^:]+):([^:]+)$/;

export class NodeCredentials {
  private readonly trustDomain: string;
  /** The SPIFFE IDs of the trusted node accounts (spiffe://<td>/ns/mesh-system/sa/mesh-node). */
  private readonly identities: ReadonlySet<string>;
  private readonly nodeExists: ((node: string) => boolean) | undefined;

  /**
   * `nodeAccounts`: the CA's trusted node accounts (system:serviceaccount:<ns>:<sa>).
   * `nodeExists`: whether a Node of that name exists now (a deleted node's credential is refused).
   */
  constructor(trustDomain: string, nodeAccounts: readonly string[], nodeExists?: (node: string) => boolean) {
    this.trustDomain = trustDomain;
    this.identities = new Set(nodeAccounts.flatMap((u) => {
      const m = SA_USER.exec(u);
      return m ? [`spiffe://${trustDomain}/ns/${m[1]}/sa/${m[2]}`] : [];
    }));
    this.nodeExists = nodeExists;
  }

  /**
   * Why a certificate is not `node`'s node credential (undefined when it is): exactly one SPIFFE
   * ID, a trusted node account's, and the node the CA bound into it. `node` undefined: any node.
   */
  refusal(uris: readonly string[], cert: SubjectFields | undefined, node?: string): string | undefined {
    const uri = uris[0];
    if (!uri || uris.length !== 1) return `the certificate must carry exactly one SPIFFE identity, it has ${uris.length}`;
    if (!this.identities.has(uri)) {
      return `identity ${uri} is not a node identity (${[...this.identities].join(', ')}); workloads and other components cannot read the mesh's config`;
    }
    const bound = nodeOfCertificate(cert);
    if (!bound) return `the certificate for ${uri} is bound to no node (the mesh CA writes the node into every node credential it issues)`;
    if (node !== undefined && bound !== node) return `its certificate is bound to node ${bound}, not ${node}`;
    if (this.nodeExists && !this.nodeExists(bound)) return `its certificate is bound to node ${bound}, which does not exist (any more)`;
    return undefined;
  }

  /**
   * Admits a config stream only from a node's own credential: the stream's node.name and node.id
   * must name the node its certificate is bound to. A node cannot read, NACK or announce a flows
   * address as another node.
   */
  streamRefusal(peer: PeerInfo): string | undefined {
    const refusal = this.refusal(peer.uris, peer.certificate);
    const bound = nodeOfCertificate(peer.certificate);
    if (refusal || !bound) return refusal ?? 'no node credential';
    if (peer.node.name !== bound) return `the stream claims node "${peer.node.name}", but its certificate is bound to node "${bound}"`;
    const ok = NODE_COMPONENTS.map((k) => `${k}~${bound}`);
    if (!ok.includes(peer.node.id)) return `node id "${peer.node.id}" must be ${ok.join(' or ')} for a certificate bound to node "${bound}"`;
    return undefined;
  }

  /**
   * Admits a waypoint's config stream: its certificate names one SPIFFE identity, the service
   * account its Gateway's deployment runs as (named after the Gateway, as Istio's waypoints are),
   * and `isWaypoint(ns, name)` says such a waypoint Gateway exists. node.id must be
   * "waypoint~<ns>/<name>~…". A waypoint reads routes and workloads; it gets no node's role.
   */
  waypointStreamRefusal(peer: PeerInfo, isWaypoint: (namespace: string, name: string) => boolean): string | undefined {
    const uri = peer.uris[0];
    if (!uri || peer.uris.length !== 1) return `the certificate must carry exactly one SPIFFE identity, it has ${peer.uris.length}`;
    let id;
    try {
      id = parseSpiffeId(uri);
    } catch {
      id = undefined;
    }
    if (!id || id.trustDomain !== this.trustDomain) return `identity ${uri} is not a workload identity of trust domain ${this.trustDomain}`;
    const { namespace: ns, serviceAccount: sa } = id;
    if (!isWaypoint(ns, sa)) return `identity ${uri} is not a waypoint's: no Gateway ${ns}/${sa} of class mesh-waypoint exists`;
    const want = `waypoint~${ns}/${sa}~`;
    if (!peer.node.id.startsWith(want)) return `node id "${peer.node.id}" must start with "${want}" for the identity ${uri}`;
    return undefined;
  }

  /**
   * The relay's client credentials: the controller's identity, and a check that the agent at the
   * other end holds the node credential of the node the relay meant to reach. The Relay dials
   * each node with its name as the TLS server name, which is what checkServerIdentity is given:
   * an address announced for node2 that answers with node1's certificate is refused.
   */
  relayCredentials(roots: Buffer, own: { key: string; certChain: readonly string[] }): grpc.ChannelCredentials {
    return grpc.credentials.createSsl(roots, Buffer.from(own.key), Buffer.from(own.certChain.join('\n')), {
      checkServerIdentity: (node, cert) => {
        const refusal = this.refusal(uriSans(cert), cert, node);
        return refusal ? new Error(`the flows API dialled for node ${node} is not that node's agent: ${refusal}`) : undefined;
      },
    });
  }
}
