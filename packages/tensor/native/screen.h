// Exact row extremes of A·Btᵀ by int8 screening (screen.c): registers its N-API functions on the addon's exports.
#ifndef TDB_SCREEN_H
#define TDB_SCREEN_H
#include <node_api.h>

void screenRegister(napi_env env, napi_value exports);

#endif
