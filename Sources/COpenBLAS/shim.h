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
