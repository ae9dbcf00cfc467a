// Normalization over the last dim of x [R, C]: LayerNorm, RMSNorm, ScaleNorm, forward and backward.
// defines: layer_norm_<t>, layer_norm_nobias_<t>, rms_norm_<t>      one warp per row (R rows, 8 per block)
//          scale_norm_<t>                                          one block per row
//          layer_norm_backward_r<NV>_{v,s}_<t>,                    one pass: a row group of threads per row,
//          rms_norm_backward_r<NV>_{v,s}_<t>                       a row's dy, x in registers (see norm_backward_reg)
//          layer_norm_backward_<t>, rms_norm_backward_<t>          fallback for wide rows: one warp per row
//          norm_params_final_<t>                                   partials [chunks, C] → dw (and db) [C]
//          scale_norm_backward_<t>                                 a block per group of rows
// Statistics (mean, rstd, rnorm) are f32. Backward kernels write dx and per-block partial sums of
// the parameter gradients ([blocks, C] f32, or [blocks] for ScaleNorm's scalar gain), which
// norm_params_final_<t> / reduce.cu's sum_final_<t> add up in a fixed order (no atomics).
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

// LayerNorm (LN) or RMSNorm backward: dx = rstd · (g − mean(g) − x̂ · mean(g · x̂)), g = dy · w,
// x̂ = (x − mean) · rstd (RMSNorm: no mean(g) term, x̂ = x · rstd); dw = Σ_rows dy · x̂, db = Σ_rows dy.
//
// norm_backward_reg: one pass over dy and x. A row group of blockDim.x = 32·wpr threads (wpr ≤ 8
// warps) handles one row at a time; blockDim.y = G groups per block (G · blockDim.x ≤ 256). Thread t
// of a group owns the same columns for every row: its NV slots, slot k being the V = 16 / sizeof(T)
// columns from (t + k · blockDim.x) · V (coalesced 16-byte loads when C % V == 0 and the pointers
// are aligned, else element loads of the same columns). A row's dy and x are loaded once into
// registers, the two row sums go through warp shuffles (and, with wpr > 1, a double-buffered
// shared array: one barrier per row), dx is written from the registers, and dy · x̂ and dy are
// added to the thread's own dw/db accumulators (registers, one per owned column). w is loaded into
// registers once. The grid is persistent (a few blocks per multiprocessor): group g of block b walks
// rows b·G + g, + gridDim.x·G, … (the block's groups iterate the same number of times, so the
// barriers are uniform). At the end the block adds its groups' accumulators in group order (shared
// memory, [2][C] floats when G > 1) and writes its partials: dw at part[b · C + c], db (LN) at
// part[(gridDim.x + b) · C + c]; norm_params_final adds those up over blocks. Every sum has a fixed
// order (given C, R and the grid), so results are the same on every run. C ≤ 256 · NV · V.
#define NORM_BW_THREADS 256

