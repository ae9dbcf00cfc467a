// Attention forward and backward: the fallback behind cuDNN's fused flash attention (sdpa.ts), and
// the only path for f32/f16, windows, ALiBi, T ≠ S and head dims cuDNN does not take.
// defines: attn_fwd_<t>         q, k, v → o, lse [B, H, T] f32          grid (⌈T / BQ⌉, B·H)
//          attn_bwd_delta_<t>   o, dO → delta = rowsum(o ∘ dO), f32     a warp per row, grid-stride
//          attn_bwd_dq_<t>      q, k, v, dO, lse, delta → dq            grid (⌈T / BQ⌉, B·H)
//          attn_bwd_dkdv_<t>    q, k, v, dO, lse, delta → dk, dv        grid (⌈S / BQ⌉, B·Hkv)
// Contract (tensor/kernels.ts, CPU reference backends/cpu/kernels/attention.ts): q [B, H, T, D],
// k, v [B, Hkv, S, D] (bshd = 0), or q [B, T, H, D], k, v [B, S, Hkv, D] (bshd = 1; o, dO, dq, dk,
// dv follow their input; lse and delta are [B, H, T] in both); query t at absolute position
// S − T + t; key j visible when (!causal || j ≤ p) && (window = 0 || p − j < window);
// score = scale · q·k − slope_h · |p − j|; query head h reads kv head h / (H / Hkv). Rows that see
// no key: o = 0, lse = −∞, zero gradients.
//
// FlashAttention-2 in plain f32 FMAs (no tensor cores): 4 warps per block, ROWS rows per warp.
//   forward  a block owns BQ query rows; K/V tiles of 32 keys pass through shared memory, lane j
//            scores key j for each of its warp's rows, online softmax per row, lane owns output
//            columns lane + 32c. Keys no row of the block can see (causality, window) are skipped.
//   dq       the same shape: dS = P ∘ (dO·Vᵀ − delta) · scale with P = exp(score − lse), dq = dS·K.
//   dk, dv   a block owns BQ keys of one kv head and walks every query head of its group and the
//            query tiles that can see them (lane = query): dv += Pᵀ·dO, dk += dSᵀ·Q, kept in
//            registers; no atomics, deterministic. P and dS are recomputed (7 of the 5 GEMM-loads
//            of a fused backward), the price of needing no dq accumulation buffer.
// Layout: every kernel addresses a head's rows as base + row · stride (rows of D contiguous values),
// with base and stride from Heads below, so both layouts run the same code (a row is one coalesced
// read either way).
// Compile-time: HEAD_DIM (any 1 … 256; tiles are zero-padded to DP, a multiple of 32) and ROWS.
// All arithmetic and shared tiles are f32; storage is f32, bf16 or f16.
#include "common.cuh"

#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif
#ifndef ROWS
#define ROWS 4
#endif

constexpr int D = HEAD_DIM;
constexpr int DP = (D + 31) / 32 * 32;  // padded head dim
constexpr int DC = DP / 32;             // columns per lane
constexpr int WARPS = 4;
constexpr int THREADS = WARPS * 32;
constexpr int BQ = WARPS * ROWS;  // rows a block owns: queries (fwd, dq) or keys (dkdv)
constexpr int BK = 32;            // rows of a streamed tile: keys (fwd, dq) or queries (dkdv)
constexpr int LD = DP + 4;        // row stride of tiles read one row per lane: float4-aligned, no bank conflicts
static_assert(D >= 1 && D <= 256, "HEAD_DIM must be in 1 … 256");

#define FULL_MASK 0xffffffffu

// dst[r · ld + d] = src[r · stride + d] for r < valid, d < D; 0 elsewhere in the (rows, DP) tile.
template <typename T>
__device__ __forceinline__ void load_tile(float* dst, int ld, const T* __restrict__ src, i64 stride, int valid, int rows) {
  for (int i = threadIdx.x; i < rows * DP; i += THREADS) {
    const int r = i / DP, d = i - r * DP;
    dst[r * ld + d] = (r < valid && d < D) ? to_f32(src[(i64)r * stride + d]) : 0.f;
  }
}

