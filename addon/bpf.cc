// SPDX-License-Identifier: Apache-2.0
// libbpf mechanism: load an object (maps pinned by name), links, pins, maps, BPF_PROG_TEST_RUN.
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <map>
#include <memory>
#include <vector>

#include "common.h"

namespace mesh {
namespace {

// libbpf reports through one global print callback. While a load runs on a worker thread we
// collect its messages there, so that a failure carries the verifier's explanation.
thread_local std::string* g_log = nullptr;

int LibbpfPrint(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (g_log == nullptr || level == LIBBPF_DEBUG) return 0;
  va_list copy;
  va_copy(copy, args);
  int n = vsnprintf(nullptr, 0, fmt, copy);
  va_end(copy);
  if (n > 0) {
    std::string buf(static_cast<size_t>(n) + 1, '\0');
    vsnprintf(buf.data(), buf.size(), fmt, args);
    buf.resize(static_cast<size_t>(n));
    g_log->append(buf);
  }
  // Keep the tail: the verifier's verdict is at the end of its log.
  if (g_log->size() > 64 * 1024) g_log->erase(0, g_log->size() - 64 * 1024);
  return 0;
}

struct LoadedObject {
  bpf_object* obj = nullptr;
  ~LoadedObject() {
    if (obj) bpf_object__close(obj);
  }
};

// Writes load-time settings into the object's .rodata by variable name (libbpf const volatile).
bool SetRodata(bpf_object* obj, const std::map<std::string, uint64_t>& values, std::string* err) {
  if (values.empty()) return true;
  bpf_map* rodata = nullptr;
  bpf_map* m;
  bpf_object__for_each_map(m, obj) {
    std::string name = bpf_map__name(m);
    if (bpf_map__is_internal(m) && name.size() >= 7 && name.compare(name.size() - 7, 7, ".rodata") == 0)
      rodata = m;
  }
  const btf* b = bpf_object__btf(obj);
  int sec_id = b ? btf__find_by_name_kind(b, ".rodata", BTF_KIND_DATASEC) : -1;
  if (!rodata || sec_id < 0) {
    *err = "object has no .rodata section to hold settings";
    return false;
  }
  size_t size = 0;
  const auto* initial = static_cast<const uint8_t*>(bpf_map__initial_value(rodata, &size));
  std::vector<uint8_t> data(initial, initial + size);
  const btf_type* sec = btf__type_by_id(b, sec_id);
  const btf_var_secinfo* vsi = btf_var_secinfos(sec);
  std::map<std::string, const btf_var_secinfo*> vars;
  for (int i = 0; i < btf_vlen(sec); i++, vsi++) {
    const btf_type* var = btf__type_by_id(b, vsi->type);
    vars[btf__name_by_offset(b, var->name_off)] = vsi;
  }
  for (const auto& [name, value] : values) {
    auto it = vars.find(name);
    if (it == vars.end()) {
      *err = "unknown load-time setting '" + name + "'";
      return false;
    }
    const btf_var_secinfo* v = it->second;
    if (v->offset + v->size > size || v->size > 8) {
      *err = "setting '" + name + "' does not fit";
      return false;
    }
    std::memcpy(data.data() + v->offset, &value, v->size);  // little-endian host: low bytes first
  }
  int r = bpf_map__set_initial_value(rodata, data.data(), data.size());
  if (r < 0) {
    *err = "bpf_map__set_initial_value failed: " + std::string(std::strerror(-r));
    return false;
  }
  return true;
}

class LoadWorker : public Napi::AsyncWorker {
 public:
  LoadWorker(Napi::Env env, std::string path, std::string pin_root, std::map<std::string, uint64_t> rodata)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), path_(std::move(path)),
        pin_root_(std::move(pin_root)), rodata_(std::move(rodata)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    std::string log;
    g_log = &log;
    LIBBPF_OPTS(bpf_object_open_opts, opts);
    if (!pin_root_.empty()) opts.pin_root_path = pin_root_.c_str();
    obj_ = std::make_unique<LoadedObject>();
    obj_->obj = bpf_object__open_file(path_.c_str(), &opts);
    if (!obj_->obj) {
      int e = errno;
      obj_->obj = nullptr;
      Fail(e, "bpf_object__open_file(" + path_ + ")", log);
    } else {
      std::string why;
      if (!SetRodata(obj_->obj, rodata_, &why)) {
        Fail(EINVAL, "set load-time settings", why);
      } else {
        int r = bpf_object__load(obj_->obj);
        if (r < 0) Fail(-r, "bpf_object__load(" + path_ + ")", log);
      }
    }
    g_log = nullptr;
  }

