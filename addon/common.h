// SPDX-License-Identifier: Apache-2.0
// Shared helpers for the addon: errors that carry errno and libbpf's log to JavaScript.
#pragma once

#include <napi.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <string>

namespace mesh {

// A failure captured off the main thread, turned into a JS Error on it.
struct NativeError {
  int err = 0;          // positive errno
  std::string syscall;  // what failed, e.g. "bpf_object__load"
  std::string detail;   // extra context, e.g. libbpf's verifier log
};

inline std::string ErrnoCode(int err) {
  // strerrorname_np is glibc >= 2.32; Debian 12 has 2.36.
  const char* name = strerrordesc_np(err) ? strerrorname_np(err) : nullptr;
  return name ? name : "E" + std::to_string(err);
}

inline Napi::Error MakeError(Napi::Env env, const NativeError& e) {
  std::string msg = e.syscall + ": " + std::strerror(e.err);
  Napi::Error error = Napi::Error::New(env, msg);
  error.Set("errno", Napi::Number::New(env, e.err));
  error.Set("code", Napi::String::New(env, ErrnoCode(e.err)));
  error.Set("syscall", Napi::String::New(env, e.syscall));
  if (!e.detail.empty()) error.Set("detail", Napi::String::New(env, e.detail));
  return error;
}

[[noreturn]] inline void Throw(Napi::Env env, int err, const std::string& syscall,
                               const std::string& detail = "") {
  throw MakeError(env, NativeError{err < 0 ? -err : err, syscall, detail});
}

inline int ArgInt(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsNumber())
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a number");
  return info[i].As<Napi::Number>().Int32Value();
}

inline uint32_t ArgUint(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsNumber())
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a number");
  return info[i].As<Napi::Number>().Uint32Value();
}

inline std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsString())
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

inline Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsBuffer())
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a Buffer");
  return info[i].As<Napi::Buffer<uint8_t>>();
}

// Runs fn on a fresh native thread that has entered the netns at path (only that thread moves);
// returns fn's result, or -1 with err set when the netns cannot be entered (addon/netns.cc).
int InNetns(const std::string& path, const std::function<int(NativeError*)>& fn, NativeError* err);

void InitBpf(Napi::Env env, Napi::Object exports);
void InitNetns(Napi::Env env, Napi::Object exports);
void InitInpod(Napi::Env env, Napi::Object exports);
void InitRingBuf(Napi::Env env, Napi::Object exports);

}  // namespace mesh
