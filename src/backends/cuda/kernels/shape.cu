// Copies that move data around: permute, and the strided row copies behind split and concat.
// defines: permute_<e>   y = x permuted; the output's dims (≤ 6, after merging) walk x with strides
//          copy2d_<e>    dst[r · dstPitch + k] = src[r · srcPitch + k], r < rows, k < run
// <e> is the element size in bytes (1, 2, 4, 8): a copy does not care about the dtype.
#include "common.cuh"

// I: the index type, 32-bit when n < 2^31 (64-bit division is several times slower).
template <typename E, typename I>
__device__ void permute(const E* __restrict__ x, E* __restrict__ y, i64 n, int nd, i64 d0, i64 d1, i64 d2, i64 d3, i64 d4,
                        i64 d5, i64 s0, i64 s1, i64 s2, i64 s3, i64 s4, i64 s5) {
  const I dims[6] = {(I)d0, (I)d1, (I)d2, (I)d3, (I)d4, (I)d5};
  const I strides[6] = {(I)s0, (I)s1, (I)s2, (I)s3, (I)s4, (I)s5};
  for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < (I)n; i += (I)blockDim.x * gridDim.x) {
    I rest = i, src = 0;
#pragma unroll
    for (int k = 5; k >= 0; k--) {
      if (k < nd) {
        const I q = rest / dims[k];
        src += (rest - q * dims[k]) * strides[k];
        rest = q;
      }
    }
    y[i] = x[src];
  }
}

template <typename E>
__device__ void copy2d(const E* __restrict__ src, E* __restrict__ dst, i64 rows, i64 run, i64 srcPitch, i64 dstPitch) {
  GRID_STRIDE(i, rows * run) {
    const i64 r = i / run, k = i - r * run;
    dst[r * dstPitch + k] = src[r * srcPitch + k];
  }
}

#define DEFINE_COPIES(E, S)                                                                               \
  extern "C" __global__ void permute_##S(const E* x, E* y, i64 n, int nd, i64 d0, i64 d1, i64 d2, i64 d3, i64 d4, i64 d5, \
                                         i64 s0, i64 s1, i64 s2, i64 s3, i64 s4, i64 s5) {                 \
    if (n < (1ll << 31)) permute<E, unsigned>(x, y, n, nd, d0, d1, d2, d3, d4, d5, s0, s1, s2, s3, s4, s5);   \
    else permute<E, i64>(x, y, n, nd, d0, d1, d2, d3, d4, d5, s0, s1, s2, s3, s4, s5);                       \
  }                                                                                                        \
  extern "C" __global__ void copy2d_##S(const E* src, E* dst, i64 rows, i64 run, i64 srcPitch, i64 dstPitch) { \
    copy2d<E>(src, dst, rows, run, srcPitch, dstPitch);                                                    \
  }
DEFINE_COPIES(unsigned char, 1)
DEFINE_COPIES(unsigned short, 2)
DEFINE_COPIES(unsigned int, 4)
DEFINE_COPIES(unsigned long long, 8)
