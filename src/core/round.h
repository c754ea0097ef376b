/* src/core/round.h - kiln_round_up(): a size rounded up to a multiple of an alignment (tensor
 * slots of 256 bytes, arena and workspace offsets, file padding, buffer growth steps).
 *
 * Overflow: where the rounded value does not fit in a size_t, kiln_round_up() saturates to
 * SIZE_MAX instead of wrapping to a small value (so a caller can never under-allocate; a request
 * for SIZE_MAX bytes fails). SIZE_MAX is not a multiple of the alignment, but kiln's callers never
 * get there: their sizes are byte counts of checked dims, file sizes and header lengths.
 *
 * Host code only; plain C that also compiles as C++, so .cu files may include it.
 * Not a public header.
 */
#ifndef KILN_CORE_ROUND_H
#define KILN_CORE_ROUND_H

#include <stddef.h>
#include <stdint.h>

/* n rounded up to the next multiple of a (n itself when it is one); a must be > 0.
 * SIZE_MAX when that multiple exceeds SIZE_MAX. */
static inline size_t kiln_round_up(size_t n, size_t a) {
  size_t rem = n % a;
  if (rem == 0) return n;
  return n > SIZE_MAX - (a - rem) ? SIZE_MAX : n + (a - rem);
}

#endif /* KILN_CORE_ROUND_H */
