// Shared by every kernel source: storage types, f32 conversions, grid-stride loops, block sums.
//
// bf16 and f16 are 16-bit storage types; all arithmetic is f32. The conversions are written out
// here (no cuda_bf16.h), so the sources compile with NVRTC alone and round exactly like the CPU
// backend: f32 → bf16 is round-to-nearest-even with NaN kept NaN (tensor/dtype.ts f32ToBf16),
// f32 → f16 is the hardware's round-to-nearest-even conversion.
#pragma once

typedef long long i64;

#define NEG_INF __int_as_float(0xff800000)
#define QNAN __int_as_float(0x7fc00000)

struct bf16 { unsigned short x; };
struct f16 { unsigned short x; };

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(int v) { return (float)v; }
__device__ __forceinline__ float to_f32(bf16 v) { return __uint_as_float(((unsigned)v.x) << 16); }
__device__ __forceinline__ float to_f32(f16 v) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.x));
  return f;
}

template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ int from_f32<int>(float v) { return (int)v; }  // truncates, like Math.trunc
template <> __device__ __forceinline__ bf16 from_f32<bf16>(float v) {
  unsigned u = __float_as_uint(v);
  bf16 r;
  if ((u & 0x7fffffffu) > 0x7f800000u) r.x = (unsigned short)((u >> 16) | 0x40u);
  else r.x = (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  return r;
}
template <> __device__ __forceinline__ f16 from_f32<f16>(float v) {
  f16 r;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r.x) : "f"(v));
  return r;
}

// The float storage types each kernel is instantiated for: X(C type, name suffix).
#define FOR_FLOAT_TYPES(X) X(float, f32) X(bf16, bf16) X(f16, f16)

// for (i64 i = first index of this thread; i < n; i += threads in the grid)
#define GRID_STRIDE(i, n) \
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)blockDim.x * gridDim.x)

// Bits of the device error word (backend.ts DEVICE_ERRORS).
#define ERR_EMBEDDING_ID 1
#define ERR_EMBEDDING_BACKWARD_ID 2
#define ERR_CROSS_ENTROPY_LABEL 4

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}

// Sum of v over a 1-D block (blockDim.x a multiple of 32, at most 1024); the result is valid in
// thread 0. Uses 32 floats of shared memory; call it at most once per kernel.
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  const int warps = blockDim.x >> 5;
  v = threadIdx.x < warps ? partial[threadIdx.x] : 0.f;
  if (warp == 0) v = warp_sum(v);
  return v;
}

struct SumOp { __device__ __forceinline__ float operator()(float a, float b) const { return a + b; } };
struct MaxOp { __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); } };

template <typename Op>
__device__ __forceinline__ float warp_all(float v, Op op) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// op over v of every thread of a 1-D block (blockDim.x a multiple of 32), returned to every thread.
// May be called repeatedly: the leading barrier keeps a later call from overwriting the partials
// an earlier one is still reading.
template <typename Op>
__device__ float block_all(float v, Op op, float identity) {
  __shared__ float part[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_all(v, op);
  __syncthreads();
  if (lane == 0) part[warp] = v;
  __syncthreads();
  v = lane < warps ? part[lane] : identity;
  return warp_all(v, op);
}

__device__ __forceinline__ float block_allsum(float v) { return block_all(v, SumOp(), 0.f); }
__device__ __forceinline__ float block_allmax(float v) { return block_all(v, MaxOp(), NEG_INF); }

// 16-byte vectors of a storage type (4 f32 or 8 bf16/f16), for memory-bound elementwise kernels.
template <typename T> union Vec16 {
  uint4 raw;
  T v[16 / sizeof(T)];
};

__device__ __forceinline__ bool aligned16(const void* p) { return ((unsigned long long)p & 15ull) == 0; }

// y[i] = f(a[i]) over n elements: 16-byte loads and stores when every pointer is 16-byte aligned
// (allocations are; the tail past the last whole vector is done one element at a time).
// y may equal a (in place).
template <typename T, typename F>
__device__ __forceinline__ void map_unary(const T* a, T* y, i64 n, F f) {
  constexpr int V = 16 / sizeof(T);
  i64 done = 0;
  if (aligned16(a) && aligned16(y)) {
    const i64 nv = n / V;
    GRID_STRIDE(i, nv) {
      Vec16<T> x, r;
      x.raw = reinterpret_cast<const uint4*>(a)[i];
#pragma unroll
      for (int k = 0; k < V; k++) r.v[k] = from_f32<T>(f(to_f32(x.v[k])));
      reinterpret_cast<uint4*>(y)[i] = r.raw;
    }
    done = nv * V;
  }
  GRID_STRIDE(i, n - done) y[done + i] = from_f32<T>(f(to_f32(a[done + i])));
}

// y[i] = f(a[i], b[i]) over n elements, as map_unary; y may equal a.
template <typename T, typename F>
__device__ __forceinline__ void map_binary(const T* a, const T* b, T* y, i64 n, F f) {
  constexpr int V = 16 / sizeof(T);
  i64 done = 0;
  if (aligned16(a) && aligned16(b) && aligned16(y)) {
    const i64 nv = n / V;
    GRID_STRIDE(i, nv) {
      Vec16<T> x, z, r;
      x.raw = reinterpret_cast<const uint4*>(a)[i];
      z.raw = reinterpret_cast<const uint4*>(b)[i];
#pragma unroll
      for (int k = 0; k < V; k++) r.v[k] = from_f32<T>(f(to_f32(x.v[k]), to_f32(z.v[k])));
      reinterpret_cast<uint4*>(y)[i] = r.raw;
    }
    done = nv * V;
  }
  GRID_STRIDE(i, n - done) y[done + i] = from_f32<T>(f(to_f32(a[done + i]), to_f32(b[done + i])));
}
