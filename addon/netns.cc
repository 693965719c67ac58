// SPDX-License-Identifier: Apache-2.0
// Network-namespace helpers: sockets created inside another netns, netns and socket cookies.
//
// A socket belongs to the netns its creator was in at socket() time, forever. We enter the target
// netns on a short-lived native thread (setns affects only the calling thread), create and bind the
// socket there and hand its fd back; Node adopts it with listen({fd}) or new net.Socket({fd}).
// Node's own threads never change namespace.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <vector>
#include <thread>

#include "common.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif
#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

namespace mesh {

// See common.h: fn on a fresh thread that has entered the netns at path.
int InNetns(const std::string& path, const std::function<int(NativeError*)>& fn, NativeError* err) {
  int nsfd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) {
    *err = {errno, "open(" + path + ")", "is the network namespace path right, and does it still exist?"};
    return -1;
  }
  int result = -1;
  std::thread t([&] {
    if (setns(nsfd, CLONE_NEWNET) < 0) {
      *err = {errno, "setns(" + path + ")", "entering a network namespace needs CAP_SYS_ADMIN"};
      return;
    }
    result = fn(err);
  });
  t.join();
  close(nsfd);
  return result;
}

namespace {

struct SocketSpec {
  int family = AF_INET;
  std::vector<uint8_t> addr;  // empty: any address
  int port = 0;
  bool listen = false;
  int backlog = 511;
  int64_t mark = -1;
  bool v6only = false;
  bool freebind = false;
  bool transparent = false;
  // SO_REUSEPORT: an old and a new ztunnel hold listeners on the same in-pod port during a
  // handover (the kernel requires the option on every socket of the group, and the same uid).
  bool reuseport = false;
};

// Applies s (mark, reuse, v6only, freebind, transparent, bind, listen) to a socket that already
// exists: a socket belongs to the netns it was created in, so this may run on any thread.
// Closes fd on failure.
int ConfigureSocket(int fd, const SocketSpec& s, NativeError* err) {
  auto fail = [&](const char* what) {
    *err = {errno, what};
    close(fd);
    return -1;
  };
  int one = 1;
  if (s.mark >= 0) {
    int mark = static_cast<int>(s.mark);
    if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0) return fail("setsockopt(SO_MARK)");
  }
  if (s.listen && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
    return fail("setsockopt(SO_REUSEADDR)");
  if (s.reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
    return fail("setsockopt(SO_REUSEPORT)");
  if (s.family == AF_INET6) {
    int v6only = s.v6only ? 1 : 0;
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) < 0)
      return fail("setsockopt(IPV6_V6ONLY)");
  }
  if (s.freebind && setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one)) < 0)
    return fail("setsockopt(IP_FREEBIND)");
  // IP_TRANSPARENT: bind to an address the netns does not own (the client's, when ztunnel
  // delivers to the app); needs CAP_NET_ADMIN (or CAP_NET_RAW).
  if (s.transparent) {
    int rc = s.family == AF_INET6 ? setsockopt(fd, IPPROTO_IPV6, IPV6_TRANSPARENT, &one, sizeof(one))
                                  : setsockopt(fd, IPPROTO_IP, IP_TRANSPARENT, &one, sizeof(one));
    if (rc < 0) return fail("setsockopt(IP_TRANSPARENT)");
  }
  if (s.listen || s.port != 0 || !s.addr.empty()) {
    sockaddr_storage ss{};
    socklen_t len;
    if (s.family == AF_INET) {
      auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
      sin->sin_family = AF_INET;
      sin->sin_port = htons(s.port);
      if (s.addr.size() == 4) std::memcpy(&sin->sin_addr, s.addr.data(), 4);
      len = sizeof(*sin);
    } else {
      auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
      sin6->sin6_family = AF_INET6;
      sin6->sin6_port = htons(s.port);
      if (s.addr.size() == 16) std::memcpy(&sin6->sin6_addr, s.addr.data(), 16);
      len = sizeof(*sin6);
    }
    if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) < 0) return fail("bind");
  }
  if (s.listen && ::listen(fd, s.backlog) < 0) return fail("listen");
  return fd;
}

int MakeSocket(const SocketSpec& s, NativeError* err) {
  int fd = socket(s.family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_TCP);
  if (fd < 0) {
    *err = {errno, "socket"};
    return -1;
  }
  return ConfigureSocket(fd, s, err);
}

