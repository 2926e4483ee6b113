{
  "variables": {
    "addon_api_include": "<!(node -p \"require('node-addon-api').include_dir\")"
  },
  "targets": [
    {
      "target_name": "vlalign_kernels_avx2",
      "type": "static_library",
      "sources": ["<!@(node scripts/native-build.cjs sources-avx2)"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-O3", "-fPIC", "<!@(node scripts/native-build.cjs isa-flags avx2)"]
    },
    {
      "target_name": "vlalign_kernels_avx512",
      "type": "static_library",
      "sources": ["<!@(node scripts/native-build.cjs sources-avx512)"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-O3", "-fPIC", "-Wno-uninitialized", "-Wno-maybe-uninitialized",
                    "<!@(node scripts/native-build.cjs isa-flags avx512)"]
    },
    {
      "target_name": "vlalign",
      "dependencies": ["vlalign_kernels_avx2", "vlalign_kernels_avx512"],
      "sources": ["<!@(node scripts/native-build.cjs sources)"],
      "include_dirs": [
        "<(addon_api_include)",
        "<!@(node scripts/native-build.cjs include-dirs)",
        "<!(node scripts/native-build.cjs hash-header build/generated)",
        "cpp/compat"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_ADDON_API_CPP_EXCEPTIONS",
        "NODE_ADDON_API_CPP_EXCEPTIONS_ALL",
        "NODE_ADDON_API_DISABLE_DEPRECATED"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
      "cflags_cc": [
        "-std=c++17",
        "-fexceptions",
        "-frtti",
        "-O3",
        "-Wall",
        "-Wno-unused-parameter",
        "<!@(node scripts/native-build.cjs cxx-flags)"
      ],
      "libraries": ["<!@(node scripts/native-build.cjs libs)"]
    }
  ]
}