  void OnOK() override {
    Napi::Env env = Env();
    LoadedObject* raw = obj_.release();
    bpf_object* obj = raw->obj;
    auto handle = Napi::External<LoadedObject>::New(env, raw, [](Napi::Env, LoadedObject* o) { delete o; });
    Napi::Object result = Napi::Object::New(env);
    result.Set("handle", handle);

    Napi::Array progs = Napi::Array::New(env);
    bpf_program* p;
    uint32_t i = 0;
    bpf_object__for_each_program(p, obj) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", bpf_program__name(p));
      o.Set("section", bpf_program__section_name(p));
      o.Set("fd", bpf_program__fd(p));
      o.Set("type", static_cast<uint32_t>(bpf_program__type(p)));
      progs.Set(i++, o);
    }
    result.Set("programs", progs);

    Napi::Array maps = Napi::Array::New(env);
    bpf_map* m;
    i = 0;
    bpf_object__for_each_map(m, obj) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", bpf_map__name(m));
      o.Set("fd", bpf_map__fd(m));
      o.Set("type", static_cast<uint32_t>(bpf_map__type(m)));
      o.Set("keySize", bpf_map__key_size(m));
      o.Set("valueSize", bpf_map__value_size(m));
      o.Set("maxEntries", bpf_map__max_entries(m));
      const char* pin = bpf_map__pin_path(m);
      o.Set("pinPath", pin ? Napi::Value(Napi::String::New(env, pin)) : env.Null());
      maps.Set(i++, o);
    }
    result.Set("maps", maps);
    deferred_.Resolve(result);
  }

  void OnError(const Napi::Error&) override { deferred_.Reject(MakeError(Env(), error_).Value()); }

 private:
  void Fail(int err, std::string syscall, std::string detail) {
    error_ = NativeError{err, std::move(syscall), std::move(detail)};
    SetError(error_.syscall);
  }

  Napi::Promise::Deferred deferred_;
  std::string path_, pin_root_;
  std::map<std::string, uint64_t> rodata_;
  std::unique_ptr<LoadedObject> obj_;
  NativeError error_;
};

// loadObject(path, pinRoot, rodata) -> Promise<{handle, programs, maps}>
Napi::Value LoadObject(const Napi::CallbackInfo& info) {
  std::string path = ArgString(info, 0, "path");
  std::string pin_root = ArgString(info, 1, "pinRoot");
  std::map<std::string, uint64_t> rodata;
  if (info.Length() > 2 && info[2].IsObject()) {
    Napi::Object o = info[2].As<Napi::Object>();
    Napi::Array keys = o.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); i++) {
      std::string k = keys.Get(i).As<Napi::String>().Utf8Value();
      Napi::Value v = o.Get(k);
      if (!v.IsNumber()) throw Napi::TypeError::New(info.Env(), "setting " + k + " must be a number");
      rodata[k] = static_cast<uint64_t>(v.As<Napi::Number>().Int64Value());
    }
  }
  auto* w = new LoadWorker(info.Env(), path, pin_root, std::move(rodata));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// closeObject(handle): closes the object's program and map fds (pins and links stay).
Napi::Value CloseObject(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsExternal()) throw Napi::TypeError::New(info.Env(), "handle expected");
  LoadedObject* o = info[0].As<Napi::External<LoadedObject>>().Data();
  if (o->obj) {
    bpf_object__close(o->obj);
    o->obj = nullptr;
  }
  return info.Env().Undefined();
}

// linkCreate(progFd, targetFd, attachType) -> linkFd
Napi::Value LinkCreate(const Napi::CallbackInfo& info) {
  int prog = ArgInt(info, 0, "progFd"), target = ArgInt(info, 1, "targetFd");
  auto type = static_cast<bpf_attach_type>(ArgUint(info, 2, "attachType"));
  int fd = bpf_link_create(prog, target, type, nullptr);
  if (fd < 0) Throw(info.Env(), errno, "bpf_link_create");
  return Napi::Number::New(info.Env(), fd);
}

