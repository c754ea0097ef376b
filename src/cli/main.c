/* src/cli/main.c - `kiln`: build, run and inspect engines; transcribe audio with Whisper. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static void usage(FILE *f) {
  fprintf(f,
          "kiln %s - build optimized inference engines and run them on NVIDIA GPUs (or the CPU)\n"
          "\n"
          "usage: kiln <command> [options]\n"
          "\n"
          "commands:\n"
          "  build     turn a network (JSON file or a built-in one) and its weights into an engine file\n"
          "  run       run an engine on .npy inputs (or random ones), optionally benchmark it\n"
          "  inspect   show what an engine holds: layers, tactics, memory plan, profiles, plugins\n"
          "  transcribe  speech to text with Whisper engines (kiln build whisper makes them)\n"
          "  eval      word error rate and speed of Whisper engines on a test-set manifest\n"
          "\n"
          "Typical use:\n"
          "  kiln build --network examples/mlp.json -o mlp.engine       # timed tactics on the GPU\n"
          "  kiln run mlp.engine --benchmark                             # random inputs, timings\n"
          "  kiln inspect mlp.engine\n"
          "\n"
          "`kiln <command> --help` explains each command's options.\n",
          KILN_VERSION_STRING);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return CLI_USAGE;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "build") == 0) return cli_build(argc - 1, argv + 1);
  if (strcmp(cmd, "run") == 0) return cli_run(argc - 1, argv + 1);
  if (strcmp(cmd, "inspect") == 0) return cli_inspect(argc - 1, argv + 1);
  if (strcmp(cmd, "transcribe") == 0) return cli_transcribe(argc - 1, argv + 1);
  if (strcmp(cmd, "eval") == 0) return cli_eval(argc - 1, argv + 1);
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
    usage(stdout);
    return CLI_OK;
  }
  if (strcmp(cmd, "--version") == 0) {
    printf("kiln %s (built with: %s)\n", KILN_VERSION_STRING, KILN_FEATURES_STRING);
    return CLI_OK;
  }
  fprintf(stderr, "kiln: unknown command \"%s\"\n\n", cmd);
  usage(stderr);
  return CLI_USAGE;
}
