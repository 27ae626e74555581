// Attention's per-head products in its [T, H, Dh] and [T, T, H] layouts (heads.c): registers its N-API functions
// on the addon's exports.
#ifndef TDB_HEADS_H
#define TDB_HEADS_H
#include <node_api.h>

void headsRegister(napi_env env, napi_value exports);

#endif
