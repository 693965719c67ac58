// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Original-destination handoff: move a captured connection's original destination from the
 * client socket's storage (all connect() has) to the tuple ztunnel's listener accepts. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "mesh_maps.bpf.h"

static __always_inline void mesh_skops_addrs(struct bpf_sock_ops *skops, struct mesh_addr *src, struct mesh_addr *dst)
{
	if (skops->family == AF_INET) {
		if (src)
			mesh_addr_v4(src, skops->local_ip4);
		mesh_addr_v4(dst, skops->remote_ip4);
	} else {
		if (src) {
			__u32 l[4] = { skops->local_ip6[0], skops->local_ip6[1], skops->local_ip6[2], skops->local_ip6[3] };
			mesh_addr_v6(src, l);
		}
		__u32 r[4] = { skops->remote_ip6[0], skops->remote_ip6[1], skops->remote_ip6[2], skops->remote_ip6[3] };
		mesh_addr_v6(dst, r);
	}
}

/* A connection made by a pod outside the mesh: a small OPENED event (its time and socket cookie)
 * and a request for its close, which reports it (OBSERVED). The agent's reader joins the two by
 * cookie, so that user space gets one record per connection. Measured against keeping the time in
 * the kernel (bench/capture.ts --prog-stats): socket storage cost 1848 ns of sockops time per
 * connect, an LRU hash by cookie 1614 ns, two ring-buffer events 1117 ns. */
static __always_inline void mesh_observe_established(struct bpf_sock_ops *skops, __u64 netns)
{
	if (!mesh_observe || bpf_map_lookup_elem(&mesh_pods, &netns))
		return; /* enrolled pods are reported by ztunnel; their passed connections by connect() */
	struct mesh_addr dst;
	mesh_skops_addrs(skops, 0, &dst);
	if (mesh_addr_is_loopback(&dst))
		return;
	struct mesh_event *e = mesh_event_reserve();
	if (!e)
		return; /* counted as lost; its close is not asked for either */
	/* Only what the reader reads from an OPENED record; it never goes further. */
	e->ts_ns = bpf_ktime_get_ns();
	e->sock_cookie = bpf_get_socket_cookie(skops);
	e->kind = MESH_EV_OPENED;
	bpf_ringbuf_submit(e, 0);
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
}

/* An observed connection closed: OBSERVED, with its tuple and byte counts. At TCP_CLOSE the socket
 * still has its addresses and its local port (the callback runs before tcp_set_state releases
 * the port). */
static __always_inline void mesh_observe_closed(struct bpf_sock_ops *skops)
{
	if (skops->args[1] != BPF_TCP_CLOSE)
		return;
	struct mesh_event *e = mesh_event_reserve();
	if (!e)
		return;
	e->ts_ns = bpf_ktime_get_ns();
	e->start_ns = 0; /* the reader's, from the OPENED event */
	e->sock_cookie = bpf_get_socket_cookie(skops);
	e->netns_cookie = bpf_get_netns_cookie(skops);
	mesh_skops_addrs(skops, &e->src, &e->dst);
	e->sport = (__u16)skops->local_port; /* host byte order in bpf_sock_ops */
	/* remote_port holds the network-order port in its upper half (on little-endian hosts). */
	e->dport = (__u16)bpf_ntohl(skops->remote_port);
	e->new_port = e->dport;
	e->kind = MESH_EV_OBSERVED;
	e->reason = MESH_R_NONE;
	e->family = skops->family == AF_INET ? AF_INET : AF_INET6;
	e->pad = 0;
	e->pod_id = 0;
	e->bytes_sent = skops->bytes_acked;
	e->bytes_recv = skops->bytes_received;
	bpf_ringbuf_submit(e, 0);
}

/* sockops on the pods' cgroup subtree: runs at TCP events of pod sockets. At ACTIVE_ESTABLISHED
 * the client has its source port and the server has not accepted yet: a captured connection's
 * original destination moves to the tuple ztunnel's listener sees; a connection of a pod outside
 * the mesh is noted (OPENED), and reported when it closes (OBSERVED). STATE_CB comes only for the
 * noted ones (the flag is set per socket). */
SEC("sockops")
int mesh_sockops(struct bpf_sock_ops *skops)
{
	if (skops->op == BPF_SOCK_OPS_STATE_CB) {
		mesh_observe_closed(skops);
		return 1;
	}
	if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		return 1;
	struct bpf_sock *sk = skops->sk;
	if (!sk)
		return 1;
	__u64 netns = bpf_get_netns_cookie(skops);
	struct mesh_orig_dst *orig = bpf_sk_storage_get(&mesh_pending, sk, 0, 0);
	if (!orig) {
		mesh_observe_established(skops, netns);
		return 1;
	}

	struct mesh_orig_key key = {};
	key.netns_cookie = netns;
	if (skops->family == AF_INET) {
		mesh_addr_v4(&key.addr, skops->local_ip4);
	} else {
		__u32 w[4] = { skops->local_ip6[0], skops->local_ip6[1], skops->local_ip6[2],
			       skops->local_ip6[3] };
		mesh_addr_v6(&key.addr, w);
	}
	key.port = (__u16)skops->local_port; /* host byte order in bpf_sock_ops */
	struct mesh_orig_dst val = *orig;
	bpf_map_update_elem(&mesh_orig_dst, &key, &val, BPF_ANY);
	bpf_sk_storage_delete(&mesh_pending, sk);
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
