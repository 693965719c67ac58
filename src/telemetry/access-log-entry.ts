// One access-log record per completed connection, in Istio's shape (REFERENCE.md: src.*, dst.*,
// direction, bytes, duration, error). ztunnel writes it as a JSON line and sends it, extended, to
// the node agent as a flow record (src/zds/protocol.ts).
export interface AccessLogEntry {
  direction: 'inbound' | 'outbound';
  src: { addr: string; workload?: string | undefined; namespace?: string | undefined; identity?: string | undefined };
  dst: {
    addr: string;
    hboneAddr?: string | undefined;
    service?: string | undefined;
    workload?: string | undefined;
    namespace?: string | undefined;
    identity?: string | undefined;
  };
  /** From ztunnel's side of the connection: outbound, what it sent to the destination (the
   * request); inbound, what it sent back to the client (the response). */
  bytesSent: number;
  bytesRecv: number;
  durationMs: number;
  error?: string | undefined;
}

/** "ip:port", with brackets for IPv6 (Rust's SocketAddr display, which ztunnel prints). */
export function formatAddr(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}
