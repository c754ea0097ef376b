/* tests/plugins/test_external_plugin.c - load an external plugin library, build a network that
 * uses its plugin, run the engine on the CPU backend, and check the values; an engine that names
 * a plugin its registry lacks fails to load with a message naming it; bad libraries are refused. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kiln/kiln.h"

int main(void) {
  kiln_log_set_level(KILN_LOG_NONE);
  kiln_plugin_registry *reg = kiln_plugin_registry_default();
  CHECK_STATUS(kiln_plugin_registry_load(reg, "/nonexistent/libnothing.so"), KILN_ERR_PLUGIN);
  CHECK(strstr(kiln_last_error(), "libnothing.so") != NULL);
  CHECK(kiln_plugin_registry_find(reg, "scale_shift", 1) == NULL);
  CHECK_OK(kiln_plugin_registry_load(reg, KILN_TEST_PLUGIN_PATH));
  CHECK(kiln_plugin_registry_find(reg, "scale_shift", 1) != NULL);
  CHECK_STATUS(kiln_plugin_registry_load(reg, KILN_TEST_PLUGIN_PATH), KILN_ERR_PLUGIN); /* registered twice */

  kiln_network *net = NULL;
  CHECK_OK(kiln_network_create(&net));
  int64_t d[2] = {-1, 5};
  int32_t x = kiln_network_add_input(net, "x", KILN_DTYPE_FP32, 2, d);
  float scale = 2.5f, shift = -0.75f;
  kiln_plugin_field f[2] = {{"scale", KILN_PLUGIN_FIELD_FLOAT32, 1, &scale}, {"shift", KILN_PLUGIN_FIELD_FLOAT32, 1, &shift}};
  int32_t y = kiln_network_add_plugin(net, "ss", "scale_shift", 1, 1, &x, 2, f);
  CHECK(y >= 0);
  CHECK(kiln_network_add_plugin(net, "ss2", "scale_shift", 2, 1, &x, 2, f) < 0); /* no version 2 */
  CHECK(strstr(kiln_last_error(), "scale_shift") != NULL);
  int32_t z = kiln_network_add_activation(net, "relu", y, KILN_ACTIVATION_RELU);
  CHECK_OK(kiln_network_mark_output(net, z, "z"));
  int32_t p = kiln_network_add_profile(net);
  int64_t mn[2] = {1, 5}, mx[2] = {8, 5};
  CHECK_OK(kiln_network_set_profile_dims(net, p, "x", mn, mx, mx));
  kiln_build_params bp = kiln_build_default_params();
  bp.target = KILN_TARGET_CPU;
  void *img = NULL;
  size_t size = 0;
  CHECK_OK(kiln_build(net, &bp, &img, &size, NULL));

  kiln_engine *e = NULL;
  kiln_context *c = NULL;
  if (img) CHECK_OK(kiln_engine_load_memory(img, size, NULL, &e));
  if (e) CHECK_OK(kiln_context_create(e, 0, &c));
  if (c) {
    float in[15], out[15];
    check_rng r = {3};
    check_fill(&r, in, 15, -1, 1);
    kiln_dims xd = {2, {3, 5}};
    CHECK_OK(kiln_context_set_input_shape(c, "x", &xd));
    CHECK_OK(kiln_context_set_tensor(c, "x", in));
    CHECK_OK(kiln_context_set_tensor(c, "z", out));
    CHECK_OK(kiln_context_enqueue(c, NULL));
    float want[15];
    for (int i = 0; i < 15; i++) want[i] = in[i] * scale + shift > 0 ? in[i] * scale + shift : 0;
    check_close("scale_shift + relu", out, want, 15, 1e-6, 1e-6);
  }
  kiln_context_destroy(c);
  kiln_engine_destroy(e);

  /* the same engine against a registry without the plugin */
  kiln_plugin_registry *empty = NULL;
  CHECK_OK(kiln_plugin_registry_create(&empty));
  kiln_engine_load_params lp = kiln_engine_default_load_params();
  lp.plugins = empty;
  e = NULL;
  if (img) CHECK_STATUS(kiln_engine_load_memory(img, size, &lp, &e), KILN_ERR_PLUGIN);
  CHECK(strstr(kiln_last_error(), "scale_shift") != NULL && strstr(kiln_last_error(), "not registered") != NULL);
  CHECK(e == NULL);
  kiln_plugin_registry_destroy(empty);
  kiln_free(img);
  kiln_network_destroy(net);
  return check_report();
}
