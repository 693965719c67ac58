// SPDX-License-Identifier: Apache-2.0
// In-pod routing for ztunnel's deliveries from the client's address.
//
// ztunnel connects to the app from the client's own IP (IP_TRANSPARENT), so the app sees who
// called it. The app's replies are addressed to that foreign IP and would leave through the pod's
// eth0; inside the pod's netns we make them local instead, without conntrack:
//   - net.ipv4.tcp_fwmark_accept=1: an accepted socket takes the mark of the SYN that made it, so
//     the app's socket for a delivered connection carries ztunnel's delivery mark;
//   - net.ipv4/ipv6.fwmark_reflect=1: what the kernel answers on no socket's behalf (a RST from a
//     port nothing listens on) takes the mark of the packet it answers, so ztunnel gets its
//     ECONNREFUSED at once instead of the RST leaving for the real client (measured: refused in
//     0 ms with it, a SYN retried until timeout without);
//   - a rule "fwmark <mark> lookup <table>" and, in that table, "local default dev lo": packets
//     with the mark (ztunnel's SYN and every reply of the app) are delivered locally, to ztunnel's
//     transparent socket.
// Written with libmnl on a thread that entered the netns (a netlink socket talks to the netns it
// was created in; /proc/sys/net shows the netns of the task that opens it).
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/fib_rules.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ctime>
#include <vector>

#include "common.h"

namespace mesh {
namespace {

struct RoutingSpec {
  uint32_t mark = 0;
  uint32_t table = 0;
  uint32_t priority = 0;
  bool enable = true;
  std::vector<int> families;  // AF_INET, AF_INET6
  // Where the netns's net sysctls are written: /proc/sys/net, or a writable mount of it when the
  // process's own /proc/sys is read-only (a container's; the chart mounts /host/proc/sys/net).
  std::string sysctlNetDir = "/proc/sys/net";
};

// Sends one request and waits for its ACK; returns 0 or -errno.
int Talk(mnl_socket* nl, nlmsghdr* nlh) {
  static thread_local uint32_t seq = static_cast<uint32_t>(time(nullptr));
  nlh->nlmsg_seq = ++seq;
  if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) return -errno;
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  unsigned portid = mnl_socket_get_portid(nl);
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(nl, buf.data(), buf.size());
    if (n < 0) return -errno;
    int rc = mnl_cb_run(buf.data(), n, nlh->nlmsg_seq, portid, nullptr, nullptr);
    if (rc < 0) return -errno;
    if (rc == MNL_CB_STOP) return 0;
  }
}

int Rule(mnl_socket* nl, const RoutingSpec& s, int family) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = s.enable ? RTM_NEWRULE : RTM_DELRULE;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (s.enable ? NLM_F_CREATE | NLM_F_EXCL : 0);
  auto* frh = static_cast<fib_rule_hdr*>(mnl_nlmsg_put_extra_header(nlh, sizeof(fib_rule_hdr)));
  frh->family = static_cast<uint8_t>(family);
  frh->action = FR_ACT_TO_TBL;
  frh->table = RT_TABLE_UNSPEC;
  mnl_attr_put_u32(nlh, FRA_FWMARK, s.mark);
  mnl_attr_put_u32(nlh, FRA_FWMASK, 0xffffffff);
  mnl_attr_put_u32(nlh, FRA_TABLE, s.table);
  mnl_attr_put_u32(nlh, FRA_PRIORITY, s.priority);
  int rc = Talk(nl, nlh);
  // Adding a rule that is there already (a restarted agent) or deleting one that is gone is fine.
  if (rc == -EEXIST && s.enable) return 0;
  if (rc == -ENOENT && !s.enable) return 0;
  return rc;
}

int Route(mnl_socket* nl, const RoutingSpec& s, int family) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = s.enable ? RTM_NEWROUTE : RTM_DELROUTE;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (s.enable ? NLM_F_CREATE | NLM_F_REPLACE : 0);
  auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
  rtm->rtm_family = static_cast<uint8_t>(family);
  rtm->rtm_dst_len = 0;  // default: every destination
  rtm->rtm_table = RT_TABLE_UNSPEC;
  rtm->rtm_protocol = RTPROT_STATIC;
  rtm->rtm_scope = RT_SCOPE_HOST;
  rtm->rtm_type = RTN_LOCAL;
  mnl_attr_put_u32(nlh, RTA_TABLE, s.table);
  unsigned lo = if_nametoindex("lo");
  if (lo == 0) return -errno;
  mnl_attr_put_u32(nlh, RTA_OIF, lo);
  int rc = Talk(nl, nlh);
  if (rc == -ESRCH && !s.enable) return 0;
  return rc;
}