SocketSpec ParseSpec(Napi::Env env, const Napi::Value& v) {
  if (!v.IsObject()) throw Napi::TypeError::New(env, "options must be an object");
  Napi::Object o = v.As<Napi::Object>();
  SocketSpec s;
  s.family = o.Get("family").As<Napi::Number>().Int32Value() == 6 ? AF_INET6 : AF_INET;
  if (o.Has("addr") && o.Get("addr").IsBuffer()) {
    auto b = o.Get("addr").As<Napi::Buffer<uint8_t>>();
    s.addr.assign(b.Data(), b.Data() + b.Length());
  }
  if (o.Has("port")) s.port = o.Get("port").As<Napi::Number>().Int32Value();
  if (o.Has("listen")) s.listen = o.Get("listen").ToBoolean();
  if (o.Has("backlog")) s.backlog = o.Get("backlog").As<Napi::Number>().Int32Value();
  if (o.Has("mark") && o.Get("mark").IsNumber()) s.mark = o.Get("mark").As<Napi::Number>().Int64Value();
  if (o.Has("v6only")) s.v6only = o.Get("v6only").ToBoolean();
  if (o.Has("freebind")) s.freebind = o.Get("freebind").ToBoolean();
  if (o.Has("transparent")) s.transparent = o.Get("transparent").ToBoolean();
  if (o.Has("reuseport")) s.reuseport = o.Get("reuseport").ToBoolean();
  return s;
}

// netnsSocket(netnsPath, {family, addr?, port, listen, backlog, mark?, v6only, freebind,
//                         transparent}) -> fd
Napi::Value NetnsSocket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "netnsPath");
  SocketSpec s = ParseSpec(env, info.Length() > 1 ? info[1] : env.Undefined());
  NativeError err;
  int fd = InNetns(path, [&](NativeError* e) { return MakeSocket(s, e); }, &err);
  if (fd < 0) throw MakeError(env, err);
  return Napi::Number::New(env, fd);
}

// count fresh TCP sockets (non-blocking, CLOEXEC, unbound) of the netns at path, made on one
// thread: entering a netns costs a thread and a setns (~90 us, measured; milliseconds of waiting
// for that thread to be scheduled on a busy node), which a batch pays once. Nothing is left open
// on failure.
int MakeSocketBatch(const std::string& path, int family, int count, std::vector<int>* fds, NativeError* err) {
  return InNetns(path, [&](NativeError* e) {
    for (int i = 0; i < count; i++) {
      int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_TCP);
      if (fd < 0) {
        *e = {errno, "socket"};
        for (int f : *fds) close(f);
        fds->clear();
        return -1;
      }
      fds->push_back(fd);
    }
    return 0;
  }, err);
}

Napi::Array FdArray(Napi::Env env, const std::vector<int>& fds) {
  Napi::Array out = Napi::Array::New(env, fds.size());
  for (size_t i = 0; i < fds.size(); i++) out.Set(i, Napi::Number::New(env, fds[i]));
  return out;
}

// (netnsPath, family, count), as both batch calls take them.
struct BatchArgs {
  std::string path;
  int family;
  int count;
};

BatchArgs ReadBatchArgs(const Napi::CallbackInfo& info) {
  BatchArgs a{ArgString(info, 0, "netnsPath"), ArgInt(info, 1, "family") == 6 ? AF_INET6 : AF_INET, ArgInt(info, 2, "count")};
  if (a.count < 1 || a.count > 1024) throw Napi::RangeError::New(info.Env(), "count must be in 1-1024");
  return a;
}

// netnsSocketBatch(netnsPath, family, count) -> fd[]: MakeSocketBatch, the event loop waiting.
// configureSocket() then finishes each one.
Napi::Value NetnsSocketBatch(const Napi::CallbackInfo& info) {
  BatchArgs a = ReadBatchArgs(info);
  std::vector<int> fds;
  NativeError err;
  if (MakeSocketBatch(a.path, a.family, a.count, &fds, &err) < 0) throw MakeError(info.Env(), err);
  return FdArray(info.Env(), fds);
}

// The same batch off the event loop: a pool thread starts the netns thread and waits for it, so
// a ztunnel refilling its spares keeps serving connections meanwhile.
class SocketBatchWorker : public Napi::AsyncWorker {
 public:
  SocketBatchWorker(Napi::Env env, std::string path, int family, int count)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), path_(std::move(path)), family_(family), count_(count) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    if (MakeSocketBatch(path_, family_, count_, &fds_, &error_) < 0) SetError(error_.syscall);
  }

  void OnOK() override { deferred_.Resolve(FdArray(Env(), fds_)); }

  void OnError(const Napi::Error&) override { deferred_.Reject(MakeError(Env(), error_).Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::string path_;
  int family_;
  int count_;
  std::vector<int> fds_;
  NativeError error_;
};

// netnsSocketBatchAsync(netnsPath, family, count) -> Promise<fd[]>
Napi::Value NetnsSocketBatchAsync(const Napi::CallbackInfo& info) {
  BatchArgs a = ReadBatchArgs(info);
  auto* w = new SocketBatchWorker(info.Env(), std::move(a.path), a.family, a.count);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// configureSocket(fd, {family, addr?, port, listen, mark?, v6only, freebind, transparent}) -> fd;
// closes fd and throws on failure.
Napi::Value ConfigureSocketJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  SocketSpec s;
  try {
    s = ParseSpec(env, info.Length() > 1 ? info[1] : env.Undefined());
  } catch (...) {
    close(fd);
    throw;
  }
  NativeError err;
  if (ConfigureSocket(fd, s, &err) < 0) throw MakeError(env, err);
  return Napi::Number::New(env, fd);
}

// netnsCookie(netnsPath) -> bigint: the cookie eBPF programs see from bpf_get_netns_cookie().
Napi::Value NetnsCookie(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "netnsPath");
  uint64_t cookie = 0;
  NativeError err;
  int r = InNetns(path, [&](NativeError* e) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) { *e = {errno, "socket"}; return -1; }
    socklen_t len = sizeof(cookie);
    int rc = getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len);
    if (rc < 0) *e = {errno, "getsockopt(SO_NETNS_COOKIE)", "needs Linux >= 5.14"};
    close(fd);
    return rc;
  }, &err);
  if (r < 0) throw MakeError(env, err);
  return Napi::BigInt::New(env, cookie);
}

