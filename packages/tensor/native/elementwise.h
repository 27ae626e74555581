// Elementwise kernels with the WebAssembly kernels' bits (elementwise.c): registers its N-API functions on the
// addon's exports.
#ifndef TDB_ELEMENTWISE_H
#define TDB_ELEMENTWISE_H
#include <node_api.h>

void elementwiseRegister(napi_env env, napi_value exports);

#endif
