// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Inbound capture: steer connections arriving at an enrolled pod to ztunnel's in-pod sockets. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "mesh_maps.bpf.h"

#define SK_DROP 0
#define SK_PASS 1

/* sk_lookup on each enrolled pod's network namespace: runs when a TCP SYN (or UDP datagram)
 * looks for a listening socket there. HBONE (15008) goes to ztunnel's HBONE socket, every other
 * port to its plaintext inbound socket. With no socket registered, or for an address of the pod
 * the mesh does not know, the lookup fails, so the client gets a reset: an enrolled pod never
 * receives plaintext that bypassed ztunnel. */
SEC("sk_lookup")
int mesh_sk_lookup(struct bpf_sk_lookup *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	struct mesh_addr src, dst;
	__u16 family = ctx->family;
	if (family == AF_INET) {
		mesh_addr_v4(&src, ctx->remote_ip4);
		mesh_addr_v4(&dst, ctx->local_ip4);
	} else {
		__u32 s[4] = { ctx->remote_ip6[0], ctx->remote_ip6[1], ctx->remote_ip6[2], ctx->remote_ip6[3] };
		__u32 d[4] = { ctx->local_ip6[0], ctx->local_ip6[1], ctx->local_ip6[2], ctx->local_ip6[3] };
		mesh_addr_v6(&src, s);
		mesh_addr_v6(&dst, d);
	}
	__u16 sport = bpf_ntohs(ctx->remote_port);
	__u16 dport = (__u16)ctx->local_port;
	/* The pod is found by the address the connection is for (see mesh_pod_addrs). */
	__u64 *nsp = bpf_map_lookup_elem(&mesh_pod_addrs, &dst);
	__u64 netns = nsp ? *nsp : 0;
	struct mesh_pod *pod = nsp ? bpf_map_lookup_elem(&mesh_pods, &netns) : NULL;
	if (!pod) {
		/* This program is attached only to enrolled pods' netns, so the destination is an
		 * address of an enrolled pod that the mesh cannot place: its IPv6 link-local address,
		 * one added after enrolment, or one whose pod is being unenrolled. Without the pod there
		 * is no ztunnel socket to steer to (the netns cookie is out of reach here), so the
		 * connection is refused unless the pod makes it itself: from loopback, or from that very
		 * address. From outside, such a source is dropped by the kernel (loopback; a local IPv4
		 * source is a martian) or spoofed blind, since the replies stay in the pod — the trust
		 * the known-address path below gives the pod's own addresses. Passed without an event,
		 * as before: every connection to ztunnel's outbound listener comes this way. */
		if (mesh_addr_is_loopback(&src) || mesh_addr_eq(&src, &dst))
			return SK_PASS;
		mesh_emit(MESH_EV_REFUSED, MESH_R_UNKNOWN_ADDR, 0, netns, 0, family, &src, sport, &dst, dport, 0);
		return SK_DROP;
	}

	/* Made inside the pod's netns (the app calling itself, or ztunnel delivering to the app
	 * from a loopback source such as 127.0.0.6): its source is the pod's own or loopback. */
	if (mesh_addr_is_loopback(&src) || mesh_pod_owns(pod, &src)) {
		mesh_emit(MESH_EV_PASSED, MESH_R_INSIDE, 0, netns, pod->pod_id, family, &src, sport, &dst,
			  dport, dport);
		return SK_PASS;
	}
	/* ztunnel delivering to the app from the client's address: it named the tuple first. */
	struct mesh_delivery_key dk = { .src = src, .dst = dst, .sport = sport, .dport = dport };
	if (bpf_map_lookup_elem(&mesh_deliveries, &dk)) {
		mesh_emit(MESH_EV_PASSED, MESH_R_DELIVERY, 0, netns, pod->pod_id, family, &src, sport, &dst,
			  dport, dport);
		return SK_PASS;
	}
	if (mesh_port_excluded(pod->pod_id, dport, MESH_DIR_INBOUND)) {
		mesh_emit(MESH_EV_PASSED, MESH_R_EXCL_PORT, 0, netns, pod->pod_id, family, &src, sport, &dst,
			  dport, dport);
		return SK_PASS;
	}

	struct mesh_sock_key key = { .netns_cookie = netns };
	key.kind = dport == mesh_hbone_port ? MESH_SOCK_HBONE : MESH_SOCK_INBOUND;
	__u16 to = key.kind == MESH_SOCK_HBONE ? mesh_hbone_port : mesh_inbound_port;
	struct bpf_sock *sk = bpf_map_lookup_elem(&mesh_socks, &key);
	if (!sk) {
		mesh_emit(MESH_EV_REFUSED, MESH_R_NO_SOCKET, 0, netns, pod->pod_id, family, &src, sport, &dst,
			  dport, to);
		return SK_DROP;
	}
	/* NO_REUSEPORT: during a ztunnel handover the old and the new listener share the port in a
	 * reuseport group; the kernel would otherwise pick among them by hash, and the sockmap entry
	 * (the new one, swapped in atomically) would not decide. */
	long err = bpf_sk_assign(ctx, sk, BPF_SK_LOOKUP_F_NO_REUSEPORT);
	bpf_sk_release(sk);
	if (err) {
		mesh_emit(MESH_EV_REFUSED, MESH_R_NO_SOCKET, 0, netns, pod->pod_id, family, &src, sport, &dst,
			  dport, to);
		return SK_DROP;
	}
	mesh_emit(MESH_EV_STEERED, MESH_R_NONE, 0, netns, pod->pod_id, family, &src, sport, &dst, dport, to);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