// Where head `h` of batch `b` keeps its `len` rows (of D values) among `heads` heads: row t at
// base + t · stride. bhsd [B, heads, len, D]: base (b·heads + h)·len·D, stride D; bshd
// [B, len, heads, D]: base (b·len·heads + h)·D, stride heads·D.
struct Heads {
  i64 base, stride;
};
__device__ __forceinline__ Heads heads_at(int bshd, int b, int h, int heads, int len) {
  return bshd ? Heads{((i64)b * len * heads + h) * D, (i64)heads * D} : Heads{((i64)b * heads + h) * len * D, (i64)D};
}

__device__ __forceinline__ float4 ld4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ float dot4(float4 a, float4 b) { return a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w; }

__device__ __forceinline__ bool visible(int p, int j, int causal, int window) {
  return (!causal || j <= p) && (window <= 0 || p - j < window);
}

// ---------------------------------------------------------------------------------------------
// Forward

template <typename T>
__device__ void attn_fwd(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v, T* __restrict__ o,
                         float* __restrict__ lse, const float* __restrict__ slopes, int H, int Hkv, int Tq, int S,
                         int causal, int window, float scale, int bshd) {
  extern __shared__ float4 smem[];
  float* Qs = reinterpret_cast<float*>(smem);  // (BQ, DP)
  float* Ks = Qs + BQ * DP;                    // (BK, LD)
  float* Vs = Ks + BK * LD;                    // (BK, DP)
  float* Ps = Vs + BK * DP;                    // (BQ, BK) probabilities of the tile
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int bh = blockIdx.y, h = bh % H, b = bh / H, kvh = h / (H / Hkv);
  const int t0 = (gridDim.x - 1 - blockIdx.x) * BQ;  // the heaviest causal tiles start first
  const int t1 = min(Tq, t0 + BQ);
  const int shift = S - Tq;
  const float slope = slopes ? slopes[h] : 0.f;
  const Heads qh = heads_at(bshd, b, h, H, Tq), kh = heads_at(bshd, b, kvh, Hkv, S);
  load_tile(Qs, DP, q + qh.base + t0 * qh.stride, qh.stride, t1 - t0, BQ);
  // Keys some row of the block can see: [lo, hi).
  const int lo = window > 0 ? max(0, shift + t0 - window + 1) : 0;
  const int hi = causal ? min(S, shift + t1) : S;

  float m[ROWS], l[ROWS], acc[ROWS][DC];
#pragma unroll
  for (int i = 0; i < ROWS; i++) {
    m[i] = NEG_INF;
    l[i] = 0.f;
#pragma unroll
    for (int c = 0; c < DC; c++) acc[i][c] = 0.f;
  }
  for (int j0 = lo; j0 < hi; j0 += BK) {
    const int n = min(BK, hi - j0);
    __syncthreads();  // the previous tile is consumed
    load_tile(Ks, LD, k + kh.base + j0 * kh.stride, kh.stride, n, BK);
    load_tile(Vs, DP, v + kh.base + j0 * kh.stride, kh.stride, n, BK);
    __syncthreads();
    const int j = j0 + lane;
    float s[ROWS];
#pragma unroll
    for (int i = 0; i < ROWS; i++) s[i] = 0.f;
#pragma unroll 8
    for (int d = 0; d < DP; d += 4) {
      const float4 kv = ld4(Ks + lane * LD + d);
#pragma unroll
      for (int i = 0; i < ROWS; i++) s[i] += dot4(ld4(Qs + (warp * ROWS + i) * DP + d), kv);
    }
#pragma unroll
    for (int i = 0; i < ROWS; i++) {
      const int t = t0 + warp * ROWS + i, p = shift + t;
      const bool ok = t < t1 && lane < n && visible(p, j, causal, window);
      const float x = ok ? s[i] * scale - slope * fabsf((float)(p - j)) : NEG_INF;
      const float mn = fmaxf(m[i], warp_all(x, MaxOp()));
      float pj = 0.f;
      if (mn != NEG_INF) {  // warp-uniform: the row has seen a key
        pj = ok ? expf(x - mn) : 0.f;
        const float corr = expf(m[i] - mn);  // 0 while m = −∞
        l[i] = l[i] * corr + warp_all(pj, SumOp());
#pragma unroll
        for (int c = 0; c < DC; c++) acc[i][c] *= corr;
        m[i] = mn;
      }
      Ps[(warp * ROWS + i) * BK + lane] = pj;
    }
    __syncwarp();
    for (int jj = 0; jj < n; jj += 4) {
      float vv[4][DC];
#pragma unroll
      for (int u = 0; u < 4; u++)
#pragma unroll
        for (int c = 0; c < DC; c++) vv[u][c] = Vs[(jj + u) * DP + lane + 32 * c];  // rows ≥ n are zeros
#pragma unroll
      for (int i = 0; i < ROWS; i++) {
        const float4 p4 = ld4(Ps + (warp * ROWS + i) * BK + jj);
#pragma unroll
        for (int c = 0; c < DC; c++) acc[i][c] += p4.x * vv[0][c] + p4.y * vv[1][c] + p4.z * vv[2][c] + p4.w * vv[3][c];
      }
    }
  }
#pragma unroll
  for (int i = 0; i < ROWS; i++) {
    const int t = t0 + warp * ROWS + i;
    if (t >= t1) continue;
    const i64 row = (i64)bh * Tq + t;  // lse is [B, H, T] in both layouts
    const float inv = l[i] > 0.f ? 1.f / l[i] : 0.f;
#pragma unroll
    for (int c = 0; c < DC; c++) {
      const int d = lane + 32 * c;
      if (d < D) o[qh.base + t * qh.stride + d] = from_f32<T>(acc[i][c] * inv);
    }
    if (lane == 0) lse[row] = l[i] > 0.f ? m[i] + logf(l[i]) : NEG_INF;
  }
}

