// Normalization over the last dim of x [R, C]: LayerNorm, RMSNorm, ScaleNorm, forward and backward.
// defines: layer_norm_<t>, layer_norm_nobias_<t>, rms_norm_<t>, scale_norm_<t>        one block per row
//          layer_norm_backward_<t>, rms_norm_backward_<t>, scale_norm_backward_<t>     a block per group of rows
// Statistics (mean, rstd, rnorm) are f32. Backward kernels write dx and per-block partial sums of
// the parameter gradients ([blocks, C] f32, or [blocks] for ScaleNorm's scalar gain), which
// reduce.cu's sumrows_final_<t> / sum_final_<t> add up. The partials live in dynamic shared
// memory while a block walks its rows: (LayerNorm 2, RMSNorm 1) × C floats.
#include "common.cuh"

template <typename T, bool BIAS>
__device__ void layer_norm(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b, T* __restrict__ y,
                           float* __restrict__ mean, float* __restrict__ rstd, i64 C, float eps) {
  const i64 r = blockIdx.x;
  const T* xr = x + r * C;
  T* yr = y + r * C;
  float s = 0.f;
  for (i64 c = threadIdx.x; c < C; c += blockDim.x) s += to_f32(xr[c]);
  const float m = block_allsum(s) / (float)C;
  float v = 0.f;
  for (i64 c = threadIdx.x; c < C; c += blockDim.x) {
    const float d = to_f32(xr[c]) - m;
    v += d * d;
  }
  const float rs = 1.f / sqrtf(block_allsum(v) / (float)C + eps);
  for (i64 c = threadIdx.x; c < C; c += blockDim.x) {
    float o = (to_f32(xr[c]) - m) * rs * to_f32(w[c]);
    if (BIAS) o += to_f32(b[c]);
    yr[c] = from_f32<T>(o);
  }
  if (threadIdx.x == 0) {
    mean[r] = m;
    rstd[r] = rs;
  }
}

template <typename T>
__device__ void rms_norm(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y, float* __restrict__ rstd, i64 C, float eps) {
  const i64 r = blockIdx.x;
  const T* xr = x + r * C;
  T* yr = y + r * C;
  float s = 0.f;
  for (i64 c = threadIdx.x; c < C; c += blockDim.x) {
    const float v = to_f32(xr[c]);
    s += v * v;
  }
  const float rs = 1.f / sqrtf(block_allsum(s) / (float)C + eps);
  for (i64 c = threadIdx.x; c < C; c += blockDim.x) yr[c] = from_f32<T>(to_f32(xr[c]) * rs * to_f32(w[c]));
  if (threadIdx.x == 0) rstd[r] = rs;
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
// (RMSNorm: no mean term, x̂ = x · rstd). Partials: dw at part[block · C + c], db (LN) at
// part[(blocks + block) · C + c].
template <typename T, bool LN>
__device__ void norm_backward(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ w,
                              const float* __restrict__ mean, const float* __restrict__ rstd, T* __restrict__ dx,
                              float* __restrict__ part, i64 R, i64 C) {
  extern __shared__ float acc[];  // dw [C], then db [C] (LN)
  // Thread t owns columns t, t + blockDim.x, ... of acc in every loop below: no barrier needed.
  for (i64 c = threadIdx.x; c < C; c += blockDim.x) {
    acc[c] = 0.f;
    if (LN) acc[C + c] = 0.f;
  }
  for (i64 r = blockIdx.x; r < R; r += gridDim.x) {
    const T* dyr = dy + r * C;
    const T* xr = x + r * C;
    const float m = LN ? mean[r] : 0.f, rs = rstd[r];
    float sg = 0.f, sgx = 0.f;
    for (i64 c = threadIdx.x; c < C; c += blockDim.x) {
      const float d = to_f32(dyr[c]);
      const float xh = (to_f32(xr[c]) - m) * rs;
      const float g = d * to_f32(w[c]);
      sg += g;
      sgx += g * xh;
      acc[c] += d * xh;
      if (LN) acc[C + c] += d;
    }
    sg = LN ? block_allsum(sg) / (float)C : 0.f;
    sgx = block_allsum(sgx) / (float)C;
    T* dxr = dx + r * C;
    for (i64 c = threadIdx.x; c < C; c += blockDim.x) {
      const float xh = (to_f32(xr[c]) - m) * rs;
      dxr[c] = from_f32<T>(rs * (to_f32(dyr[c]) * to_f32(w[c]) - sg - xh * sgx));
    }
  }
  for (i64 c = threadIdx.x; c < C; c += blockDim.x) {
    part[(i64)blockIdx.x * C + c] = acc[c];
    if (LN) part[((i64)gridDim.x + blockIdx.x) * C + c] = acc[C + c];
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
  extern "C" __global__ void layer_norm_##S(const T* x, const T* w, const T* b, T* y, float* mean, float* rstd, i64 C, float eps) { \
    layer_norm<T, true>(x, w, b, y, mean, rstd, C, eps);                                                   \
  }                                                                                                        \
  extern "C" __global__ void layer_norm_nobias_##S(const T* x, const T* w, T* y, float* mean, float* rstd, i64 C, float eps) { \
    layer_norm<T, false>(x, w, nullptr, y, mean, rstd, C, eps);                                            \
  }                                                                                                        \
  extern "C" __global__ void rms_norm_##S(const T* x, const T* w, T* y, float* rstd, i64 C, float eps) {    \
    rms_norm<T>(x, w, y, rstd, C, eps);                                                                    \
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