// linkUpdate(linkFd, progFd): swap the program behind a live link atomically.
Napi::Value LinkUpdate(const Napi::CallbackInfo& info) {
  int r = bpf_link_update(ArgInt(info, 0, "linkFd"), ArgInt(info, 1, "progFd"), nullptr);
  if (r < 0) Throw(info.Env(), errno, "bpf_link_update");
  return info.Env().Undefined();
}

// linkDetach(linkFd): detach now, even if the link is still pinned or held elsewhere.
Napi::Value LinkDetach(const Napi::CallbackInfo& info) {
  int r = bpf_link_detach(ArgInt(info, 0, "linkFd"));
  if (r < 0) Throw(info.Env(), errno, "bpf_link_detach");
  return info.Env().Undefined();
}

Napi::Value ObjPin(const Napi::CallbackInfo& info) {
  std::string path = ArgString(info, 1, "path");
  int r = bpf_obj_pin(ArgInt(info, 0, "fd"), path.c_str());
  if (r < 0) Throw(info.Env(), errno, "bpf_obj_pin(" + path + ")");
  return info.Env().Undefined();
}

Napi::Value ObjGet(const Napi::CallbackInfo& info) {
  std::string path = ArgString(info, 0, "path");
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) Throw(info.Env(), errno, "bpf_obj_get(" + path + ")");
  return Napi::Number::New(info.Env(), fd);
}

// linkInfo(fd) -> {id, type, progId, attachType, cgroupId, netnsIno}
Napi::Value LinkInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_link_info li{};
  uint32_t len = sizeof(li);
  if (bpf_obj_get_info_by_fd(ArgInt(info, 0, "fd"), &li, &len) < 0) Throw(env, errno, "bpf_obj_get_info_by_fd");
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", li.id);
  o.Set("type", li.type);
  o.Set("progId", li.prog_id);
  if (li.type == BPF_LINK_TYPE_CGROUP) {
    o.Set("attachType", li.cgroup.attach_type);
    o.Set("cgroupId", Napi::BigInt::New(env, static_cast<uint64_t>(li.cgroup.cgroup_id)));
  } else if (li.type == BPF_LINK_TYPE_NETNS) {
    o.Set("attachType", li.netns.attach_type);
    o.Set("netnsIno", li.netns.netns_ino);
  }
  return o;
}

// progInfo(fd) -> {id, name, type, tag, runTimeNs, runCount}
Napi::Value ProgInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_prog_info pi{};
  uint32_t len = sizeof(pi);
  if (bpf_obj_get_info_by_fd(ArgInt(info, 0, "fd"), &pi, &len) < 0) Throw(env, errno, "bpf_obj_get_info_by_fd");
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", pi.id);
  o.Set("name", pi.name);
  o.Set("type", pi.type);
  char tag[BPF_TAG_SIZE * 2 + 1];
  for (int i = 0; i < BPF_TAG_SIZE; i++) snprintf(tag + 2 * i, 3, "%02x", pi.tag[i]);
  o.Set("tag", tag);
  // Cumulative, and only counted while kernel.bpf_stats_enabled=1.
  o.Set("runTimeNs", Napi::BigInt::New(env, static_cast<uint64_t>(pi.run_time_ns)));
  o.Set("runCount", Napi::BigInt::New(env, static_cast<uint64_t>(pi.run_cnt)));
  return o;
}

// mapInfo(fd) -> {id, name, type, keySize, valueSize, maxEntries}
Napi::Value MapInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_map_info mi{};
  uint32_t len = sizeof(mi);
  if (bpf_obj_get_info_by_fd(ArgInt(info, 0, "fd"), &mi, &len) < 0) Throw(env, errno, "bpf_obj_get_info_by_fd");
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", mi.id);
  o.Set("name", mi.name);
  o.Set("type", mi.type);
  o.Set("keySize", mi.key_size);
  o.Set("valueSize", mi.value_size);
  o.Set("maxEntries", mi.max_entries);
  return o;
}

// mapLookup(fd, key, valueSize) -> Buffer | null
Napi::Value MapLookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  auto key = ArgBuffer(info, 1, "key");
  uint32_t vsize = ArgUint(info, 2, "valueSize");
  auto value = Napi::Buffer<uint8_t>::New(env, vsize);
  if (bpf_map_lookup_elem(fd, key.Data(), value.Data()) < 0) {
    if (errno == ENOENT) return env.Null();
    Throw(env, errno, "bpf_map_lookup_elem");
  }
  return value;
}