// ---------------------------------------------------------------------------------------------
// Backward

// delta[r] = Σ_d o[r, d] · dO[r, d] over rows r < rows, r = (b · H + h) · Tq + t; a warp per row.
template <typename T>
__device__ void attn_bwd_delta(const T* __restrict__ o, const T* __restrict__ dO, float* __restrict__ delta, i64 rows,
                               int H, int Tq, int bshd) {
  const int lane = threadIdx.x & 31;
  const i64 warps = (i64)gridDim.x * (blockDim.x >> 5);
  for (i64 r = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
    i64 at = r;  // o's row index: r in bhsd, (b · Tq + t) · H + h in bshd
    if (bshd) {
      const i64 t = r % Tq, bh = r / Tq, h = bh % H, b = bh / H;
      at = (b * Tq + t) * H + h;
    }
    float s = 0.f;
    for (int d = lane; d < D; d += 32) s += to_f32(o[at * D + d]) * to_f32(dO[at * D + d]);
    s = warp_all(s, SumOp());
    if (lane == 0) delta[r] = s;
  }
}

template <typename T>
__device__ void attn_bwd_dq(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v, const T* __restrict__ dO,
                            const float* __restrict__ lse, const float* __restrict__ delta, T* __restrict__ dq,
                            const float* __restrict__ slopes, int H, int Hkv, int Tq, int S, int causal, int window, float scale,
                            int bshd) {
  extern __shared__ float4 smem[];
  float* Qs = reinterpret_cast<float*>(smem);  // (BQ, DP)
  float* dOs = Qs + BQ * DP;                   // (BQ, DP)
  float* Ks = dOs + BQ * DP;                   // (BK, LD)
  float* Vs = Ks + BK * LD;                    // (BK, LD)
  float* Ds = Vs + BK * LD;                    // (BQ, BK) dS of the tile
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int bh = blockIdx.y, h = bh % H, b = bh / H, kvh = h / (H / Hkv);
  const int t0 = (gridDim.x - 1 - blockIdx.x) * BQ;
  const int t1 = min(Tq, t0 + BQ);
  const int shift = S - Tq;
  const float slope = slopes ? slopes[h] : 0.f;
  const Heads qh = heads_at(bshd, b, h, H, Tq), kh = heads_at(bshd, b, kvh, Hkv, S);
  load_tile(Qs, DP, q + qh.base + t0 * qh.stride, qh.stride, t1 - t0, BQ);
  load_tile(dOs, DP, dO + qh.base + t0 * qh.stride, qh.stride, t1 - t0, BQ);
  const int lo = window > 0 ? max(0, shift + t0 - window + 1) : 0;
  const int hi = causal ? min(S, shift + t1) : S;

  float rl[ROWS], rd[ROWS], acc[ROWS][DC];
#pragma unroll
  for (int i = 0; i < ROWS; i++) {
    const int t = t0 + warp * ROWS + i;
    rl[i] = t < t1 ? lse[(i64)bh * Tq + t] : NEG_INF;
    rd[i] = t < t1 ? delta[(i64)bh * Tq + t] : 0.f;
#pragma unroll
    for (int c = 0; c < DC; c++) acc[i][c] = 0.f;
  }
  for (int j0 = lo; j0 < hi; j0 += BK) {
    const int n = min(BK, hi - j0);
    __syncthreads();
    load_tile(Ks, LD, k + kh.base + j0 * kh.stride, kh.stride, n, BK);
    load_tile(Vs, LD, v + kh.base + j0 * kh.stride, kh.stride, n, BK);
    __syncthreads();
    const int j = j0 + lane;
    float s[ROWS], dp[ROWS];
#pragma unroll
    for (int i = 0; i < ROWS; i++) s[i] = dp[i] = 0.f;
#pragma unroll 4
    for (int d = 0; d < DP; d += 4) {
      const float4 kv = ld4(Ks + lane * LD + d), vv = ld4(Vs + lane * LD + d);
#pragma unroll
      for (int i = 0; i < ROWS; i++) {
        s[i] += dot4(ld4(Qs + (warp * ROWS + i) * DP + d), kv);
        dp[i] += dot4(ld4(dOs + (warp * ROWS + i) * DP + d), vv);
      }
    }
#pragma unroll
    for (int i = 0; i < ROWS; i++) {
      const int t = t0 + warp * ROWS + i, p = shift + t;
      const bool ok = t < t1 && lane < n && rl[i] != NEG_INF && visible(p, j, causal, window);
      const float P = ok ? expf(s[i] * scale - slope * fabsf((float)(p - j)) - rl[i]) : 0.f;
      Ds[(warp * ROWS + i) * BK + lane] = P * (dp[i] - rd[i]) * scale;
    }
    __syncwarp();
    for (int jj = 0; jj < n; jj += 4) {
      float kk[4][DC];
#pragma unroll
      for (int u = 0; u < 4; u++)
#pragma unroll
        for (int c = 0; c < DC; c++) kk[u][c] = Ks[(jj + u) * LD + lane + 32 * c];
#pragma unroll
      for (int i = 0; i < ROWS; i++) {
        const float4 d4 = ld4(Ds + (warp * ROWS + i) * BK + jj);
#pragma unroll
        for (int c = 0; c < DC; c++) acc[i][c] += d4.x * kk[0][c] + d4.y * kk[1][c] + d4.z * kk[2][c] + d4.w * kk[3][c];
      }
    }
  }
#pragma unroll
  for (int i = 0; i < ROWS; i++) {
    const int t = t0 + warp * ROWS + i;
    if (t >= t1) continue;
#pragma unroll
    for (int c = 0; c < DC; c++) {
      const int d = lane + 32 * c;
      if (d < D) dq[qh.base + t * qh.stride + d] = from_f32<T>(acc[i][c]);
    }
  }
}

