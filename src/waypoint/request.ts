// What the waypoint knows of one HTTP request, shared by its parts: the router (router.ts), the
// L7 authorizer (authz.ts), resilience (resilience.ts) and request telemetry (telemetry.ts).

export type HttpProtocol = 'http' | 'grpc';

export interface RequestInfo {
  /** HTTP/1.1 or HTTP/2 (h2c) between the client and the waypoint. */
  version: '1.1' | '2';
  /** "grpc" when content-type is application/grpc*, as Istio's request_protocol says. */
  protocol: HttpProtocol;
  /** Upper case. */
  method: string;
  /** The request target: path and query, as received. */
  path: string;
  /** Host header or :authority, as received. */
  authority: string;
  /** Lower-case names. */
  headers: Readonly<Record<string, string | readonly string[] | undefined>>;
  source: {
    /** The verified SPIFFE ID of the peer that opened the HBONE tunnel, without "spiffe://"
     * (Istio's source.principal form: "cluster.local/ns/x/sa/y"); '' when unknown. */
    principal: string;
    namespace: string;
    ip: string;
  };
  destination: {
    /** The original destination the client dialled (service VIP or pod IP) and port. */
    ip: string;
    port: number;
    /** The Service addressed: "namespace/hostname"; '' when the client dialled a pod. */
    service: string;
  };
}

/** How a request ended, for telemetry: Envoy's response flags as Istio reports them. */
export type L7ResponseFlag =
  | '-'
  /** No healthy upstream. */
  | 'UH'
  /** Upstream connection failure. */
  | 'UF'
  /** Upstream overflow (circuit breaking). */
  | 'UO'
  /** Upstream request timeout. */
  | 'UT'
  /** No route configured. */
  | 'NR'
  /** Rate limited. */
  | 'RL'
  /** Fault injection: delay / abort. */
  | 'DI'
  | 'FI'
  /** Denied by authorization. */
  | 'RBAC'
  /** Downstream connection terminated / protocol error. */
  | 'DC'
  | 'DPE';
