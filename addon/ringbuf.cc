// SPDX-License-Identifier: Apache-2.0
// Ring-buffer consumer: a dedicated thread polls the kernel ring buffer and delivers batches of
// records to JavaScript through a ThreadSafeFunction. The libuv pool is never blocked.
//
// Wakeups are what events cost most: the kernel wakes the reader for a record only when the reader
// has caught up with the ring (kernel/bpf/ringbuf.c, bpf_ringbuf_commit), and a reader that takes
// each record as it comes is woken — with an IPI, a context switch and a call into JavaScript —
// once per connection. After each batch the thread waits batchMs before it polls again: records
// that come meanwhile find the reader behind, wake no one, and arrive as one batch. Wakeups are
// at most 1000/batchMs a second whatever the connection rate; a lone record still arrives at once.
//
// A batch reaches JavaScript as one Buffer of struct mesh_event records back to back: one
// allocation and one copy per batch, not a vector and a Buffer per record.
//
// A connection of a pod outside the mesh comes as two records: OPENED (its time and socket cookie,
// at the handshake) and OBSERVED (tuple and byte counts, at its close). The thread keeps the time
// by cookie and hands over the OBSERVED alone with start_ns filled in, so that JavaScript decodes
// one record per connection. The kernel could keep the time itself, but socket storage or a hash
// cost the connecting pod more than the event (bpf/sockops.bpf.c). Connections opened before this
// reader started, or beyond kMaxOpen open at once, arrive with start_ns 0.
#include <bpf/libbpf.h>
#include <linux/types.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "../bpf/mesh_shared.h"
#include "common.h"

namespace mesh {
namespace {

using Batch = std::vector<uint8_t>;

class RingReader : public Napi::ObjectWrap<RingReader> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "RingReader", {InstanceMethod("close", &RingReader::Close)});
  }

  // new RingReader(mapFd, onBatch(records: Buffer), pollMs, batchMs, recordSize); recordSize is
  // the caller's sizeof(struct mesh_event), checked against this build's.
  explicit RingReader(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RingReader>(info) {
    Napi::Env env = info.Env();
    int fd = ArgInt(info, 0, "mapFd");
    if (info.Length() < 2 || !info[1].IsFunction()) throw Napi::TypeError::New(env, "onBatch must be a function");
    poll_ms_ = info.Length() > 2 ? ArgInt(info, 2, "pollMs") : 100;
    batch_ms_ = info.Length() > 3 ? ArgInt(info, 3, "batchMs") : 0;
    int record_size = ArgInt(info, 4, "recordSize");
    if (record_size != static_cast<int>(sizeof(mesh_event)))
      throw Napi::RangeError::New(env, "recordSize " + std::to_string(record_size) + " is not sizeof(struct mesh_event) " +
                                           std::to_string(sizeof(mesh_event)) + ": rebuild the addon");
    rb_ = ring_buffer__new(fd, &RingReader::OnRecord, this, nullptr);
    if (!rb_) Throw(env, errno, "ring_buffer__new", "is the fd a BPF_MAP_TYPE_RINGBUF map?");
    tsfn_ = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "mesh-ringbuf", 0, 1);
    thread_ = std::thread([this] { Run(); });
    napi_add_env_cleanup_hook(env, &RingReader::Cleanup, this);
  }

  ~RingReader() override { Stop(); }

 private:
  static int OnRecord(void* ctx, void* data, size_t size) {
    auto* self = static_cast<RingReader*>(ctx);
    mesh_event e{};
    std::memcpy(&e, data, std::min(size, sizeof(e)));  // a shorter record is zero-filled
    if (e.kind == MESH_EV_OPENED) {
      if (self->open_.size() >= kMaxOpen) self->open_.clear();  // closes lost to a full ring
      self->open_[e.sock_cookie] = e.ts_ns;
      return 0;
    }
    if (e.kind == MESH_EV_OBSERVED) {
      auto it = self->open_.find(e.sock_cookie);
      if (it != self->open_.end()) {
        e.start_ns = it->second;
        self->open_.erase(it);
      }
    }
    auto* p = reinterpret_cast<const uint8_t*>(&e);
    self->pending_.insert(self->pending_.end(), p, p + sizeof(e));
    return 0;
  }

  void Run() {
    while (!stop_.load()) {
      int n = ring_buffer__poll(rb_, poll_ms_);
      if (n < 0 && n != -EINTR) break;
      if (n <= 0) continue;
      // A batch of OPENED records alone leaves nothing to hand over, but still waits below: else
      // connections that open faster than they close would wake this thread once each.
      if (!pending_.empty()) {
        auto* batch = new Batch(std::move(pending_));
        pending_.clear();
        napi_status s = tsfn_.NonBlockingCall(batch, [](Napi::Env env, Napi::Function cb, Batch* b) {
          // The buffer takes the vector's storage: no copy on the JavaScript thread either.
          auto buf = Napi::Buffer<uint8_t>::New(env, b->data(), b->size(), [](Napi::Env, uint8_t*, Batch* v) { delete v; }, b);
          cb.Call({buf});
        });
        if (s != napi_ok) delete batch;
      }
      if (batch_ms_ > 0) {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(batch_ms_), [this] { return stop_.load(); });
      }
    }
  }

  void Stop() {
    if (stopped_) return;
    stopped_ = true;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_.store(true);
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    if (rb_) ring_buffer__free(rb_);
    rb_ = nullptr;
    tsfn_.Release();
  }

  static void Cleanup(void* arg) { static_cast<RingReader*>(arg)->Stop(); }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    napi_remove_env_cleanup_hook(info.Env(), &RingReader::Cleanup, this);
    Stop();
    return info.Env().Undefined();
  }

  ring_buffer* rb_ = nullptr;
  Napi::ThreadSafeFunction tsfn_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  bool stopped_ = false;
  int poll_ms_ = 100;
  int batch_ms_ = 0;
  // Observed connections open now: socket cookie -> when established (OPENED). Touched only by the
  // polling thread. Each entry is some 40 bytes.
  static constexpr size_t kMaxOpen = 1 << 18;
  std::unordered_map<uint64_t, uint64_t> open_;
  std::mutex mu_;
  std::condition_variable cv_;
  Batch pending_;  // touched only by the polling thread
};

}  // namespace

void InitRingBuf(Napi::Env env, Napi::Object exports) { exports.Set("RingReader", RingReader::Define(env)); }

}  // namespace mesh
