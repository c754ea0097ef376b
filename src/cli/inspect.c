/* src/cli/inspect.c - `kiln inspect ENGINE`: print what an engine holds (no GPU needed). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

int cli_inspect(int argc, char **argv) {
  const char *path = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      printf("usage: kiln inspect ENGINE\n\n"
             "Validates an engine file and prints what it holds: target GPU and CUDA version, inputs and\n"
             "outputs, optimization profiles, every layer with its chosen tactic and time, the memory plan\n"
             "(weights, activation arena offsets, workspace), plugins and the Triton kernel manifest.\n"
             "Needs no GPU.\n");
      return CLI_OK;
    }
    if (argv[i][0] == '-') return fprintf(stderr, "kiln inspect: unknown option \"%s\"\n", argv[i]), CLI_USAGE;
    path = argv[i];
  }
  if (!path) return fprintf(stderr, "usage: kiln inspect ENGINE\n"), CLI_USAGE;
  kiln_engine_load_params p = kiln_engine_default_load_params();
  p.skip_device_check = 1;
  kiln_engine *e;
  kiln_status s = kiln_engine_load(path, &p, &e);
  if (s != KILN_OK) return cli_fail("inspect", "reading the engine", s);
  char *text = NULL;
  s = kiln_engine_describe(e, &text);
  if (s == KILN_OK) fputs(text, stdout);
  kiln_free(text);
  kiln_engine_destroy(e);
  return s == KILN_OK ? CLI_OK : cli_fail("inspect", "describing the engine", s);
}
