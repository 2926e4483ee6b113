{
  "targets": [
    {
      "target_name": "vlalign",
      "sources": ["<!@(node scripts/native-build.cjs sources)"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(node scripts/native-build.cjs include-dirs)",
        "<!(node scripts/native-build.cjs hash-header build/generated)"
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
