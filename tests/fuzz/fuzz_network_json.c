/* tests/fuzz/fuzz_network_json.c - fuzz target for the JSON network reader (kiln/network_json.h):
 * any input either gives a network or an error, never a crash, leak or huge allocation. Networks
 * that parse are also built for the CPU, which runs shape inference over their profiles. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "kiln/kiln.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kiln_network *net = NULL;
  kiln_log_set_level(KILN_LOG_NONE);
  kiln_status s = kiln_network_from_json((const char *)data, size, NULL, &net);
  /* A JSON network may ask for large constants on purpose (up to 2^28 elements): running out of
   * memory for them is an error the reader must report cleanly, not a fuzzing finding. */
  if (s != KILN_OK) return 0;
  kiln_build_params p = kiln_build_default_params();
  p.target = KILN_TARGET_CPU;
  void *img = NULL;
  size_t n = 0;
  if (kiln_build(net, &p, &img, &n, NULL) == KILN_OK) kiln_free(img); /* errors are fine, crashes are not */
  kiln_network_destroy(net);
  return 0;
}

static void add_text(kiln_fuzz_add_fn add, void *ud, const char *s) { add((const uint8_t *)s, strlen(s), ud); }

void kiln_fuzz_seeds(kiln_fuzz_add_fn add, void *ud) {
  add_text(add, ud,
           "{\"random_weights\": {\"seed\": 1}, \"inputs\": [{\"name\": \"x\", \"dims\": [-1, 4]}],"
           "\"constants\": [{\"name\": \"w\", \"dims\": [3, 4]}, {\"name\": \"b\", \"dims\": [3]}],"
           "\"layers\": [{\"op\": \"matmul\", \"name\": \"m\", \"inputs\": [\"x\", \"w\", \"b\"]},"
           "{\"op\": \"gelu\", \"name\": \"g\", \"inputs\": [\"m\"]},"
           "{\"op\": \"reshape\", \"name\": \"r\", \"inputs\": [\"g\"], \"dims\": [0, 3, 1]},"
           "{\"op\": \"transpose\", \"name\": \"t\", \"inputs\": [\"r\"], \"perm\": [0, 2, 1]},"
           "{\"op\": \"slice\", \"name\": \"s\", \"inputs\": [\"t\"], \"axis\": 2, \"start\": 1, \"end\": -1}],"
           "\"outputs\": [\"s\", {\"tensor\": \"g\", \"name\": \"y\"}],"
           "\"profiles\": [{\"x\": {\"min\": [0, 4], \"opt\": [2, 4], \"max\": [5, 4]}}]}");
  add_text(add, ud,
           "{\"inputs\": [{\"name\": \"q\", \"dims\": [1, 2, 3, 4]}], \"layers\": [{\"op\": \"attention\","
           " \"inputs\": [\"q\", \"q\", \"q\"], \"scale\": 0.5, \"causal\": true},"
           "{\"op\": \"softmax\", \"inputs\": [\"attention_0\"]}, {\"op\": \"concat\", \"inputs\": [\"q\", \"softmax_1\"],"
           " \"axis\": -1}], \"outputs\": [\"concat_2\"]}");
  add_text(add, ud,
           "{\"inputs\": [{\"name\": \"ids\", \"dtype\": \"int32\", \"dims\": [2]}], \"constants\": [{\"name\": \"t\","
           " \"dims\": [4, 3], \"value\": 0.5}], \"layers\": [{\"op\": \"embedding\", \"inputs\": [\"t\", \"ids\"]}],"
           " \"outputs\": [\"embedding_0\"]}");
}
