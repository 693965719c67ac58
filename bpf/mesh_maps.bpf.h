/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The datapath's maps, pinned by name under <bpffs>/maps so that enrolment survives restarts of
 * the agent and of ztunnel. Every program includes this header; the objects are statically
 * linked into one (bpftool gen object), where these weak definitions resolve to one map each.
 */
#ifndef MESH_MAPS_BPF_H
#define MESH_MAPS_BPF_H

#include "mesh_shared.h"

#define MESH_MAX_PODS 16384

/* Enrolled pods. Written by the agent (enrol/unenrol); read by every program. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MESH_MAX_PODS);
	__type(key, __u64);
	__type(value, struct mesh_pod);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mesh_pods SEC(".maps") __weak;

/* Pod addresses -> netns cookie. sk_lookup cannot call bpf_get_netns_cookie() (measured on 6.18:
 * "program of this type cannot use helper"), so it finds the pod by the destination address.
 * Written by the agent; read by sk_lookup. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MESH_MAX_PODS * 2);
	__type(key, struct mesh_addr);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mesh_pod_addrs SEC(".maps") __weak;

/* Pod-uid bookkeeping for restarts: netns cookie -> uid. Written and read by the agent only. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MESH_MAX_PODS);
	__type(key, __u64);
	__type(value, char[64]);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mesh_pod_uids SEC(".maps") __weak;

/* Ports a pod excludes from capture. Written by the agent; read by connect4/6 and sk_lookup. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MESH_MAX_PODS * 4);
	__type(key, struct mesh_excl_port_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mesh_excl_ports SEC(".maps") __weak;

/* CIDRs a pod excludes from outbound capture. Written by the agent; read by connect4/6. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MESH_MAX_PODS * 4);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mesh_excl_cidr_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mesh_excl_cidrs SEC(".maps") __weak;

/* ztunnel's in-pod listening sockets. Written by ztunnel; read by sk_lookup. A closed socket
 * leaves the map by itself, which is what makes inbound capture fail closed. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, MESH_MAX_PODS * 2);
	__type(key, struct mesh_sock_key);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mesh_socks SEC(".maps") __weak;

/* Original destination of a captured client socket, between connect() and the handshake: socket
 * local storage, so it costs no hash update and is freed with the socket (a failed connect leaves
 * nothing behind). Written by connect4/6; read and deleted by sockops. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct mesh_orig_dst);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mesh_pending SEC(".maps") __weak;

/* Original destinations keyed by the tuple ztunnel's outbound listener accepts. Written by
 * sockops; read and deleted by ztunnel. LRU: entries ztunnel never claims age out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	/* Per-CPU LRU lists: updates on the connection path take no map-wide lock. */
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, struct mesh_orig_key);
	__type(value, struct mesh_orig_dst);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mesh_orig_dst SEC(".maps") __weak;

/* Connections ztunnel is about to make to an app from the client's own address. sk_lookup
 * cannot tell them from connections arriving from outside (its ingress_ifindex is the pod's
 * interface either way, measured), so ztunnel names each one here between bind() and the
 * handshake. Written and deleted by ztunnel; read by sk_lookup. LRU: a ztunnel killed in between
 * leaves nothing that matters. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct mesh_delivery_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mesh_deliveries SEC(".maps") __weak;

/* Decision events. Written by every program; read by the agent's ring-buffer thread. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mesh_events SEC(".maps") __weak;

/* Counters the programs keep for the agent (index MESH_STAT_*). Written by the programs. */
#define MESH_STAT_EVENTS_LOST 0
#define MESH_STAT_MAX 4
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MESH_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mesh_stats SEC(".maps") __weak;

/* Load-time settings (rodata), set by the agent before load. */
const volatile __u32 mesh_mark __weak = MESH_MARK_DEFAULT;
const volatile __u16 mesh_outbound_port __weak = MESH_PORT_OUTBOUND;
const volatile __u16 mesh_inbound_port __weak = MESH_PORT_INBOUND;
const volatile __u16 mesh_hbone_port __weak = MESH_PORT_HBONE;
const volatile __u8 mesh_emit_passed __weak = 1;
/* Report connections of pods outside the mesh (MESH_EV_OPENED, MESH_EV_OBSERVED) for flows. */
const volatile __u8 mesh_observe __weak = 1;

/* Emits struct mesh_event into the object's BTF (a ring buffer has no value type), so that its
 * layout can be checked against src/datapath/layout.ts. Never read. */