// mapUpdate(fd, key, value, flags)
Napi::Value MapUpdate(const Napi::CallbackInfo& info) {
  int fd = ArgInt(info, 0, "fd");
  auto key = ArgBuffer(info, 1, "key");
  auto value = ArgBuffer(info, 2, "value");
  uint64_t flags = info.Length() > 3 ? ArgUint(info, 3, "flags") : static_cast<uint32_t>(BPF_ANY);
  if (bpf_map_update_elem(fd, key.Data(), value.Data(), flags) < 0) Throw(info.Env(), errno, "bpf_map_update_elem");
  return info.Env().Undefined();
}

// mapLookupAndDelete(fd, key, valueSize) -> Buffer | null: one syscall where lookup + delete is two
// (hash maps since Linux 5.14).
Napi::Value MapLookupAndDelete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  auto key = ArgBuffer(info, 1, "key");
  uint32_t vsize = ArgUint(info, 2, "valueSize");
  auto value = Napi::Buffer<uint8_t>::New(env, vsize);
  if (bpf_map_lookup_and_delete_elem(fd, key.Data(), value.Data()) < 0) {
    if (errno == ENOENT) return env.Null();
    Throw(env, errno, "bpf_map_lookup_and_delete_elem");
  }
  return value;
}

// mapDelete(fd, key) -> boolean (false when absent)
Napi::Value MapDelete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (bpf_map_delete_elem(ArgInt(info, 0, "fd"), ArgBuffer(info, 1, "key").Data()) < 0) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    Throw(env, errno, "bpf_map_delete_elem");
  }
  return Napi::Boolean::New(env, true);
}

// mapKeys(fd, keySize, limit) -> Buffer[]
Napi::Value MapKeys(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  uint32_t ksize = ArgUint(info, 1, "keySize");
  uint32_t limit = ArgUint(info, 2, "limit");
  Napi::Array out = Napi::Array::New(env);
  std::vector<uint8_t> prev(ksize), next(ksize);
  bool first = true;
  for (uint32_t i = 0; i < limit; i++) {
    if (bpf_map_get_next_key(fd, first ? nullptr : prev.data(), next.data()) < 0) {
      if (errno == ENOENT) break;
      Throw(env, errno, "bpf_map_get_next_key");
    }
    out.Set(i, Napi::Buffer<uint8_t>::Copy(env, next.data(), ksize));
    prev.swap(next);
    first = false;
  }
  return out;
}

// progTestRun(progFd, ctxIn, ctxOutSize) -> {retval, ctxOut}
Napi::Value ProgTestRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "progFd");
  auto ctx_in = ArgBuffer(info, 1, "ctxIn");
  uint32_t out_size = ArgUint(info, 2, "ctxOutSize");
  std::vector<uint8_t> ctx_out(out_size);
  LIBBPF_OPTS(bpf_test_run_opts, opts);
  opts.ctx_in = ctx_in.Data();
  opts.ctx_size_in = static_cast<uint32_t>(ctx_in.Length());
  opts.ctx_out = out_size ? ctx_out.data() : nullptr;
  opts.ctx_size_out = out_size;
  opts.repeat = 1;
  if (bpf_prog_test_run_opts(fd, &opts) < 0) Throw(env, errno, "bpf_prog_test_run_opts");
  Napi::Object o = Napi::Object::New(env);
  o.Set("retval", opts.retval);
  o.Set("ctxOut", Napi::Buffer<uint8_t>::Copy(env, ctx_out.data(), opts.ctx_size_out));
  return o;
}

// probeProgType(type) -> boolean: can this kernel load a program of this type?
Napi::Value ProbeProgType(const Napi::CallbackInfo& info) {
  int r = libbpf_probe_bpf_prog_type(static_cast<bpf_prog_type>(ArgUint(info, 0, "progType")), nullptr);
  if (r < 0) Throw(info.Env(), -r, "libbpf_probe_bpf_prog_type");
  return Napi::Boolean::New(info.Env(), r == 1);
}

// probeHelper(progType, helperId) -> boolean: may programs of this type call this helper?
Napi::Value ProbeHelper(const Napi::CallbackInfo& info) {
  int r = libbpf_probe_bpf_helper(static_cast<bpf_prog_type>(ArgUint(info, 0, "progType")),
                                  static_cast<bpf_func_id>(ArgUint(info, 1, "helperId")), nullptr);
  if (r < 0) Throw(info.Env(), -r, "libbpf_probe_bpf_helper");
  return Napi::Boolean::New(info.Env(), r == 1);
}

