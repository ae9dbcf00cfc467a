// Reductions with f32 accumulation, in two deterministic passes (no atomics: the same input gives
// the same bits on every run).
// defines: sum_partial_<t>, sumsq_partial_<t>   x [n] → partial [gridDim.x] f32
//          sum_final_<t>                        partial [count] f32 → y [1] <t>   (one block)
//          sumrows_partial_<t>                  x [R, C] → partial [chunks, C] f32, block (32, 8)
//          sumrows_final_<t>                    partial [chunks, C] f32 → y [C] <t>
//          sumsq_chunks_<t>                     Σx² of chunk b → partial [b]: chunk b is table[2b] (a
//                                               device pointer) … + table[2b+1] elements (many tensors, one launch)
#include "common.cuh"

template <typename T, bool SQUARE>
__device__ void partial_sum(const T* __restrict__ x, i64 n, float* __restrict__ partial) {
  float acc = 0.f;
  GRID_STRIDE(i, n) {
    const float v = to_f32(x[i]);
    acc += SQUARE ? v * v : v;
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

template <typename T>
__device__ void final_sum(const float* __restrict__ partial, int count, T* __restrict__ y) {
  float acc = 0.f;
  for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];
  acc = block_sum(acc);
  if (threadIdx.x == 0) y[0] = from_f32<T>(acc);
}

// Column sums of x [R, C]. Block (32, 8) covers 32 columns; blockIdx.y is a chunk of `rows` rows.
template <typename T>
__device__ void rows_partial(const T* __restrict__ x, i64 R, i64 C, i64 rows, float* __restrict__ partial) {
  __shared__ float acc[8][33];
  const i64 c = (i64)blockIdx.x * 32 + threadIdx.x;
  const i64 r0 = (i64)blockIdx.y * rows;
  const i64 r1 = r0 + rows < R ? r0 + rows : R;
  float s = 0.f;
  if (c < C) for (i64 r = r0 + threadIdx.y; r < r1; r += 8) s += to_f32(x[r * C + c]);
  acc[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float t = 0.f;
    for (int k = 0; k < 8; k++) t += acc[k][threadIdx.x];
    partial[(i64)blockIdx.y * C + c] = t;
  }
}

template <typename T>
__device__ void rows_final(const float* __restrict__ partial, i64 chunks, i64 C, T* __restrict__ y) {
  GRID_STRIDE(c, C) {
    float s = 0.f;
    for (i64 k = 0; k < chunks; k++) s += partial[k * C + c];
    y[c] = from_f32<T>(s);
  }
}

#define DEFINE_REDUCTIONS(T, S)                                                                        \
  extern "C" __global__ void sum_partial_##S(const T* x, i64 n, float* partial) { partial_sum<T, false>(x, n, partial); } \
  extern "C" __global__ void sumsq_partial_##S(const T* x, i64 n, float* partial) { partial_sum<T, true>(x, n, partial); } \
  extern "C" __global__ void sum_final_##S(const float* partial, int count, T* y) { final_sum<T>(partial, count, y); } \
  extern "C" __global__ void sumrows_partial_##S(const T* x, i64 R, i64 C, i64 rows, float* partial) {  \
    rows_partial<T>(x, R, C, rows, partial);                                                            \
  }                                                                                                     \
  extern "C" __global__ void sumrows_final_##S(const float* partial, i64 chunks, i64 C, T* y) {         \
    rows_final<T>(partial, chunks, C, y);                                                               \
  }
FOR_FLOAT_TYPES(DEFINE_REDUCTIONS)

template <typename T>
__device__ void chunks_sumsq(const i64* __restrict__ table, float* __restrict__ partial) {
  const T* x = reinterpret_cast<const T*>(table[2 * blockIdx.x]);
  const i64 n = table[2 * blockIdx.x + 1];
  float acc = 0.f;
  for (i64 i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = to_f32(x[i]);
    acc += v * v;
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

#define DEFINE_CHUNK_SUMSQ(T, S) \
  extern "C" __global__ void sumsq_chunks_##S(const i64* table, float* partial) { chunks_sumsq<T>(table, partial); }
FOR_FLOAT_TYPES(DEFINE_CHUNK_SUMSQ)