template <typename T, bool LN, int NV, bool VEC>
__device__ __forceinline__ void norm_backward_reg(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ w,
                                                  const float* __restrict__ mean, const float* __restrict__ rstd,
                                                  T* __restrict__ dx, float* __restrict__ part, i64 R, i64 C) {
  constexpr int V = 16 / sizeof(T);
  extern __shared__ float sacc[];                   // [dw C][db C] when blockDim.y > 1
  __shared__ float2 red[2][NORM_BW_THREADS / 32];  // per warp (sg, sgx), double-buffered
  const int tpr = blockDim.x, G = blockDim.y, wpr = tpr >> 5;
  const int t = threadIdx.x, lane = t & 31, gy = threadIdx.y;
  constexpr bool vec = VEC;  // the caller checked C % V == 0 and 16-byte aligned dy, x, dx, w
  Vec16<T> wv[NV];
  float aw[NV][V], ab[NV][V];
#pragma unroll
  for (int k = 0; k < NV; k++) {
    const i64 c0 = ((i64)t + (i64)k * tpr) * V;
    wv[k].raw = make_uint4(0u, 0u, 0u, 0u);
    if (vec) {
      if (c0 < C) wv[k].raw = *reinterpret_cast<const uint4*>(w + c0);
    } else {
#pragma unroll
      for (int j = 0; j < V; j++)
        if (c0 + j < C) wv[k].v[j] = w[c0 + j];
    }
#pragma unroll
    for (int j = 0; j < V; j++) aw[k][j] = ab[k][j] = 0.f;
  }
  const i64 groups = (i64)gridDim.x * G;
  int parity = 0;
  for (i64 base = (i64)blockIdx.x * G; base < R; base += groups) {
    const i64 r = base + gy;
    const bool active = r < R;
    const T* dyr = dy + r * C;
    const T* xr = x + r * C;
    Vec16<T> dv[NV], xv[NV];
    float m = 0.f, rs = 0.f;
    if (active) {
      if (LN) m = mean[r];
      rs = rstd[r];
    }
#pragma unroll
    for (int k = 0; k < NV; k++) {
      const i64 c0 = ((i64)t + (i64)k * tpr) * V;
      dv[k].raw = xv[k].raw = make_uint4(0u, 0u, 0u, 0u);
      if (!active) continue;
      if (vec) {
        if (c0 < C) {
          dv[k].raw = *reinterpret_cast<const uint4*>(dyr + c0);
          xv[k].raw = *reinterpret_cast<const uint4*>(xr + c0);
        }
      } else {
#pragma unroll
        for (int j = 0; j < V; j++)
          if (c0 + j < C) {
            dv[k].v[j] = dyr[c0 + j];
            xv[k].v[j] = xr[c0 + j];
          }
      }
    }
    // Out-of-range columns and inactive rows hold zeros: dy = w = 0 there, so they add nothing.
    float sg = 0.f, sgx = 0.f;
#pragma unroll
    for (int k = 0; k < NV; k++)
#pragma unroll
      for (int j = 0; j < V; j++) {
        const float g = to_f32(dv[k].v[j]) * to_f32(wv[k].v[j]);
        sg += g;
        sgx += g * ((to_f32(xv[k].v[j]) - m) * rs);
      }
    if (LN) sg = warp_all(sg, SumOp());
    sgx = warp_all(sgx, SumOp());
    if (wpr > 1) {
      float2* rr = red[parity] + gy * wpr;
      if (lane == 0) rr[t >> 5] = make_float2(sg, sgx);
      __syncthreads();
      sg = 0.f;
      sgx = 0.f;
      for (int i = 0; i < wpr; i++) {
        const float2 v = rr[i];
        sg += v.x;
        sgx += v.y;
      }
      parity ^= 1;
    }
    sg = LN ? sg / (float)C : 0.f;
    sgx = sgx / (float)C;
    if (!active) continue;
    T* dxr = dx + r * C;
#pragma unroll
    for (int k = 0; k < NV; k++) {
      const i64 c0 = ((i64)t + (i64)k * tpr) * V;
      Vec16<T> ov;
#pragma unroll
      for (int j = 0; j < V; j++) {
        const float d = to_f32(dv[k].v[j]);
        const float xh = (to_f32(xv[k].v[j]) - m) * rs;
        ov.v[j] = from_f32<T>(rs * (d * to_f32(wv[k].v[j]) - sg - xh * sgx));
        aw[k][j] += d * xh;
        if (LN) ab[k][j] += d;
      }
      if (vec) {
        if (c0 < C) *reinterpret_cast<uint4*>(dxr + c0) = ov.raw;
      } else {
#pragma unroll
        for (int j = 0; j < V; j++)
          if (c0 + j < C) dxr[c0 + j] = ov.v[j];
      }
    }
  }
  float* pw = part + (i64)blockIdx.x * C;
  float* pb = part + ((i64)gridDim.x + blockIdx.x) * C;
  if (G == 1) {
#pragma unroll
    for (int k = 0; k < NV; k++) {
      const i64 c0 = ((i64)t + (i64)k * tpr) * V;
#pragma unroll
      for (int j = 0; j < V; j++)
        if (c0 + j < C) {
          pw[c0 + j] = aw[k][j];
          if (LN) pb[c0 + j] = ab[k][j];
        }
    }
    return;
  }
  for (int g = 0; g < G; g++) {
    if (gy == g) {
#pragma unroll
      for (int k = 0; k < NV; k++) {
        const i64 c0 = ((i64)t + (i64)k * tpr) * V;
#pragma unroll
        for (int j = 0; j < V; j++)
          if (c0 + j < C) {
            sacc[c0 + j] = g == 0 ? aw[k][j] : sacc[c0 + j] + aw[k][j];
            if (LN) sacc[C + c0 + j] = g == 0 ? ab[k][j] : sacc[C + c0 + j] + ab[k][j];
          }
      }
    }
    __syncthreads();
  }
  for (i64 c = (i64)gy * tpr + t; c < C; c += (i64)tpr * G) {
    pw[c] = sacc[c];
    if (LN) pb[c] = sacc[C + c];
  }
}

