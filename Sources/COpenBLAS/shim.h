#include <cblas.h>

/* A read prefetch into all cache levels. The weight-streaming matmul asks for the next weight tile while it
   computes on the current one; prefetches never fault, so addresses past the end of a matrix are harmless. */
static inline void specserve_prefetch(const void *address) {
    __builtin_prefetch(address, 0, 3);
}

/* Sixteen bfloat16 values (the upper halves of F32s) widened to the F32s they stand for: zero-extend, shift into
   the upper half. Exact. The streaming matmul reads BF16 weight copies through it (Swift's generic SIMD widening
   compiled to a call per vector). Imported into Swift as SIMD16<Float>. */
typedef float specserve_float16 __attribute__((ext_vector_type(16)));
typedef unsigned short specserve_bf16x16 __attribute__((ext_vector_type(16)));
typedef unsigned int specserve_uint32x16 __attribute__((ext_vector_type(16)));
static inline specserve_float16 specserve_widen_bf16(const void *address) {
    specserve_bf16x16 half;
    __builtin_memcpy(&half, address, sizeof half);
    specserve_uint32x16 wide = __builtin_convertvector(half, specserve_uint32x16) << 16;
    specserve_float16 out;
    __builtin_memcpy(&out, &wide, sizeof out);
    return out;
}

/* The horizontal sums of four 16-lane accumulators at once, each in exactly the order of Swift's `horizontalSum`
   (lanes i + i+8, then i + i+4, then i + i+2, then lane 0 + lane 1): the same additions of the same operands, so
   the same bits, but the four trees share their shuffles and adds (5 vector adds instead of 16 adds). The streaming
   matmul finishes its tiles with it. Written here because clang turns these two-source shuffles into a few
   lane-crossing instructions, where the same steps through Swift's SIMD halves compiled to about twice the adds and
   moves. */
typedef float specserve_float8 __attribute__((ext_vector_type(8)));
typedef float specserve_float4 __attribute__((ext_vector_type(4)));
static inline specserve_float4 specserve_sum4(specserve_float16 a, specserve_float16 b, specserve_float16 c,
                                              specserve_float16 d) {
    /* Halves: lanes 0-7 of u hold a's x[i] + x[i+8], lanes 8-15 b's; likewise v for c and d. */
    specserve_float16 u = __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23)
                        + __builtin_shufflevector(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    specserve_float16 v = __builtin_shufflevector(c, d, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23)
                        + __builtin_shufflevector(c, d, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    /* Quarters: groups of 4 lanes, one per accumulator, h[i] + h[i+4]. */
    specserve_float16 w = __builtin_shufflevector(u, v, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27)
                        + __builtin_shufflevector(u, v, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    /* Eighths: pairs, q[i] + q[i+2]. */
    specserve_float8 z = __builtin_shufflevector(w, w, 0, 1, 4, 5, 8, 9, 12, 13)
                       + __builtin_shufflevector(w, w, 2, 3, 6, 7, 10, 11, 14, 15);
    /* Lane 0 + lane 1 of each pair. */
    return __builtin_shufflevector(z, z, 0, 2, 4, 6) + __builtin_shufflevector(z, z, 1, 3, 5, 7);
}
