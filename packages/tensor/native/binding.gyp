{
  "targets": [
    {
      "target_name": "tdb_gemm",
      "sources": ["gemm.c", "screen.c", "heads.c", "elementwise.c"],
      "cflags": ["-O3", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