// The fallback for rows wider than norm_backward_reg holds: one warp per row, the block's warps
// walking rows with a grid stride, two passes over the row from global memory. Each warp sums
// dy · x̂ (dw) and dy (db, LN) over its rows into its own slice of shared memory (a lane owns its
// columns: no atomics), then the block adds its warps' slices in warp order and writes its
// partials, laid out as norm_backward_reg's. Needs (LN 2, RMSNorm 1) × C floats of shared memory
// per warp.
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

// dw (blockIdx.y 0) or db (1) [C] = Σ_k part[k][c] over the `chunks` partial rows of
// norm_backward_reg / norm_backward (db's rows follow dw's). Block (32, 32): 32 columns, thread
// row y adds chunks y, y + 32, …, then row 0 adds the 32 sums in order.
template <typename T>
__device__ void norm_params_final(const float* __restrict__ part, i64 chunks, i64 C, T* __restrict__ dw, T* __restrict__ db) {
  __shared__ float s[32][33];
  const i64 c = (i64)blockIdx.x * 32 + threadIdx.x;
  const float* p = part + (blockIdx.y ? chunks * C : 0);
  float a = 0.f;
  if (c < C)
    for (i64 k = threadIdx.y; k < chunks; k += 32) a += p[k * C + c];
  s[threadIdx.y][threadIdx.x] = a;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float v = 0.f;
    for (int k = 0; k < 32; k++) v += s[k][threadIdx.x];
    (blockIdx.y ? db : dw)[c] = from_f32<T>(v);
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

// norm_backward_reg with NV slots a thread (_v: 16-byte vectors, _s: element loads), at least MINB
// blocks of NORM_BW_THREADS a multiprocessor (norm.ts's REG_MIN_BLOCKS must match). 16-bit types
// take NV ≤ 3, f32 NV ≤ 4 (more would spill registers under these bounds).
#define NORM_BACKWARD_REG_VS(T, S, NV, MINB, VEC, VS)                                                      \
  extern "C" __global__ void __launch_bounds__(NORM_BW_THREADS, MINB)                                      \
      layer_norm_backward_r##NV##VS##_##S(const T* dy, const T* x, const T* w, const float* mean, const float* rstd, \
                                          T* dx, float* part, i64 R, i64 C) {                              \
    norm_backward_reg<T, true, NV, VEC>(dy, x, w, mean, rstd, dx, part, R, C);                             \
  }                                                                                                        \
  extern "C" __global__ void __launch_bounds__(NORM_BW_THREADS, MINB)                                      \
      rms_norm_backward_r##NV##VS##_##S(const T* dy, const T* x, const T* w, const float* rstd, T* dx, float* part, \
                                        i64 R, i64 C) {                                                    \
    norm_backward_reg<T, false, NV, VEC>(dy, x, w, nullptr, rstd, dx, part, R, C);                         \
  }
#define NORM_BACKWARD_REG(T, S, NV, MINB)        \
  NORM_BACKWARD_REG_VS(T, S, NV, MINB, true, _v) \
  NORM_BACKWARD_REG_VS(T, S, NV, MINB, false, _s)
NORM_BACKWARD_REG(float, f32, 1, 4)
NORM_BACKWARD_REG(float, f32, 2, 2)
NORM_BACKWARD_REG(float, f32, 3, 2)
NORM_BACKWARD_REG(float, f32, 4, 2)
NORM_BACKWARD_REG(bf16, bf16, 1, 4)
NORM_BACKWARD_REG(bf16, bf16, 2, 2)
NORM_BACKWARD_REG(bf16, bf16, 3, 2)
NORM_BACKWARD_REG(f16, f16, 1, 4)
NORM_BACKWARD_REG(f16, f16, 2, 2)
NORM_BACKWARD_REG(f16, f16, 3, 2)

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
  extern "C" __global__ void norm_params_final_##S(const float* part, i64 chunks, i64 C, T* dw, T* db) {    \
    norm_params_final<T>(part, chunks, C, dw, db);                                                        \
  }                                                                                                        \
  extern "C" __global__ void scale_norm_backward_##S(const T* dy, const T* x, const T* g, const float* rnorm, T* dx, float* part, \
                                                     i64 R, i64 C, float eps) {                            \
    scale_norm_backward<T>(dy, x, g, rnorm, dx, part, R, C, eps);                                          \
  }
FOR_FLOAT_TYPES(DEFINE_NORMS)