template <typename T>
__device__ void attn_bwd_dkdv(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v, const T* __restrict__ dO,
                              const float* __restrict__ lse, const float* __restrict__ delta, T* __restrict__ dk, T* __restrict__ dv,
                              const float* __restrict__ slopes, int H, int Hkv, int Tq, int S, int causal, int window, float scale,
                              int bshd) {
  extern __shared__ float4 smem[];
  float* Ks = reinterpret_cast<float*>(smem);  // (BQ, DP) this block's keys
  float* Vs = Ks + BQ * DP;                    // (BQ, DP)
  float* Qs = Vs + BQ * DP;                    // (BK, LD) a tile of queries
  float* dOs = Qs + BK * LD;                   // (BK, LD)
  float* Ps = dOs + BK * LD;                   // (BQ, BK) P of the tile, key-major
  float* Ds = Ps + BQ * BK;                    // (BQ, BK) dS
  float* Ls = Ds + BQ * BK;                    // (BK) lse of the tile's queries
  float* Es = Ls + BK;                         // (BK) delta
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int bkv = blockIdx.y, b = bkv / Hkv, kvh = bkv % Hkv, group = H / Hkv;
  const int j0 = blockIdx.x * BQ;  // early keys are seen by the most queries: they start first
  const int j1 = min(S, j0 + BQ);
  const int shift = S - Tq;
  const Heads kh = heads_at(bshd, b, kvh, Hkv, S);
  load_tile(Ks, DP, k + kh.base + j0 * kh.stride, kh.stride, j1 - j0, BQ);
  load_tile(Vs, DP, v + kh.base + j0 * kh.stride, kh.stride, j1 - j0, BQ);
  // Queries that can see some key of the block: [tlo, thi).
  const int tlo = causal ? max(0, j0 - shift) : 0;
  const int thi = window > 0 ? min(Tq, max(0, j1 - 1 + window - shift)) : Tq;

  float gk[ROWS][DC], gv[ROWS][DC];
#pragma unroll
  for (int i = 0; i < ROWS; i++)
#pragma unroll
    for (int c = 0; c < DC; c++) gk[i][c] = gv[i][c] = 0.f;
  for (int g = 0; g < group; g++) {
    const int h = kvh * group + g;
    const i64 rows0 = (i64)(b * H + h) * Tq;  // lse, delta: [B, H, T]
    const Heads qh = heads_at(bshd, b, h, H, Tq);
    const float slope = slopes ? slopes[h] : 0.f;
    for (int t0 = tlo; t0 < thi; t0 += BK) {
      const int n = min(BK, thi - t0);
      __syncthreads();
      load_tile(Qs, LD, q + qh.base + t0 * qh.stride, qh.stride, n, BK);
      load_tile(dOs, LD, dO + qh.base + t0 * qh.stride, qh.stride, n, BK);
      if (threadIdx.x < BK) {
        Ls[threadIdx.x] = threadIdx.x < n ? lse[rows0 + t0 + threadIdx.x] : NEG_INF;
        Es[threadIdx.x] = threadIdx.x < n ? delta[rows0 + t0 + threadIdx.x] : 0.f;
      }
      __syncthreads();
      const int t = t0 + lane, p = shift + t;
      const float rl = Ls[lane], rd = Es[lane];
      float s[ROWS], dp[ROWS];
#pragma unroll
      for (int i = 0; i < ROWS; i++) s[i] = dp[i] = 0.f;
#pragma unroll 4
      for (int d = 0; d < DP; d += 4) {
        const float4 qv = ld4(Qs + lane * LD + d), ov = ld4(dOs + lane * LD + d);
#pragma unroll
        for (int i = 0; i < ROWS; i++) {
          s[i] += dot4(qv, ld4(Ks + (warp * ROWS + i) * DP + d));
          dp[i] += dot4(ov, ld4(Vs + (warp * ROWS + i) * DP + d));
        }
      }
#pragma unroll
      for (int i = 0; i < ROWS; i++) {
        const int j = j0 + warp * ROWS + i;
        const bool ok = lane < n && j < j1 && rl != NEG_INF && visible(p, j, causal, window);
        const float P = ok ? expf(s[i] * scale - slope * fabsf((float)(p - j)) - rl) : 0.f;
        Ps[(warp * ROWS + i) * BK + lane] = P;
        Ds[(warp * ROWS + i) * BK + lane] = P * (dp[i] - rd) * scale;
      }
      __syncwarp();
      for (int tq = 0; tq < n; tq += 4) {
        float4 p4[ROWS], d4[ROWS];
#pragma unroll
        for (int i = 0; i < ROWS; i++) {
          p4[i] = ld4(Ps + (warp * ROWS + i) * BK + tq);
          d4[i] = ld4(Ds + (warp * ROWS + i) * BK + tq);
        }
#pragma unroll
        for (int u = 0; u < 4; u++) {
#pragma unroll
          for (int c = 0; c < DC; c++) {
            const float qv = Qs[(tq + u) * LD + lane + 32 * c];  // rows ≥ n are zeros
            const float ov = dOs[(tq + u) * LD + lane + 32 * c];
#pragma unroll
            for (int i = 0; i < ROWS; i++) {
              const float pu = u == 0 ? p4[i].x : u == 1 ? p4[i].y : u == 2 ? p4[i].z : p4[i].w;
              const float du = u == 0 ? d4[i].x : u == 1 ? d4[i].y : u == 2 ? d4[i].z : d4[i].w;
              gv[i][c] += pu * ov;
              gk[i][c] += du * qv;
            }
          }
        }
      }
    }
  }
#pragma unroll
  for (int i = 0; i < ROWS; i++) {
    const int j = j0 + warp * ROWS + i;
    if (j >= j1) continue;
#pragma unroll
    for (int c = 0; c < DC; c++) {
      const int d = lane + 32 * c;
      if (d < D) {
        dk[kh.base + j * kh.stride + d] = from_f32<T>(gk[i][c]);
        dv[kh.base + j * kh.stride + d] = from_f32<T>(gv[i][c]);
      }
    }
  }
}

