// Normalization over the last dim of x [R, C]: LayerNorm, RMSNorm, ScaleNorm, forward and backward.
// defines: layer_norm_<t>, layer_norm_nobias_<t>, rms_norm_<t>      one warp per row (R rows, 8 per block)
//          scale_norm_<t>                                          one block per row
//          layer_norm_backward_<t>, rms_norm_backward_<t>          one warp per row, blocks grid-striding
//          scale_norm_backward_<t>                                 a block per group of rows
// Statistics (mean, rstd, rnorm) are f32. Backward kernels write dx and per-block partial sums of
// the parameter gradients ([blocks, C] f32, or [blocks] for ScaleNorm's scalar gain), which
// reduce.cu's sumrows_final_<t> / sum_final_<t> add up. The partials live in dynamic shared
// memory while a block walks its rows: (LayerNorm 2, RMSNorm 1) × C floats.
#include "common.cuh"

// One warp per row (rows_per_block = blockDim.x / 32): warp shuffles instead of block barriers, and
// 16-byte loads when C and the pointers allow. Three passes over the row (mean, variance, output)
// read it from L1 after the first. RMSNorm (LN = false) skips the mean pass; BIAS adds b.
template <typename T>
__device__ __forceinline__ bool row_vectors(i64 C, const void* a, const void* b, const void* c, const void* d) {
  return C % (16 / sizeof(T)) == 0 && aligned16(a) && aligned16(b) && aligned16(c) && (d == nullptr || aligned16(d));
}

// f(c, x[c]) for this lane's elements of a row of C, 16-byte vectors when `vec`.
#define ROW_LOOP(VEC, ROW, BODY)                                                            \
  if (VEC) {                                                                                 \
    constexpr int V = 16 / sizeof(T);                                                        \
    for (i64 c0 = (i64)lane * V; c0 < C; c0 += 32 * V) {                                     \
      Vec16<T> xv;                                                                           \
      xv.raw = *reinterpret_cast<const uint4*>((ROW) + c0);                                  \
      _Pragma("unroll") for (int j = 0; j < V; j++) {                                        \
        const i64 c = c0 + j;                                                                \
        const float xc = to_f32(xv.v[j]);                                                    \
        BODY;                                                                                \
      }                                                                                      \
    }                                                                                        \
  } else {                                                                                   \
    for (i64 c = lane; c < C; c += 32) {                                                     \
      const float xc = to_f32((ROW)[c]);                                                     \
      BODY;                                                                                  \
    }                                                                                        \
  }

template <typename T, bool LN, bool BIAS>
__device__ void norm_rows(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b, T* __restrict__ y,
                          float* __restrict__ mean, float* __restrict__ rstd, i64 R, i64 C, float eps) {
  const int lane = threadIdx.x & 31;
  const i64 r = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (r >= R) return;
  const T* xr = x + r * C;
  T* yr = y + r * C;
  const bool vec = row_vectors<T>(C, xr, yr, w, BIAS ? (const void*)b : nullptr);
  float m = 0.f;
  if (LN) {
    float s = 0.f;
    ROW_LOOP(vec, xr, s += xc)
    m = warp_all(s, SumOp()) / (float)C;
  }
  float q = 0.f;
  ROW_LOOP(vec, xr, { const float d = xc - m; q += d * d; })
  const float rs = 1.f / sqrtf(warp_all(q, SumOp()) / (float)C + eps);
  if (vec) {
    constexpr int V = 16 / sizeof(T);
    for (i64 c0 = (i64)lane * V; c0 < C; c0 += 32 * V) {
      Vec16<T> xv, wv, bv, yv;
      xv.raw = *reinterpret_cast<const uint4*>(xr + c0);
      wv.raw = *reinterpret_cast<const uint4*>(w + c0);
      if (BIAS) bv.raw = *reinterpret_cast<const uint4*>(b + c0);
#pragma unroll
      for (int j = 0; j < V; j++) {
        float o = (to_f32(xv.v[j]) - m) * rs * to_f32(wv.v[j]);
        if (BIAS) o += to_f32(bv.v[j]);
        yv.v[j] = from_f32<T>(o);
      }
      *reinterpret_cast<uint4*>(yr + c0) = yv.raw;
    }
  } else {
    for (i64 c = lane; c < C; c += 32) {
      float o = (to_f32(xr[c]) - m) * rs * to_f32(w[c]);
      if (BIAS) o += to_f32(b[c]);
      yr[c] = from_f32<T>(o);
    }
  }
  if (lane == 0) {
    if (LN) mean[r] = m;
    rstd[r] = rs;
  }
}

