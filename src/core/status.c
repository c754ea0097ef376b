/* src/core/status.c - status strings, the per-thread error message, and the logging hook. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kiln/status.h"

const char *kiln_status_str(kiln_status status) {
  switch (status) {
#define KILN_STATUS_CASE_(name, value, desc) \
  case KILN_##name:                          \
    return desc;
    KILN_STATUS_MAP(KILN_STATUS_CASE_)
#undef KILN_STATUS_CASE_
  }
  return "unknown status";
}

static _Thread_local char error_message[2048];

const char *kiln_last_error(void) { return error_message; }

void kiln_error_clear(void) { error_message[0] = '\0'; }

int kiln_poison_enabled(void) {
  const char *v = getenv("KILN_POISON"); /* at allocations only: no need to cache it */
  return v && v[0] && strcmp(v, "0") != 0;
}

kiln_status kiln_error(kiln_status status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(error_message, sizeof error_message, fmt, ap);
  va_end(ap);
  kiln_log(KILN_LOG_VERBOSE, "error (%s): %s", kiln_status_str(status), error_message);
  return status;
}

kiln_status kiln_error_context(kiln_status status, const char *fmt, ...) {
  char prefix[512];
  char old[sizeof error_message];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, error_message, sizeof old);
  snprintf(error_message, sizeof error_message, "%s%s", prefix, old);
  return status;
}

static void default_log_hook(kiln_log_level level, const char *message, void *user_data) {
  static const char *names[] = {"debug", "verbose", "info", "warning", "error"};
  (void)user_data;
  fprintf(stderr, "kiln: %s: %s\n", names[level < 5 ? level : 4], message);
}

static kiln_log_fn log_hook = default_log_hook;
static void *log_user_data = NULL;
static kiln_log_level log_level = KILN_LOG_WARN;

void kiln_log_set_hook(kiln_log_fn fn, void *user_data) {
  log_hook = fn ? fn : default_log_hook;
  log_user_data = fn ? user_data : NULL;
}

void kiln_log_set_level(kiln_log_level level) { log_level = level; }

kiln_log_level kiln_log_get_level(void) { return log_level; }

void kiln_log(kiln_log_level level, const char *fmt, ...) {
  char message[2048];
  va_list ap;
  if (level < log_level || level >= KILN_LOG_NONE) return;
  va_start(ap, fmt);
  vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
  log_hook(level, message, log_user_data);
}
