// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Original-destination handoff: move a captured connection's original destination from the
 * client socket's storage (all connect() has) to the tuple ztunnel's listener accepts. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "mesh_maps.bpf.h"

/* sockops on the pods' cgroup subtree: runs at TCP events of pod sockets; we act on
 * ACTIVE_ESTABLISHED, when the client has its source port and before the server's accept(). */
SEC("sockops")
int mesh_sockops(struct bpf_sock_ops *skops)
{
	if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		return 1;
	struct bpf_sock *sk = skops->sk;
	if (!sk)
		return 1;
	struct mesh_orig_dst *orig = bpf_sk_storage_get(&mesh_pending, sk, 0, 0);
	if (!orig)
		return 1;

	struct mesh_orig_key key = {};
	key.netns_cookie = bpf_get_netns_cookie(skops);
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