// y = x / max(‖x‖, eps) · g, g one element.
template <typename T>
__device__ void scale_norm(const T* __restrict__ x, const T* __restrict__ g, T* __restrict__ y, float* __restrict__ rnorm, i64 C, float eps) {
  const i64 r = blockIdx.x;
  const T* xr = x + r * C;
  T* yr = y + r * C;
  float s = 0.f;
  for (i64 c = threadIdx.x; c < C; c += blockDim.x) {
    const float v = to_f32(xr[c]);
    s += v * v;
  }
  const float rn = 1.f / fmaxf(sqrtf(block_allsum(s)), eps);
  const float k = rn * to_f32(g[0]);
  for (i64 c = threadIdx.x; c < C; c += blockDim.x) yr[c] = from_f32<T>(to_f32(xr[c]) * k);
  if (threadIdx.x == 0) rnorm[r] = rn;
}

// LayerNorm (LN) or RMSNorm backward. dx = rstd · (g − mean(g) − x̂ · mean(g · x̂)), g = dy · w
// (RMSNorm: no mean term, x̂ = x · rstd). One warp per row, the block's warps walking rows with a
// grid stride. Each warp sums dy · x̂ (dw) and dy (db, LN) over its rows into its own slice of
// shared memory (a lane owns its columns: no atomics), then the block adds its warps' slices in
// warp order and writes its partials: dw at part[block · C + c], db (LN) at part[(blocks + block)
// · C + c]. Fixed orders throughout, so the result is the same on every run.
template <typename T, bool LN>
__device__ void norm_backward(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ w,
                              const float* __restrict__ mean, const float* __restrict__ rstd, T* __restrict__ dx,
                              float* __restrict__ part, i64 R, i64 C) {
  extern __shared__ float acc[];  // per warp: dw [C], then db [C] (LN)
  const int lane = threadIdx.x & 31;
  const int wpb = blockDim.x >> 5;
  const i64 slice = (LN ? 2 : 1) * C;
  for (i64 i = threadIdx.x; i < wpb * slice; i += blockDim.x) acc[i] = 0.f;
  __syncthreads();
  float* wacc = acc + (threadIdx.x >> 5) * slice;
  for (i64 r = (i64)blockIdx.x * wpb + (threadIdx.x >> 5); r < R; r += (i64)gridDim.x * wpb) {
    const T* dyr = dy + r * C;
    const T* xr = x + r * C;
    T* dxr = dx + r * C;
    const float m = LN ? mean[r] : 0.f, rs = rstd[r];
    const bool vec = row_vectors<T>(C, dyr, xr, dxr, w);
    float sg = 0.f, sgx = 0.f;
    if (vec) {
      constexpr int V = 16 / sizeof(T);
      for (i64 c0 = (i64)lane * V; c0 < C; c0 += 32 * V) {
        Vec16<T> dv, xv, wv;
        dv.raw = *reinterpret_cast<const uint4*>(dyr + c0);
        xv.raw = *reinterpret_cast<const uint4*>(xr + c0);
        wv.raw = *reinterpret_cast<const uint4*>(w + c0);
#pragma unroll
        for (int j = 0; j < V; j++) {
          const float d = to_f32(dv.v[j]);
          const float xh = (to_f32(xv.v[j]) - m) * rs;
          const float g = d * to_f32(wv.v[j]);
          sg += g;
          sgx += g * xh;
          wacc[c0 + j] += d * xh;
          if (LN) wacc[C + c0 + j] += d;
        }
      }
    } else {
      for (i64 c = lane; c < C; c += 32) {
        const float d = to_f32(dyr[c]);
        const float xh = (to_f32(xr[c]) - m) * rs;
        const float g = d * to_f32(w[c]);
        sg += g;
        sgx += g * xh;
        wacc[c] += d * xh;
        if (LN) wacc[C + c] += d;
      }
    }
    sg = LN ? warp_all(sg, SumOp()) / (float)C : 0.f;
    sgx = warp_all(sgx, SumOp()) / (float)C;
    if (vec) {
      constexpr int V = 16 / sizeof(T);
      for (i64 c0 = (i64)lane * V; c0 < C; c0 += 32 * V) {
        Vec16<T> dv, xv, wv, ov;
        dv.raw = *reinterpret_cast<const uint4*>(dyr + c0);
        xv.raw = *reinterpret_cast<const uint4*>(xr + c0);
        wv.raw = *reinterpret_cast<const uint4*>(w + c0);
#pragma unroll
        for (int j = 0; j < V; j++) {
          const float xh = (to_f32(xv.v[j]) - m) * rs;
          ov.v[j] = from_f32<T>(rs * (to_f32(dv.v[j]) * to_f32(wv.v[j]) - sg - xh * sgx));
        }
        *reinterpret_cast<uint4*>(dxr + c0) = ov.raw;
      }
    } else {
      for (i64 c = lane; c < C; c += 32) {
        const float xh = (to_f32(xr[c]) - m) * rs;
        dxr[c] = from_f32<T>(rs * (to_f32(dyr[c]) * to_f32(w[c]) - sg - xh * sgx));
      }
    }
  }
  __syncthreads();
  for (i64 c = threadIdx.x; c < C; c += blockDim.x) {
    float sw = 0.f, sb = 0.f;
    for (int k = 0; k < wpb; k++) {
      sw += acc[k * slice + c];
      if (LN) sb += acc[k * slice + C + c];
    }
    part[(i64)blockIdx.x * C + c] = sw;
    if (LN) part[((i64)gridDim.x + blockIdx.x) * C + c] = sb;
  }
}

