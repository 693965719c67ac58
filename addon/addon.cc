// SPDX-License-Identifier: Apache-2.0
// The mesh's native addon: mechanism over libbpf and a few syscalls. Policy and validation live in
// src/datapath (TypeScript); see src/datapath/native.d.ts for the contract.
#include "common.h"

#include <malloc.h>

// glibc's malloc_trim(0): hands the free pages inside every malloc arena back to the kernel
// (madvise), not only the top of the main heap that glibc trims by itself. Returns whether any
// memory was released. Microseconds to a millisecond for a heap of a few MB.
static Napi::Value MallocTrim(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), malloc_trim(0) != 0);
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  mesh::InitBpf(env, exports);
  mesh::InitNetns(env, exports);
  mesh::InitRingBuf(env, exports);
  mesh::InitInpod(env, exports);
  exports.Set("mallocTrim", Napi::Function::New(env, MallocTrim));
  return exports;
}

NODE_API_MODULE(mesh_native, Init)
