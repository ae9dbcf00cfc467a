// Dropout with the Philox4x32-10 stream of tensor/philox.ts, bit for bit.
// defines: dropout_<t>   y[i] = keep(offset + i) ? x[i] · scale : 0
// Position j of stream `seed` is word j mod 4 of philox(counter = (b mod 2^32, b / 2^32, 0, 0),
// key = (seed mod 2^32, seed / 2^32)) with b = j / 4; keep(j) ⇔ (u(j) >> 8) ≥ threshold, where
// threshold = ceil(p · 2^24) (dropoutThreshold). One thread per Philox block.
#include "common.cuh"

__device__ __forceinline__ void philox4x32_10(unsigned c0, unsigned c1, unsigned k0, unsigned k1, unsigned out[4]) {
  unsigned x0 = c0, x1 = c1, x2 = 0u, x3 = 0u;
#pragma unroll
  for (int r = 0; r < 10; r++) {
    if (r > 0) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    const unsigned hi0 = __umulhi(0xD2511F53u, x0), lo0 = 0xD2511F53u * x0;
    const unsigned hi1 = __umulhi(0xCD9E8D57u, x2), lo1 = 0xCD9E8D57u * x2;
    x0 = hi1 ^ x1 ^ k0;
    x1 = lo1;
    x2 = hi0 ^ x3 ^ k1;
    x3 = lo0;
  }
  out[0] = x0;
  out[1] = x1;
  out[2] = x2;
  out[3] = x3;
}

template <typename T>
__device__ void dropout(const T* __restrict__ x, T* __restrict__ y, i64 n, i64 offset, unsigned k0, unsigned k1,
                        unsigned threshold, float scale) {
  const i64 first = offset >> 2, last = (offset + n - 1) >> 2;
  for (i64 b = first + (i64)blockIdx.x * blockDim.x + threadIdx.x; b <= last; b += (i64)blockDim.x * gridDim.x) {
    unsigned w[4];
    philox4x32_10((unsigned)b, (unsigned)(b >> 32), k0, k1, w);
#pragma unroll
    for (int k = 0; k < 4; k++) {
      const i64 i = b * 4 + k - offset;
      if (i >= 0 && i < n) y[i] = (w[k] >> 8) >= threshold ? from_f32<T>(__fmul_rn(to_f32(x[i]), scale)) : from_f32<T>(0.f);
    }
  }
}

#define DEFINE_DROPOUT(T, S)                                                                              \
  extern "C" __global__ void dropout_##S(const T* x, T* y, i64 n, i64 offset, unsigned k0, unsigned k1, unsigned threshold, float scale) { \
    dropout<T>(x, y, n, offset, k0, k1, threshold, scale);                                                 \
  }
FOR_FLOAT_TYPES(DEFINE_DROPOUT)
