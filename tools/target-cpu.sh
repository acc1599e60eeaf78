#!/bin/sh
# Prints the -target-cpu for the SIMD kernels on this machine (Swift otherwise compiles SIMD for SSE2 only).
# AMD with AVX-512 → znver4, Intel with AVX-512 → skylake-avx512, AVX2 + FMA → haswell, else plain x86-64.
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null)
vendor=$(grep -m1 '^vendor_id' /proc/cpuinfo 2>/dev/null)
case "$flags" in
  *avx512f*avx512bw*avx512vl*)
    case "$vendor" in *AMD*) echo znver4 ;; *) echo skylake-avx512 ;; esac ;;
  *avx2*fma*|*fma*avx2*) echo haswell ;;
  *) echo x86-64 ;;
esac