// socketCookie(fd) -> bigint
Napi::Value SocketCookie(const Napi::CallbackInfo& info) {
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  if (getsockopt(ArgInt(info, 0, "fd"), SOL_SOCKET, SO_COOKIE, &cookie, &len) < 0)
    Throw(info.Env(), errno, "getsockopt(SO_COOKIE)");
  return Napi::BigInt::New(info.Env(), cookie);
}

// localPort(fd) -> number: the port a bound socket got (getsockname), before Node can tell.
Napi::Value LocalPort(const Napi::CallbackInfo& info) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getsockname(ArgInt(info, 0, "fd"), reinterpret_cast<sockaddr*>(&ss), &len) < 0)
    Throw(info.Env(), errno, "getsockname");
  int port = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                      : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return Napi::Number::New(info.Env(), port);
}

// setsockoptInt(fd, level, name, value)
Napi::Value SetsockoptInt(const Napi::CallbackInfo& info) {
  int v = ArgInt(info, 3, "value");
  if (setsockopt(ArgInt(info, 0, "fd"), ArgInt(info, 1, "level"), ArgInt(info, 2, "name"), &v, sizeof(v)) < 0)
    Throw(info.Env(), errno, "setsockopt");
  return info.Env().Undefined();
}

// getsockoptInt(fd, level, name) -> number
Napi::Value GetsockoptInt(const Napi::CallbackInfo& info) {
  int v = 0;
  socklen_t len = sizeof(v);
  if (getsockopt(ArgInt(info, 0, "fd"), ArgInt(info, 1, "level"), ArgInt(info, 2, "name"), &v, &len) < 0)
    Throw(info.Env(), errno, "getsockopt");
  return Napi::Number::New(info.Env(), v);
}

// netnsSysctl(netnsPath, file, value): writes a net sysctl file (/proc/sys/net/..., or the same
// under a writable mount of /proc/sys/net) as seen from inside the netns (/proc/sys/net shows
// the netns of the task that opens it, through any mount of it). The caller validates file.
Napi::Value NetnsSysctl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "netnsPath");
  std::string file = ArgString(info, 1, "file");
  std::string value = ArgString(info, 2, "value");
  NativeError err;
  int r = InNetns(path, [&](NativeError* e) {
    int fd = open(file.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) { *e = {errno, "open(" + file + ")"}; return -1; }
    ssize_t n = write(fd, value.data(), value.size());
    int saved = errno;
    close(fd);
    if (n < 0) { *e = {saved, "write(" + file + ")"}; return -1; }
    return 0;
  }, &err);
  if (r < 0) throw MakeError(env, err);
  return env.Undefined();
}

// closeFd(fd)
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  if (close(ArgInt(info, 0, "fd")) < 0) Throw(info.Env(), errno, "close");
  return info.Env().Undefined();
}

}  // namespace

void InitNetns(Napi::Env env, Napi::Object exports) {
  exports.Set("netnsSocket", Napi::Function::New(env, NetnsSocket));
  exports.Set("netnsCookie", Napi::Function::New(env, NetnsCookie));
  exports.Set("socketCookie", Napi::Function::New(env, SocketCookie));
  exports.Set("localPort", Napi::Function::New(env, LocalPort));
  exports.Set("netnsSocketBatch", Napi::Function::New(env, NetnsSocketBatch));
  exports.Set("netnsSocketBatchAsync", Napi::Function::New(env, NetnsSocketBatchAsync));
  exports.Set("configureSocket", Napi::Function::New(env, ConfigureSocketJs));
  exports.Set("setsockoptInt", Napi::Function::New(env, SetsockoptInt));
  exports.Set("getsockoptInt", Napi::Function::New(env, GetsockoptInt));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  exports.Set("netnsSysctl", Napi::Function::New(env, NetnsSysctl));
  Napi::Object c = exports.Get("constants").IsObject() ? exports.Get("constants").As<Napi::Object>()
                                                       : Napi::Object::New(env);
  c.Set("SOL_SOCKET", static_cast<int>(SOL_SOCKET));
  c.Set("SO_MARK", static_cast<int>(SO_MARK));
  c.Set("IPPROTO_TCP", static_cast<int>(IPPROTO_TCP));
  c.Set("TCP_NODELAY", static_cast<int>(TCP_NODELAY));
  exports.Set("constants", c);
}

}  // namespace mesh
