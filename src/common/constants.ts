// The numbers the eBPF programs, the agent, ztunnel and the controller must agree on, in one place.
// Those that bpf/mesh_shared.h also defines are checked against it by test/unit/constants.test.ts
// (it parses the header's #defines), so the two cannot drift apart.

/** SO_MARK on ztunnel's own sockets, which the capture programs leave alone (MESH_MARK_DEFAULT).
 * 0x539 is the mark Istio's ztunnel uses, so host rules that already know it keep working.
 * The mark in force is the MESH_MARK setting; this is only its default. */
export const ZTUNNEL_MARK_DEFAULT = 0x539;

/** ztunnel's listeners inside every enrolled pod's netns (MESH_PORT_*): Istio's ports. */
export const OUTBOUND_PORT = 15001;
export const INBOUND_PORT = 15006;
export const HBONE_PORT = 15008;
/** The three in-pod ports: never a destination of inbound traffic (a delivery there would loop). */
export const ZTUNNEL_PORTS: ReadonlySet<number> = new Set([OUTBOUND_PORT, INBOUND_PORT, HBONE_PORT]);

/** The controller's config stream and CA: istiod's ports (15010 xDS, 15012 its CA), so that
 * firewall rules and NetworkPolicies written for Istio fit. Defaults of MESH_XDS_PORT and
 * MESH_CA_PORT, and of the node's MESH_CONTROLLER and MESH_CA_ADDRESS. */
export const CONTROLLER_XDS_PORT = 15010;
export const CONTROLLER_CA_PORT = 15012;

/**
 * The mark on ztunnel's deliveries to an app from the client's own address (IP_TRANSPARENT). Not
 * the ztunnel mark: the pod's delivery routing ("fwmark DELIVERY_MARK lookup DELIVERY_TABLE",
 * addon/inpod.cc) sends everything carrying it to lo, and tcp_fwmark_accept gives it to the app's
 * accepted socket, so that the app's replies come back to ztunnel. It sits next to Istio's 0x539
 * (MESH_DELIVERY_MARK).
 */
export const DELIVERY_MARK = 0x53a;
/** The routing table of the delivery routing (MESH_DELIVERY_TABLE). */
export const DELIVERY_TABLE = 1338;
/** The priority of the delivery routing's rule: before the main table's (32766). */
export const DELIVERY_RULE_PRIORITY = 100;

/** mesh_pod.flags (MESH_POD_F_*). */
export const POD_F_ENROLLED = 0x1;
/** The pod's netns has delivery routing: ztunnel may connect to its app from the client's IP. */
export const POD_F_TRANSPARENT = 0x2;
/** mesh_sock_key.kind (MESH_SOCK_*): which of ztunnel's in-pod listening sockets. */
export const SOCK_INBOUND = 0;
export const SOCK_HBONE = 1;
/** mesh_excl_port_key.dir (MESH_DIR_*). */
export const DIR_OUTBOUND = 0;
export const DIR_INBOUND = 1;

/** The header's name for each value above that it defines, for the test that compares them. */
export const MESH_SHARED_H: Readonly<Record<string, number>> = Object.freeze({
  MESH_MARK_DEFAULT: ZTUNNEL_MARK_DEFAULT,
  MESH_PORT_OUTBOUND: OUTBOUND_PORT,
  MESH_PORT_INBOUND: INBOUND_PORT,
  MESH_PORT_HBONE: HBONE_PORT,
  MESH_DELIVERY_MARK: DELIVERY_MARK,
  MESH_DELIVERY_TABLE: DELIVERY_TABLE,
  MESH_POD_F_ENROLLED: POD_F_ENROLLED,
  MESH_POD_F_TRANSPARENT: POD_F_TRANSPARENT,
  MESH_SOCK_INBOUND: SOCK_INBOUND,
  MESH_SOCK_HBONE: SOCK_HBONE,
  MESH_DIR_OUTBOUND: DIR_OUTBOUND,
  MESH_DIR_INBOUND: DIR_INBOUND,
});

/**
 * A waypoint's drain on SIGTERM (src/waypoint/drain.ts), and the waypoint pod's grace period,
 * which the deployer derives from them: it keeps taking new tunnels for DELAY (not ready
 * meanwhile) while its removal reaches every ztunnel, then lets what is open finish for at most
 * TIMEOUT. MESH_DRAIN_DELAY and MESH_DRAIN_TIMEOUT override them.
 */
export const WAYPOINT_DRAIN_DELAY_MS = 3000;
export const WAYPOINT_DRAIN_TIMEOUT_MS = 3_600_000;
