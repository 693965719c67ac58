{
  "targets": [
    {
      "target_name": "mesh_native",
      "sources": ["addon/addon.cc", "addon/bpf.cc", "addon/inpod.cc", "addon/netns.cc", "addon/ringbuf.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "cflags_cc!": ["-fno-exceptions"],
      "libraries": ["-lbpf", "-lmnl", "-lelf", "-lz"]
    }
  ]
}
