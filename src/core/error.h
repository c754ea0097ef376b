/* src/core/error.h - recording errors and checking calls inside the library.
 *
 * kiln_error(status, fmt, ...) stores a message for kiln_last_error() (thread-local), logs it at
 * KILN_LOG_VERBOSE, and returns `status`, so a failing path reads:
 *     if (n < 0) return kiln_error(KILN_ERR_INVALID_ARG, "n must be >= 0 (got %d)", n);
 * KILN_TRY(expr) returns the status of `expr` from the calling function when it is an error.
 * Not a public header.
 */
#ifndef KILN_CORE_ERROR_H
#define KILN_CORE_ERROR_H

#include "kiln/status.h"

kiln_status kiln_error(kiln_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Prefix the current error message with context ("loading engine x: ") and return status. */
kiln_status kiln_error_context(kiln_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void kiln_error_clear(void);

/* KILN_POISON=1 in the environment: buffers the runtime allocates for activations,
 * workspaces and caches are filled with 0xFF bytes (NaN in fp32/fp16/bf16) instead of being
 * left as they come, so a kernel that reads memory nobody wrote shows up as NaN or wrong
 * results in the tests instead of passing by luck (calloc'd zeros on the CPU). Debug only. */
int kiln_poison_enabled(void);
#define KILN_POISON_BYTE 0xFF

#define KILN_TRY(expr)                          \
  do {                                          \
    kiln_status kiln_try_s_ = (expr);           \
    if (kiln_try_s_ != KILN_OK) return kiln_try_s_; \
  } while (0)

#endif /* KILN_CORE_ERROR_H */
