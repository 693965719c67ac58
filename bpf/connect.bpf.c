// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Outbound capture: rewrite an enrolled pod's connect() to ztunnel's in-pod outbound listener. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "mesh_maps.bpf.h"

/* Decide for one connect(); returns the reason to leave it alone, or MESH_R_NONE to capture. */
static __always_inline __u8 mesh_outbound_verdict(struct bpf_sock_addr *ctx, const struct mesh_pod *pod,
						  const struct mesh_addr *dst, __u16 dport)
{
	if (mesh_addr_is_loopback(dst))
		return MESH_R_LOOPBACK;
	if (mesh_pod_owns(pod, dst))
		return MESH_R_OWN_ADDR;
	if (mesh_is_mesh_port(dport))
		return MESH_R_MESH_PORT;
	struct bpf_sock *sk = ctx->sk;
	if (sk && sk->mark == mesh_mark)
		return MESH_R_MARKED;
	if (mesh_port_excluded(pod->pod_id, dport, MESH_DIR_OUTBOUND))
		return MESH_R_EXCL_PORT;
	struct mesh_excl_cidr_key ck = { .prefixlen = 32 + 128, .pod_id = pod->pod_id, .addr = *dst };
	if (bpf_map_lookup_elem(&mesh_excl_cidrs, &ck))
		return MESH_R_EXCL_CIDR;
	return MESH_R_NONE;
}

static __always_inline int mesh_capture(struct bpf_sock_addr *ctx, __u16 family, int v4)
{
	if (ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP)
		return 1;
	__u64 netns = bpf_get_netns_cookie(ctx);
	struct mesh_pod *pod = bpf_map_lookup_elem(&mesh_pods, &netns);
	if (!pod)
		return 1; /* not enrolled: the common case for every other pod, stays silent */

	struct mesh_addr dst;
	if (v4) {
		mesh_addr_v4(&dst, ctx->user_ip4);
	} else {
		__u32 w[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3] };
		mesh_addr_v6(&dst, w);
	}
	__u16 dport = bpf_ntohs(ctx->user_port);
	__u64 cookie = bpf_get_socket_cookie(ctx);

	__u8 reason = mesh_outbound_verdict(ctx, pod, &dst, dport);
	if (reason != MESH_R_NONE) {
		mesh_emit(MESH_EV_PASSED, reason, cookie, netns, pod->pod_id, family, 0, 0, &dst, dport, dport);
		return 1;
	}

	struct mesh_orig_dst *orig = bpf_sk_storage_get(&mesh_pending, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!orig)
		return 1; /* out of memory: leave the connect alone rather than lose its destination */
	orig->addr = dst;
	orig->port = dport;
	orig->family = family;
	orig->pod_id = pod->pod_id;
	orig->sock_cookie = cookie;

	if (v4) {
		ctx->user_ip4 = bpf_htonl(0x7f000001);
	} else {
		/* A dual-stack socket connecting to an IPv4 peer stays IPv4: ::ffff:127.0.0.1; else ::1.
		 * All four words are written on one path: the verifier rejects the offset ctx pointer
		 * that clang makes when the stores are split across branches. */
		int mapped = mesh_addr_is_v4mapped(&dst);
		__u32 w2 = mapped ? bpf_htonl(0x0000ffff) : 0;
		__u32 w3 = mapped ? bpf_htonl(0x7f000001) : bpf_htonl(1);
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = w2;
		ctx->user_ip6[3] = w3;
	}
	ctx->user_port = bpf_htons(mesh_outbound_port);
	mesh_emit(MESH_EV_CAPTURED, MESH_R_NONE, cookie, netns, pod->pod_id, family, 0, 0, &dst, dport,
		  mesh_outbound_port);
	return 1;
}

/* cgroup/connect4 on the pods' cgroup subtree: runs when a pod's IPv4 socket calls connect(). */
SEC("cgroup/connect4")
int mesh_connect4(struct bpf_sock_addr *ctx)
{
	return mesh_capture(ctx, AF_INET, 1);
}

/* cgroup/connect6 on the pods' cgroup subtree: runs when a pod's IPv6 socket calls connect(). */
SEC("cgroup/connect6")
int mesh_connect6(struct bpf_sock_addr *ctx)
{
	return mesh_capture(ctx, AF_INET6, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
