// Istio's impersonation check (security/pkg/server/ca/node_auth.go, reimplemented): a node's
// ztunnel may ask for an identity only if a pod running as that identity is scheduled on its node.
import { formatSpiffeId, type SpiffeId } from '../../identity/index.ts';
import type { Caller } from './authn.ts';
import { CaError, permissionDenied } from './errors.ts';
import type { PodInfo, PodLookup } from './kube.ts';

export const NODE_NAME_EXTRA = 'authentication.kubernetes.io/node-name';
export const POD_NAME_EXTRA = 'authentication.kubernetes.io/pod-name';
export const POD_UID_EXTRA = 'authentication.kubernetes.io/pod-uid';

const SA_USER = /^system:serviceaccount:([^:]+):([^:]+)$/;

/** The pods scheduled on a node as a watch cache holds them (the controller's pod informer). */
export type CachedPodsOnNode = (node: string) => readonly PodInfo[];

export class NodeAuthorizer {
  private readonly pods: PodLookup;
  private readonly trusted: ReadonlySet<string>;
  private readonly systemNamespaces: ReadonlySet<string>;
  private cached: CachedPodsOnNode | undefined;

  /** `trustedNodeAccounts`: usernames like system:serviceaccount:mesh-system:mesh-node. */
  constructor(pods: PodLookup, trustedNodeAccounts: readonly string[]) {
    this.pods = pods;
    this.trusted = new Set(trustedNodeAccounts);
    this.systemNamespaces = new Set(trustedNodeAccounts.flatMap((u) => SA_USER.exec(u)?.[1] ?? []));
  }

  /**
   * Answers the node check from a watch cache when it shows a live pod with the identity on the
   * node (Istio's CA checks its pod informer only), and asks the API server only when it does
   * not: a pod created a moment ago may not have reached the cache yet. A list call per
   * certificate was a round trip to the API server on a restarted ztunnel's path to serving.
   */
  useCache(cached: CachedPodsOnNode): void {
    this.cached = cached;
  }

  /** Whether the caller is a trusted node account (a node's ztunnel or agent). */
  isNode(caller: Caller): boolean {
    return this.trusted.has(caller.username);
  }

  /**
   * The node the caller runs on; PERMISSION_DENIED unless it is a trusted node account, or
   * (`self`) a workload asking for its own identity with a token bound to a live pod — Istio's
   * path for proxies that hold their own identity, such as waypoints.
   */
  async callerNode(caller: Caller, self = false): Promise<string> {
    if (!this.trusted.has(caller.username) && !self) {
      throw permissionDenied(
        `caller ${caller.username} is not a trusted node service account (trusted: ${[...this.trusted].join(', ')}); only the node's ztunnel may request workload certificates for others — a workload may ask only for its own identity`,
      );
    }
    // Kubernetes ≥ 1.30 puts the node of a pod-bound token in the TokenReview (KEP-4193). A
    // workload's own identity needs more: a token bound to a pod that still exists.
    const node = caller.extra[NODE_NAME_EXTRA]?.[0];
    if (node && !(self && !this.trusted.has(caller.username))) return node;
    const podName = caller.extra[POD_NAME_EXTRA]?.[0];
    const ns = SA_USER.exec(caller.username)?.[1];
    if (!podName || !ns) {
      throw permissionDenied(
        `the token of ${caller.username} is not bound to a pod, so its ${node ? 'pod' : 'node'} is unknown; mount a projected service-account token (not a legacy Secret token)`,
      );
    }
    const pod = await this.pods.getPod(ns, podName);
    const uid = caller.extra[POD_UID_EXTRA]?.[0];
    if (!pod || (uid && pod.uid !== uid)) {
      throw permissionDenied(`the caller's pod ${ns}/${podName} no longer exists; its token is stale`);
    }
    if (!pod.nodeName) throw permissionDenied(`the caller's pod ${ns}/${podName} is not scheduled on a node`);
    return pod.nodeName;
  }

  /** Whether `identity` is the caller's own service account: a node asking for its node identity. */
  isCallerIdentity(caller: Caller, identity: SpiffeId): boolean {
    const m = SA_USER.exec(caller.username);
    return m !== null && m[1] === identity.namespace && m[2] === identity.serviceAccount;
  }

  /**
   * Resolves when a live pod with `identity`'s namespace and service account is on `node`. The
   * node accounts' own namespace (mesh-system) is not for workloads: a node gets only its own
   * node identity there (isCallerIdentity), never the controller's or another component's, even
   * when such a pod runs on it.
   */
  async checkIdentityOnNode(identity: SpiffeId, node: string): Promise<void> {
    if (this.systemNamespaces.has(identity.namespace)) {
      throw permissionDenied(
        `node ${node} may not obtain identity ${formatSpiffeId(identity)}: in namespace ${identity.namespace} a node may obtain only its own node identity (${[...this.trusted].map((u) => u.replace('system:serviceaccount:', '').replace(':', '/')).join(', ')})`,
      );
    }
    const runs = (p: PodInfo) =>
      p.namespace === identity.namespace && p.serviceAccountName === identity.serviceAccount && p.nodeName === node && p.phase !== 'Succeeded' && p.phase !== 'Failed';
    if (this.cached?.(node).some(runs)) return;
    let pods;
    try {
      pods = await this.pods.podsOnNode(node);
    } catch (e) {
      throw e instanceof CaError ? e : new CaError('MESH_ERR_CA_KUBE', `listing pods on node ${node} failed: ${(e as Error).message}`, e);
    }
    if (!pods.some(runs)) {
      throw permissionDenied(
        `node ${node} may not obtain identity ${formatSpiffeId(identity)}: no running pod in namespace ${identity.namespace} with service account ${identity.serviceAccount} is scheduled on that node`,
      );
    }
  }
}