Napi::Value NumPossibleCpus(const Napi::CallbackInfo& info) {
  int n = libbpf_num_possible_cpus();
  if (n < 0) Throw(info.Env(), -n, "libbpf_num_possible_cpus");
  return Napi::Number::New(info.Env(), n);
}

Napi::Value LibbpfVersion(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), libbpf_version_string());
}

}  // namespace

void InitBpf(Napi::Env env, Napi::Object exports) {
  libbpf_set_print(LibbpfPrint);
  exports.Set("loadObject", Napi::Function::New(env, LoadObject));
  exports.Set("closeObject", Napi::Function::New(env, CloseObject));
  exports.Set("linkCreate", Napi::Function::New(env, LinkCreate));
  exports.Set("linkUpdate", Napi::Function::New(env, LinkUpdate));
  exports.Set("linkDetach", Napi::Function::New(env, LinkDetach));
  exports.Set("objPin", Napi::Function::New(env, ObjPin));
  exports.Set("objGet", Napi::Function::New(env, ObjGet));
  exports.Set("linkInfo", Napi::Function::New(env, LinkInfo));
  exports.Set("progInfo", Napi::Function::New(env, ProgInfo));
  exports.Set("mapInfo", Napi::Function::New(env, MapInfo));
  exports.Set("mapLookup", Napi::Function::New(env, MapLookup));
  exports.Set("mapUpdate", Napi::Function::New(env, MapUpdate));
  exports.Set("mapDelete", Napi::Function::New(env, MapDelete));
  exports.Set("mapLookupAndDelete", Napi::Function::New(env, MapLookupAndDelete));
  exports.Set("mapKeys", Napi::Function::New(env, MapKeys));
  exports.Set("progTestRun", Napi::Function::New(env, ProgTestRun));
  exports.Set("probeProgType", Napi::Function::New(env, ProbeProgType));
  exports.Set("probeHelper", Napi::Function::New(env, ProbeHelper));
  exports.Set("numPossibleCpus", Napi::Function::New(env, NumPossibleCpus));
  exports.Set("libbpfVersion", Napi::Function::New(env, LibbpfVersion));

  Napi::Object c = Napi::Object::New(env);
  c.Set("BPF_CGROUP_INET4_CONNECT", static_cast<uint32_t>(BPF_CGROUP_INET4_CONNECT));
  c.Set("BPF_CGROUP_INET6_CONNECT", static_cast<uint32_t>(BPF_CGROUP_INET6_CONNECT));
  c.Set("BPF_CGROUP_SOCK_OPS", static_cast<uint32_t>(BPF_CGROUP_SOCK_OPS));
  c.Set("BPF_SK_LOOKUP", static_cast<uint32_t>(BPF_SK_LOOKUP));
  c.Set("BPF_LINK_TYPE_CGROUP", static_cast<uint32_t>(BPF_LINK_TYPE_CGROUP));
  c.Set("BPF_LINK_TYPE_NETNS", static_cast<uint32_t>(BPF_LINK_TYPE_NETNS));
  c.Set("BPF_PROG_TYPE_CGROUP_SOCK_ADDR", static_cast<uint32_t>(BPF_PROG_TYPE_CGROUP_SOCK_ADDR));
  c.Set("BPF_PROG_TYPE_SOCK_OPS", static_cast<uint32_t>(BPF_PROG_TYPE_SOCK_OPS));
  c.Set("BPF_PROG_TYPE_SK_LOOKUP", static_cast<uint32_t>(BPF_PROG_TYPE_SK_LOOKUP));
  c.Set("BPF_FUNC_get_netns_cookie", static_cast<uint32_t>(BPF_FUNC_get_netns_cookie));
  c.Set("BPF_FUNC_sk_assign", static_cast<uint32_t>(BPF_FUNC_sk_assign));
  c.Set("BPF_FUNC_ringbuf_reserve", static_cast<uint32_t>(BPF_FUNC_ringbuf_reserve));
  c.Set("BPF_ANY", static_cast<uint32_t>(BPF_ANY));
  c.Set("BPF_NOEXIST", static_cast<uint32_t>(BPF_NOEXIST));
  c.Set("BPF_EXIST", static_cast<uint32_t>(BPF_EXIST));
  exports.Set("constants", c);
}

}  // namespace mesh
