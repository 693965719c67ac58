/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Structures shared between the eBPF programs and user space (src/datapath/layout.ts).
 * Fixed-width types only. Sizes and offsets are asserted by test/bpf/layout.test.ts against the
 * object's BTF, so the TypeScript codecs can never drift from these definitions.
 */
#ifndef MESH_SHARED_H
#define MESH_SHARED_H

/* SO_MARK on ztunnel's own sockets (the default of MESH_MARK, set as rodata mesh_mark). */
#define MESH_MARK_DEFAULT 0x539
/* ztunnel's deliveries to an app from the client's address carry this mark; the pod's delivery
 * routing ("fwmark MESH_DELIVERY_MARK lookup MESH_DELIVERY_TABLE") keeps them on lo. Set up by
 * the agent (addon/inpod.cc); the programs exempt such connections by mesh_deliveries instead. */
#define MESH_DELIVERY_MARK 0x53a
#define MESH_DELIVERY_TABLE 1338

/* ztunnel's listeners inside every enrolled pod's network namespace. */
#define MESH_PORT_OUTBOUND 15001
#define MESH_PORT_INBOUND 15006
#define MESH_PORT_HBONE 15008

/* mesh_pod.flags */
#define MESH_POD_F_ENROLLED 0x1
#define MESH_POD_F_TRANSPARENT 0x2 /* delivery routing is set up: ztunnel may connect from client IPs */

/* mesh_sock_key.kind: which of ztunnel's in-pod listening sockets. */
#define MESH_SOCK_INBOUND 0
#define MESH_SOCK_HBONE 1

/* mesh_excl_port_key.dir */
#define MESH_DIR_OUTBOUND 0
#define MESH_DIR_INBOUND 1

/* mesh_event.kind */
#define MESH_EV_CAPTURED 1 /* connect() rewritten to ztunnel's outbound listener */
#define MESH_EV_STEERED 2  /* inbound connection assigned to ztunnel's inbound/HBONE socket */
#define MESH_EV_PASSED 3   /* enrolled pod, but left alone (see reason) */
#define MESH_EV_REFUSED 4  /* enrolled pod, connection refused (fail closed): see reason */
#define MESH_EV_OBSERVED 5 /* a connection of a pod outside the mesh (plaintext), seen, not touched;
			    * at its close: tuple and byte counts (start_ns: filled in by the reader) */
#define MESH_EV_OPENED 6   /* that connection established: ts_ns and sock_cookie only. The agent's
			    * reader keeps the time by cookie and hands over the OBSERVED alone */

/* mesh_event.reason */
#define MESH_R_NONE 0
#define MESH_R_LOOPBACK 1   /* destination is loopback */
#define MESH_R_OWN_ADDR 2   /* destination is the pod's own address */
#define MESH_R_MESH_PORT 3  /* destination port is one of the mesh's own */
#define MESH_R_MARKED 4     /* socket carries ztunnel's mark */
#define MESH_R_EXCL_PORT 5  /* port excluded by the pod */
#define MESH_R_EXCL_CIDR 6  /* destination CIDR excluded by the pod */
#define MESH_R_INSIDE 7     /* inbound connection made from inside the pod's own netns */
#define MESH_R_NO_SOCKET 8  /* ztunnel has no socket registered for this pod */
#define MESH_R_DELIVERY 9   /* ztunnel delivering to the app from the client's address */
#define MESH_R_UNKNOWN_ADDR 10 /* an address of an enrolled pod's netns the mesh does not know
				* (link-local, added after enrolment, pod being unenrolled) */

/* An IPv6 address, or an IPv4 address in its v4-mapped form (::ffff:a.b.c.d). */
struct mesh_addr {
	__u8 a[16];
};

/* mesh_pods value; key: the pod's network-namespace cookie (__u64). */
struct mesh_pod {
	__u32 pod_id; /* agent-assigned small id, keys the exclusion maps */
	__u32 flags;
	struct mesh_addr addrs[2]; /* the pod's addresses; all-zero = unused slot */
};

/* mesh_excl_ports key; value __u8 (1). */
struct mesh_excl_port_key {
	__u32 pod_id;
	__u16 port; /* host byte order */
	__u8 dir;
	__u8 pad;
};

/* mesh_excl_cidrs key (LPM trie): prefixlen covers pod_id (32 bits) plus the address prefix. */
struct mesh_excl_cidr_key {
	__u32 prefixlen;
	__u32 pod_id;
	struct mesh_addr addr;
};

/* mesh_socks key (sockhash): which listening socket of which pod. */
struct mesh_sock_key {
	__u64 netns_cookie;
	__u32 kind;
	__u32 pad;
};

/* mesh_orig_dst key: the captured connection as ztunnel's outbound listener sees its peer. */
struct mesh_orig_key {
	__u64 netns_cookie;
	struct mesh_addr addr; /* the client socket's local address */
	__u16 port;            /* the client socket's local port, host byte order */
	__u16 pad[3];
};

/* mesh_deliveries key: a connection ztunnel is making, inside a pod's netns, from the client's
 * address (IP_TRANSPARENT) to the app. Value __u8 (1). */
struct mesh_delivery_key {
	struct mesh_addr src;
	struct mesh_addr dst;
	__u16 sport; /* host byte order */
	__u16 dport; /* host byte order */
};

/* mesh_pending and mesh_orig_dst value: where the application meant to connect. */
struct mesh_orig_dst {
	struct mesh_addr addr;
	__u16 port; /* host byte order */
	__u16 family; /* AF_INET or AF_INET6 as the application called connect() */
	__u32 pod_id;
	__u64 sock_cookie; /* the application's socket: joins ztunnel's record with the CAPTURED event */
};

/* One datapath decision, delivered through the mesh_events ring buffer. */
struct mesh_event {
	__u64 ts_ns;       /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) */
	__u64 sock_cookie; /* 0 for sk_lookup decisions (no socket exists yet) */
	__u64 netns_cookie;
	struct mesh_addr src;
	struct mesh_addr dst;
	__u16 sport;    /* host byte order; 0 when not yet known (connect) */
	__u16 dport;    /* host byte order */
	__u16 new_port; /* port the connection was redirected or steered to */
	__u8 kind;
	__u8 reason;
	__u16 family;
	__u16 pad;
	__u32 pod_id;
	__u64 bytes_sent; /* MESH_EV_OBSERVED only: bytes the pod sent (acked) and received */
	__u64 bytes_recv;
	__u64 start_ns; /* MESH_EV_OBSERVED only, written by the reader (addon/ringbuf.cc) from the
			 * MESH_EV_OPENED of the same socket: when it was established; 0 unknown */
};

#endif
