/* src/models/whisper/whisper_internal.h - shared by the Whisper network, build and runtime
 * files: JSON helpers and the manifest's name. Not a public header. */
#ifndef KILN_WHISPER_INTERNAL_H
#define KILN_WHISPER_INTERNAL_H

#include <cjson/cJSON.h>

#include "kiln/whisper.h"

#define KILN_WHISPER_MANIFEST "whisper.json"
#define KILN_WHISPER_FORMAT "kiln-whisper"
#define KILN_WHISPER_FORMAT_VERSION 1

/* Parse a JSON object file (KILN_ERR_IO when missing, KILN_ERR_FORMAT when malformed). */
kiln_status kiln_whisper_json_read(const char *path, cJSON **out);
/* Fill the config's geometry and token fields from a parsed config.json / manifest object
 * (`what` names the file in messages). */
kiln_status kiln_whisper_config_from_json(const cJSON *root, const char *what, kiln_whisper_config *c);
/* Read an int array field into out (at most KILN_WHISPER_MAX_SUPPRESS); absent: *n = -1. */
kiln_status kiln_whisper_json_ints(const cJSON *root, const char *key, const char *what, int32_t *out,
                                   int32_t *n);

#endif
