/* tests/common/test_json.h - reading reference files in tests: a whole text file, a JSON file
 * (cJSON, CHECKed to parse) and a number field. Header-only; include after check.h. */
#ifndef KILN_TESTS_TEST_JSON_H
#define KILN_TESTS_TEST_JSON_H

#include <stdlib.h>

#include <cjson/cJSON.h>

#include "core/file.h"

/* The whole file, NUL-terminated (free()), or NULL when it cannot be read. */
static inline char *read_text(const char *path) {
  char *s = NULL;
  size_t n = 0;
  return kiln_read_file(path, (size_t)1 << 24, &s, &n) == KILN_OK ? s : NULL;
}

/* The parsed file (cJSON_Delete), or NULL (a failed CHECK) when unreadable or malformed. */
static inline cJSON *read_json(const char *path) {
  char *s = read_text(path);
  CHECK(s != NULL);
  cJSON *j = s ? cJSON_Parse(s) : NULL;
  free(s);
  CHECK(j != NULL);
  return j;
}

/* o[key] as a number, or -12345 when absent or not a number (so a comparison fails). */
static inline double num(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsNumber(v) ? v->valuedouble : -12345.0;
}

#endif
