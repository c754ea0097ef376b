/* tests/fuzz/fuzz.h - the interface between kiln's fuzz targets and the drivers that run them.
 *
 * Each target (fuzz_<name>.c) defines LLVMFuzzerTestOneInput(), the libFuzzer entry point, and
 * kiln_fuzz_seeds(), which hands valid inputs built in code to the standalone driver (driver.c)
 * so it starts from deep, well-formed files rather than from noise. A target reports a bug by
 * crashing (abort()): sanitizers report memory errors and undefined behaviour the same way.
 * A target also aborts when a parser reports out-of-memory for a small input: that means a
 * corrupt count reached an allocation (the drivers cap the address space / allocation size).
 */
#ifndef KILN_TESTS_FUZZ_H
#define KILN_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>

typedef void (*kiln_fuzz_add_fn)(const uint8_t *data, size_t size, void *user_data);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
void kiln_fuzz_seeds(kiln_fuzz_add_fn add, void *user_data);

#endif /* KILN_TESTS_FUZZ_H */
