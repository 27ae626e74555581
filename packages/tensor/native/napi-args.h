// Argument checks shared by the addon's N-API functions (gemm.c, screen.c): a bad call throws a JavaScript error
// instead of reading past an array.
#ifndef TDB_NAPI_ARGS_H
#define TDB_NAPI_ARGS_H
#include <node_api.h>
#include <stdbool.h>

// Throws `message` as an Error; returns NULL for the function to return.
static inline napi_value throwError(napi_env env, const char *message) {
  napi_throw_error(env, NULL, message);
  return NULL;
}

// The data and length of `value` if it is a typed array of type `want`; 0 otherwise.
static inline int typedArrayOf(napi_env env, napi_value value, napi_typedarray_type want, void **data, size_t *length) {
  bool isTyped = false;
  if (napi_is_typedarray(env, value, &isTyped) != napi_ok || !isTyped) return 0;
  napi_typedarray_type type;
  if (napi_get_typedarray_info(env, value, &type, length, data, NULL, NULL) != napi_ok) return 0;
  return type == want;
}

// Reads args[which[i]] as int32 into out[i] for i < n; 0 if one of them is not a number.
static inline int intArgs(napi_env env, const napi_value *args, const int *which, int n, int32_t *out) {
  for (int i = 0; i < n; i++)
    if (napi_get_value_int32(env, args[which[i]], &out[i]) != napi_ok) return 0;
  return 1;
}

// 1 if each of the n values is at least 1.
static inline int allPositive(const int32_t *v, int n) {
  for (int i = 0; i < n; i++)
    if (v[i] < 1) return 0;
  return 1;
}

#endif