#define DEFINE_ATTENTION(T, S)                                                                                               \
  extern "C" __global__ void __launch_bounds__(THREADS) attn_fwd_##S(const T* q, const T* k, const T* v, T* o, float* lse,  \
                                                                     const float* slopes, int H, int Hkv, int Tq, int Skv,     \
                                                                     int causal, int window, float scale, int bshd) {          \
    attn_fwd<T>(q, k, v, o, lse, slopes, H, Hkv, Tq, Skv, causal, window, scale, bshd);                                        \
  }                                                                                                                            \
  extern "C" __global__ void attn_bwd_delta_##S(const T* o, const T* dO, float* delta, i64 rows, int H, int Tq, int bshd) {    \
    attn_bwd_delta<T>(o, dO, delta, rows, H, Tq, bshd);                                                                        \
  }                                                                                                                            \
  extern "C" __global__ void __launch_bounds__(THREADS)                                                                        \
      attn_bwd_dq_##S(const T* q, const T* k, const T* v, const T* dO, const float* lse, const float* delta, T* dq,             \
                      const float* slopes, int H, int Hkv, int Tq, int Skv, int causal, int window, float scale, int bshd) {   \
    attn_bwd_dq<T>(q, k, v, dO, lse, delta, dq, slopes, H, Hkv, Tq, Skv, causal, window, scale, bshd);                         \
  }                                                                                                                            \
  extern "C" __global__ void __launch_bounds__(THREADS)                                                                        \
      attn_bwd_dkdv_##S(const T* q, const T* k, const T* v, const T* dO, const float* lse, const float* delta, T* dk, T* dv,    \
                        const float* slopes, int H, int Hkv, int Tq, int Skv, int causal, int window, float scale, int bshd) { \
    attn_bwd_dkdv<T>(q, k, v, dO, lse, delta, dk, dv, slopes, H, Hkv, Tq, Skv, causal, window, scale, bshd);                   \
  }
FOR_FLOAT_TYPES(DEFINE_ATTENTION)