const volatile struct mesh_event mesh_event_btf_anchor __weak;

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#ifndef IPPROTO_TCP
#define IPPROTO_TCP 6
#endif

static __always_inline void mesh_addr_v4(struct mesh_addr *m, __u32 be_addr)
{
	__builtin_memset(m, 0, sizeof(*m));
	m->a[10] = 0xff;
	m->a[11] = 0xff;
	__builtin_memcpy(&m->a[12], &be_addr, 4);
}

static __always_inline void mesh_addr_v6(struct mesh_addr *m, const __u32 *be_words)
{
	__builtin_memcpy(&m->a[0], &be_words[0], 4);
	__builtin_memcpy(&m->a[4], &be_words[1], 4);
	__builtin_memcpy(&m->a[8], &be_words[2], 4);
	__builtin_memcpy(&m->a[12], &be_words[3], 4);
}

static __always_inline int mesh_addr_eq(const struct mesh_addr *x, const struct mesh_addr *y)
{
	const __u64 *a = (const __u64 *)x->a, *b = (const __u64 *)y->a;
	return a[0] == b[0] && a[1] == b[1];
}

static __always_inline int mesh_addr_is_zero(const struct mesh_addr *x)
{
	const __u64 *a = (const __u64 *)x->a;
	return a[0] == 0 && a[1] == 0;
}

/* True for 127.0.0.0/8 (v4-mapped) and ::1. */
static __always_inline int mesh_addr_is_loopback(const struct mesh_addr *x)
{
	const __u64 *a = (const __u64 *)x->a;
	if (a[0] != 0)
		return 0;
	if (x->a[8] == 0 && x->a[9] == 0 && x->a[10] == 0xff && x->a[11] == 0xff)
		return x->a[12] == 127;
	return a[1] == bpf_cpu_to_be64(1);
}

static __always_inline int mesh_addr_is_v4mapped(const struct mesh_addr *x)
{
	const __u64 *a = (const __u64 *)x->a;
	return a[0] == 0 && x->a[8] == 0 && x->a[9] == 0 && x->a[10] == 0xff && x->a[11] == 0xff;
}

static __always_inline int mesh_pod_owns(const struct mesh_pod *pod, const struct mesh_addr *x)
{
	return mesh_addr_eq(&pod->addrs[0], x) || mesh_addr_eq(&pod->addrs[1], x);
}

static __always_inline int mesh_port_excluded(__u32 pod_id, __u16 port, __u8 dir)
{
	struct mesh_excl_port_key k = { .pod_id = pod_id, .port = port, .dir = dir };
	return bpf_map_lookup_elem(&mesh_excl_ports, &k) != 0;
}

static __always_inline int mesh_is_mesh_port(__u16 port)
{
	return port == mesh_outbound_port || port == mesh_inbound_port || port == mesh_hbone_port;
}

/* A ring-buffer slot for one event, or NULL with the loss counted (the agent reports it). */
static __always_inline struct mesh_event *mesh_event_reserve(void)
{
	struct mesh_event *e = bpf_ringbuf_reserve(&mesh_events, sizeof(*e), 0);
	if (!e) {
		__u32 k = MESH_STAT_EVENTS_LOST;
		__u64 *lost = bpf_map_lookup_elem(&mesh_stats, &k);
		if (lost)
			*lost += 1;
	}
	return e;
}

static __always_inline void mesh_emit(__u8 kind, __u8 reason, __u64 sock_cookie, __u64 netns_cookie,
				      __u32 pod_id, __u16 family, const struct mesh_addr *src,
				      __u16 sport, const struct mesh_addr *dst, __u16 dport,
				      __u16 new_port)
{
	if (kind == MESH_EV_PASSED && !mesh_emit_passed)
		return;
	struct mesh_event *e = mesh_event_reserve();
	if (!e)
		return;
	e->ts_ns = bpf_ktime_get_ns();
	e->sock_cookie = sock_cookie;
	e->netns_cookie = netns_cookie;
	if (src)
		e->src = *src;
	else
		__builtin_memset(&e->src, 0, sizeof(e->src));
	e->dst = *dst;
	e->sport = sport;
	e->dport = dport;
	e->new_port = new_port;
	e->kind = kind;
	e->reason = reason;
	e->family = family;
	e->pad = 0;
	e->pod_id = pod_id;
	e->bytes_sent = 0;
	e->bytes_recv = 0;
	e->start_ns = 0;
	bpf_ringbuf_submit(e, 0);
}

#endif