// ScaleNorm backward: where ‖x‖ ≥ eps, dx = g·rn·(dy − x·rn²·Σdy·x), else dx = g·rn·dy;
// dg partial per block = Σ_rows (Σ dy·x)·rn, at part[block].
template <typename T>
__device__ void scale_norm_backward(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ g,
                                    const float* __restrict__ rnorm, T* __restrict__ dx, float* __restrict__ part,
                                    i64 R, i64 C, float eps) {
  const float G = to_f32(g[0]);
  float accG = 0.f;
  for (i64 r = blockIdx.x; r < R; r += gridDim.x) {
    const T* dyr = dy + r * C;
    const T* xr = x + r * C;
    float sdx = 0.f, ss = 0.f;
    for (i64 c = threadIdx.x; c < C; c += blockDim.x) {
      const float v = to_f32(xr[c]);
      sdx += to_f32(dyr[c]) * v;
      ss += v * v;
    }
    sdx = block_allsum(sdx);
    ss = block_allsum(ss);
    const float rn = rnorm[r];
    accG += sdx * rn;
    const float k = G * rn;
    const bool clamped = !(sqrtf(ss) >= eps);
    const float t = rn * rn * sdx;
    T* dxr = dx + r * C;
    for (i64 c = threadIdx.x; c < C; c += blockDim.x) {
      const float d = to_f32(dyr[c]);
      dxr[c] = from_f32<T>(clamped ? k * d : k * (d - to_f32(xr[c]) * t));
    }
  }
  if (threadIdx.x == 0) part[blockIdx.x] = accG;
}

#define DEFINE_NORMS(T, S)                                                                                \
  extern "C" __global__ void layer_norm_##S(const T* x, const T* w, const T* b, T* y, float* mean, float* rstd, i64 R, i64 C, \
                                            float eps) {                                                    \
    norm_rows<T, true, true>(x, w, b, y, mean, rstd, R, C, eps);                                           \
  }                                                                                                        \
  extern "C" __global__ void layer_norm_nobias_##S(const T* x, const T* w, T* y, float* mean, float* rstd, i64 R, i64 C, float eps) { \
    norm_rows<T, true, false>(x, w, nullptr, y, mean, rstd, R, C, eps);                                    \
  }                                                                                                        \
  extern "C" __global__ void rms_norm_##S(const T* x, const T* w, T* y, float* rstd, i64 R, i64 C, float eps) { \
    norm_rows<T, false, false>(x, w, nullptr, y, nullptr, rstd, R, C, eps);                                \
  }                                                                                                        \
  extern "C" __global__ void scale_norm_##S(const T* x, const T* g, T* y, float* rnorm, i64 C, float eps) { \
    scale_norm<T>(x, g, y, rnorm, C, eps);                                                                 \
  }                                                                                                        \
  extern "C" __global__ void layer_norm_backward_##S(const T* dy, const T* x, const T* w, const float* mean, const float* rstd, \
                                                     T* dx, float* part, i64 R, i64 C) {                   \
    norm_backward<T, true>(dy, x, w, mean, rstd, dx, part, R, C);                                          \
  }                                                                                                        \
  extern "C" __global__ void rms_norm_backward_##S(const T* dy, const T* x, const T* w, const float* rstd, T* dx, float* part, \
                                                   i64 R, i64 C) {                                         \
    norm_backward<T, false>(dy, x, w, nullptr, rstd, dx, part, R, C);                                      \
  }                                                                                                        \
  extern "C" __global__ void scale_norm_backward_##S(const T* dy, const T* x, const T* g, const float* rnorm, T* dx, float* part, \
                                                     i64 R, i64 C, float eps) {                            \
    scale_norm_backward<T>(dy, x, g, rnorm, dx, part, R, C, eps);                                          \
  }
FOR_FLOAT_TYPES(DEFINE_NORMS)
