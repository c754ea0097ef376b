/* kiln/status.h - status codes, error details and the logging hook.
 *
 * Every kiln function that can fail returns a kiln_status: KILN_OK (0) on success, a negative
 * value on failure. On failure, outputs are left untouched, and a human-readable sentence that
 * says what happened and what to do is available from kiln_last_error() (per thread).
 *
 * The library never prints to stdout and never calls exit(). Diagnostics go through the logging
 * hook: by default, messages at or above KILN_LOG_WARN are written to stderr. Replace the hook
 * with kiln_log_set_hook() to route them elsewhere (or to silence them).
 *
 * Thread-safety: kiln_last_error() is thread-local. kiln_log_set_hook() and
 * kiln_log_set_level() are meant to be called once at start-up, before other threads use kiln.
 */
#ifndef KILN_STATUS_H
#define KILN_STATUS_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One table: X(name, value, description). Negative values are errors. */
#define KILN_STATUS_MAP(X)                                                                  \
  X(OK, 0, "success")                                                                       \
  X(ERR_INVALID_ARG, -1, "invalid argument")                                                \
  X(ERR_OUT_OF_MEMORY, -2, "out of host memory")                                            \
  X(ERR_IO, -3, "file input/output error")                                                  \
  X(ERR_FORMAT, -4, "malformed or corrupt file")                                            \
  X(ERR_VERSION, -5, "unsupported file format version")                                     \
  X(ERR_UNSUPPORTED, -6, "unsupported operation, dtype or shape")                           \
  X(ERR_SHAPE, -7, "shape mismatch")                                                        \
  X(ERR_NOT_FOUND, -8, "name not found")                                                    \
  X(ERR_CUDA, -9, "CUDA error")                                                             \
  X(ERR_CUBLAS, -10, "cuBLAS error")                                                        \
  X(ERR_NO_DEVICE, -11, "no CUDA device available")                                         \
  X(ERR_WRONG_DEVICE, -12, "engine was built for another GPU or target")                   \
  X(ERR_PLUGIN, -13, "plugin error")                                                        \
  X(ERR_OUT_OF_DEVICE_MEMORY, -14, "out of GPU memory")                                     \
  X(ERR_STATE, -15, "call not valid in the object's current state")                        \
  X(ERR_INTERNAL, -16, "internal error (a bug in kiln: please report it)")

typedef enum kiln_status {
#define KILN_STATUS_ENUM_(name, value, desc) KILN_##name = value,
  KILN_STATUS_MAP(KILN_STATUS_ENUM_)
#undef KILN_STATUS_ENUM_
} kiln_status;

/* Short description of a status code ("malformed or corrupt file"). Never NULL. */
const char *kiln_status_str(kiln_status status);

/* The detailed message of the last error raised on this thread ("" if none). The pointer stays
 * valid until the next kiln call on this thread. */
const char *kiln_last_error(void);

typedef enum kiln_log_level {
  KILN_LOG_DEBUG = 0,
  KILN_LOG_VERBOSE = 1,
  KILN_LOG_INFO = 2,
  KILN_LOG_WARN = 3,
  KILN_LOG_ERROR = 4,
  KILN_LOG_NONE = 5
} kiln_log_level;

typedef void (*kiln_log_fn)(kiln_log_level level, const char *message, void *user_data);

/* Replace the logging hook (NULL restores the default, which writes to stderr). */
void kiln_log_set_hook(kiln_log_fn fn, void *user_data);
/* Messages below this level are dropped before reaching the hook (default KILN_LOG_WARN). */
void kiln_log_set_level(kiln_log_level level);
kiln_log_level kiln_log_get_level(void);

/* Log through the hook (used by kiln itself and by plugins). */
void kiln_log(kiln_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#ifdef __cplusplus
}
#endif
#endif /* KILN_STATUS_H */
