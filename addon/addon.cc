// SPDX-License-Identifier: Apache-2.0
// The mesh's native addon: mechanism over libbpf and a few syscalls. Policy and validation live in
// src/datapath (TypeScript); see src/datapath/native.d.ts for the contract.
#include "common.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  mesh::InitBpf(env, exports);
  mesh::InitNetns(env, exports);
  mesh::InitRingBuf(env, exports);
  mesh::InitInpod(env, exports);
  return exports;
}

NODE_API_MODULE(mesh_native, Init)
