/* tests/common/test_whisper_base.h - the real Whisper base checkpoint of the CPU model tests
 * (scripts/fetch_model.sh puts it in models/whisper-base): its path, and fp32 CPU engines built
 * from it into a folder and loaded. Not a test itself (no test_ prefix in tests/model). */
#ifndef KILN_TEST_WHISPER_BASE_H
#define KILN_TEST_WHISPER_BASE_H

#include <unistd.h>

#include "check.h"
#include "kiln/kiln.h"
#include "kiln/whisper.h"

#define WHISPER_BASE_CKPT KILN_SOURCE_DIR "/models/whisper-base"

/* Skips the test (exit 77) when the checkpoint has not been fetched. */
#define WHISPER_BASE_REQUIRE()                                                 \
  do {                                                                         \
    if (access(WHISPER_BASE_CKPT "/model.safetensors", R_OK) != 0)             \
      SKIP_TEST("models/whisper-base not fetched (scripts/fetch_model.sh)");   \
  } while (0)

/* Build fp32 CPU engines of whisper-base into dir (max_batch windows x max_beams rows; kv_cache
 * as kiln_whisper_build_params: KILN_DTYPE_INVALID keeps it float) and load them. NULL (with a
 * failed check) when either step fails. */
static inline kiln_whisper *whisper_base_build_load(const char *dir, int32_t max_batch, int32_t max_beams,
                                                   kiln_dtype kv_cache) {
  kiln_whisper_build_params bp = kiln_whisper_build_default_params();
  bp.target = KILN_TARGET_CPU;
  bp.precision = KILN_DTYPE_FP32;
  bp.max_batch = max_batch, bp.max_beams = max_beams;
  bp.kv_cache = kv_cache;
  kiln_whisper *w = NULL;
  CHECK_OK(kiln_whisper_build(WHISPER_BASE_CKPT, &bp, dir));
  CHECK_OK(kiln_whisper_load(dir, NULL, &w));
  return w;
}

#endif