int Sysctl(const char* path, const char* value, NativeError* err) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    *err = {errno, std::string("open(") + path + ")"};
    return -1;
  }
  ssize_t n = write(fd, value, strlen(value));
  int e = errno;
  close(fd);
  if (n < 0) {
    *err = {e, std::string("write(") + path + ")"};
    return -1;
  }
  return 0;
}

int Apply(const RoutingSpec& s, NativeError* err);

// Enabling failed part-way: take back what was applied, so that nothing is left that the agent
// does not know about (it records the pod as not transparent).
void RollBack(const RoutingSpec& s) {
  RoutingSpec off = s;
  off.enable = false;
  NativeError ignored;
  Apply(off, &ignored);
}

int Apply(const RoutingSpec& s, NativeError* err) {
  mnl_socket* nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
  if (!nl) {
    *err = {errno, "mnl_socket_open(NETLINK_ROUTE)"};
    return -1;
  }
  if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
    *err = {errno, "mnl_socket_bind"};
    mnl_socket_close(nl);
    return -1;
  }
  int rc = 0;
  // Enabling: route before rule, so the rule never points at an empty table. Disabling: the
  // other way round.
  for (int family : s.families) {
    const char* fam = family == AF_INET6 ? "IPv6" : "IPv4";
    int a = s.enable ? Route(nl, s, family) : Rule(nl, s, family);
    if (a < 0) {
      *err = {-a, std::string(s.enable ? "netlink RTM_NEWROUTE local default dev lo (" : "netlink RTM_DELRULE fwmark (") + fam + ")"};
      rc = -1;
      break;
    }
    int b = s.enable ? Rule(nl, s, family) : Route(nl, s, family);
    if (b < 0) {
      *err = {-b, std::string(s.enable ? "netlink RTM_NEWRULE fwmark (" : "netlink RTM_DELROUTE local default dev lo (") + fam + ")"};
      rc = -1;
      break;
    }
  }
  mnl_socket_close(nl);
  if (rc < 0) {
    if (s.enable) RollBack(s);
    return rc;
  }
  // Disabling leaves the sysctls alone: with the rule gone they change nothing, and the app may
  // have wanted them for its own reasons.
  if (!s.enable) return 0;
  bool v6 = false;
  for (int f : s.families) v6 |= f == AF_INET6;
  const std::string& dir = s.sysctlNetDir;
  if (Sysctl((dir + "/ipv4/tcp_fwmark_accept").c_str(), "1", err) < 0 ||
      Sysctl((dir + "/ipv4/fwmark_reflect").c_str(), "1", err) < 0 ||
      (v6 && Sysctl((dir + "/ipv6/fwmark_reflect").c_str(), "1", err) < 0)) {
    RollBack(s);
    return -1;
  }
  return 0;
}

// netnsDeliveryRouting(netnsPath, {mark, table, priority, enable, families: [4|6...], sysctlNetDir?})
Napi::Value NetnsDeliveryRouting(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "netnsPath");
  if (info.Length() < 2 || !info[1].IsObject()) throw Napi::TypeError::New(env, "options must be an object");
  Napi::Object o = info[1].As<Napi::Object>();
  RoutingSpec s;
  s.mark = o.Get("mark").As<Napi::Number>().Uint32Value();
  s.table = o.Get("table").As<Napi::Number>().Uint32Value();
  s.priority = o.Get("priority").As<Napi::Number>().Uint32Value();
  s.enable = o.Get("enable").ToBoolean();
  if (o.Has("sysctlNetDir") && o.Get("sysctlNetDir").IsString()) s.sysctlNetDir = o.Get("sysctlNetDir").As<Napi::String>().Utf8Value();
  Napi::Array fams = o.Get("families").As<Napi::Array>();
  for (uint32_t i = 0; i < fams.Length(); i++)
    s.families.push_back(fams.Get(i).As<Napi::Number>().Int32Value() == 6 ? AF_INET6 : AF_INET);
  NativeError err;
  if (InNetns(path, [&](NativeError* e) { return Apply(s, e); }, &err) < 0) throw MakeError(env, err);
  return env.Undefined();
}

}  // namespace

void InitInpod(Napi::Env env, Napi::Object exports) {
  exports.Set("netnsDeliveryRouting", Napi::Function::New(env, NetnsDeliveryRouting));
}

}  // namespace mesh
