/* kiln/network_json.h - networks described in JSON files (what `kiln build --network` reads).
 *
 * Format (every key except "layers" and "outputs" is optional):
 * {
 *   "inputs":   [{"name": "x", "dtype": "fp32", "dims": [-1, 128, 64]}],
 *   "weights":  "weights.safetensors",        // constants are looked up here by name
 *   "random_weights": {"seed": 1, "scale": 0.5},  // constants not in the file get uniform
 *                                                 // random values in [-scale, scale)
 *   "constants": [{"name": "w1", "dims": [256, 64], "dtype": "fp32",
 *                  "value": 1.0}],            // optional "value": every element equal
 *   "layers": [
 *     {"op": "matmul", "name": "fc1", "inputs": ["x", "w1", "b1"]},
 *     {"op": "gelu" | "relu" | "silu" | "softmax", "inputs": ["fc1"]},
 *     {"op": "add" | "mul", "inputs": ["a", "b"]},
 *     {"op": "layernorm", "inputs": ["x", "gamma", "beta"], "eps": 1e-5},
 *     {"op": "embedding", "inputs": ["table", "ids"]},
 *     {"op": "conv1d", "inputs": ["x", "w", "b"], "stride": 2},
 *     {"op": "reshape", "inputs": ["x"], "dims": [0, 0, 8, 64]},
 *     {"op": "transpose", "inputs": ["x"], "perm": [0, 2, 1, 3]},
 *     {"op": "concat", "inputs": ["a", "b"], "axis": 1},
 *     {"op": "slice", "inputs": ["x"], "axis": 1, "start": 0, "end": 4},
 *     {"op": "attention", "inputs": ["q", "k", "v"], "scale": 0.125, "causal": false},
 *     {"op": "plugin", "plugin": "fmha", "version": 1, "inputs": [...],
 *      "fields": [{"name": "num_heads", "type": "int32", "value": 8},
 *                 {"name": "scale", "type": "float32", "value": 0.125}]}
 *   ],
 *   "outputs":  ["fc1", {"tensor": "ln", "name": "y"}],
 *   "profiles": [{"x": {"min": [1, 128, 64], "opt": [8, 128, 64], "max": [32, 128, 64]}}]
 * }
 * A layer's output tensor is named after the layer ("name", or "<op>_<index>" when absent);
 * later layers refer to it by that name. Relative weight paths are relative to the JSON file.
 */
#ifndef KILN_NETWORK_JSON_H
#define KILN_NETWORK_JSON_H

#include <stddef.h>

#include "kiln/network.h"

#ifdef __cplusplus
extern "C" {
#endif

kiln_status kiln_network_from_json_file(const char *path, kiln_network **out);
/* base_dir resolves a relative "weights" path (NULL: the current directory). */
kiln_status kiln_network_from_json(const char *text, size_t size, const char *base_dir, kiln_network **out);

#ifdef __cplusplus
}
#endif
#endif
