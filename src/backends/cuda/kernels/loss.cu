// Cross-entropy fused over the vocabulary: no softmax tensor is materialized.
// defines: cross_entropy_<t>            logits [N, V], labels [N] i32 → loss [N] f32, lse [N] f32
//          cross_entropy_backward_<t>   logits, labels, lse, dloss [N] f32 → dlogits [N, V]
// One block per row (at most CE_THREADS threads; loss.ts picks fewer for narrow rows); indices
// within a row are 32-bit, the row offset 64-bit. Both kernels stream a row in 16-byte vectors
// (8 bf16/f16 or 4 f32): a scalar head up to the row's first 16-byte boundary and a scalar tail
// after its last whole vector (both empty when V·sizeof(T) is a multiple of 16, as with padded
// vocabularies), so any V is right. The vectors go CE_STEP values at a time (2 vectors of bf16/f16,
// 4 of f32), all of a step's loads issued before any is used.
// Exponentials are base 2, one fma and one ex2.approx (MUFU.EX2, a couple of ulp, as expf) per
// logit instead of expf's ~10 instructions: with L = log2 e, exp(a − z) = 2^(a·L − z·L).
// Forward: each thread keeps a running (m, s), m = max a·L so far, s = Σ 2^(a·L − m). Per step it
// takes the step's max, moves to m' = max(m, that·L) and sets s = s·2^(m − m') + Σ 2^(a·L − m')
// (terms summed pairwise): one rescale per step, no data-dependent branch. The threads' (m, s) are
// merged across the block (block_allmax, block_allsum) into (M, S); lse = M·ln 2 + ln S, exact
// for whatever M is (S was taken relative to that M), loss = lse − a[label]. A NaN or +∞ logit makes
// lse NaN; an all −∞ row gives lse −∞.
// Backward: dlogits = (exp(a − lse) − [v = label]) · dloss, the exponent as a·L − (lse·L, split
// into a rounded part and its fma remainder), same vectors, 16-byte stores (all scalar in the
// unusual case that logits and dlogits sit at different offsets from a 16-byte boundary).
// Labels < 0 give loss 0 and gradient 0, as does dloss = 0 (gradient); labels ≥ V set
// ERR_CROSS_ENTROPY_LABEL, make that loss NaN and give a zero gradient row.
#include "common.cuh"

#define CE_THREADS 256
#define CE_STEP 16
#define CE_LOG2E 1.4426950408889634f
#define CE_LN2 0.6931471805599453f

// 2^x by the special-function unit (subnormal results flush to 0; 2^−∞ = 0, NaN stays NaN).
__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// Elements from p to the next 16-byte boundary, at most n.
template <typename T>
__device__ __forceinline__ int head_len(const T* p, int n) {
  return min(n, (int)(((16u - ((unsigned)(unsigned long long)p & 15u)) & 15u) / sizeof(T)));
}

// Folds the K logits a into the running (m, s) (m in units of log2 e, see above).
template <int K>
__device__ __forceinline__ void lse_update(float& m, float& s, const float (&a)[K]) {
  float mx = a[0];
#pragma unroll
  for (int k = 1; k < K; k++) mx = fmaxf(mx, a[k]);
  const float mn = fmaxf(m, mx * CE_LOG2E);
  // mn is −∞ only while every logit so far is −∞ (or NaN): subtract 0 then, not −∞, so the terms
  // are 2^−∞ = 0 (s stays 0) instead of 2^(−∞ + ∞) = NaN; a NaN logit still makes s NaN.
  const float b = mn == NEG_INF ? 0.f : mn;
  float e[K];
#pragma unroll
  for (int k = 0; k < K; k++) e[k] = ex2(fmaf(a[k], CE_LOG2E, -b));
#pragma unroll
  for (int w = 1; w < K; w *= 2) {
#pragma unroll
    for (int k = 0; k + w < K; k += 2 * w) e[k] += e[k + w];
  }
  s = s * ex2(m - b) + e[0];
  m = mn;
}

template <typename T>
__device__ __forceinline__ void cross_entropy(const T* __restrict__ logits, const int* __restrict__ labels, float* __restrict__ loss,
                                              float* __restrict__ lse, int V, int* err) {
  constexpr int W = 16 / sizeof(T);  // elements per vector
  constexpr int U = CE_STEP / W;     // vectors per step
  const int n = blockIdx.x, tid = threadIdx.x, nt = blockDim.x;
  const T* __restrict__ x = logits + (i64)n * V;
  const int head = head_len(x, V);
  const int nvec = (V - head) / W;
  const int tail = head + nvec * W;
  float m = NEG_INF, s = 0.f;
#pragma unroll 1
  for (int v = tid; v < head; v += nt) {
    const float a[1] = {to_f32(x[v])};
    lse_update<1>(m, s, a);
  }
#pragma unroll 1
  for (int v = tail + tid; v < V; v += nt) {
    const float a[1] = {to_f32(x[v])};
    lse_update<1>(m, s, a);
  }
  const uint4* __restrict__ xv = reinterpret_cast<const uint4*>(x + head);
  int i = tid;
  for (; i + (U - 1) * nt < nvec; i += U * nt) {
    Vec16<T> r[U];
#pragma unroll
    for (int u = 0; u < U; u++) r[u].raw = xv[i + u * nt];
    float a[CE_STEP];
#pragma unroll
    for (int u = 0; u < U; u++) {
#pragma unroll
      for (int k = 0; k < W; k++) a[u * W + k] = to_f32(r[u].v[k]);
    }
    lse_update<CE_STEP>(m, s, a);
  }
  for (; i < nvec; i += nt) {
    Vec16<T> r;
    r.raw = xv[i];
    float a[W];
#pragma unroll
    for (int k = 0; k < W; k++) a[k] = to_f32(r.v[k]);
    lse_update<W>(m, s, a);
  }
  const float M = block_allmax(m);
  const float S = block_allsum(s * ex2(m - (M == NEG_INF ? 0.f : M)));
  if (tid == 0) {
    const float z = fmaf(M, CE_LN2, logf(S));
    const int label = labels[n];
    lse[n] = z;
    if (label >= V) {
      atomicOr(err, ERR_CROSS_ENTROPY_LABEL);
      loss[n] = QNAN;
    } else {
      loss[n] = label < 0 ? 0.f : z - to_f32(x[label]);
    }
  }
}

// exp(a − z) as 2^(a·L − zh − zl), where zh + zl = z·L exactly (cross_entropy_backward).
__device__ __forceinline__ float ce_exp(float a, float zh, float zl) { return ex2(fmaf(a, CE_LOG2E, -zh) - zl); }

// The gradients of W consecutive logits a starting at index v of the row.
template <typename T, int W>
__device__ __forceinline__ void ce_grad(Vec16<T>& g, const Vec16<T>& a, int v, int label, float zh, float zl, float d) {
  float y[W];
#pragma unroll
  for (int k = 0; k < W; k++) y[k] = ce_exp(to_f32(a.v[k]), zh, zl) * d;
  const unsigned off = (unsigned)(label - v);
  if (off < W) {  // the label's vector: rare, so a branch rather than a select per element
#pragma unroll
    for (int k = 0; k < W; k++) y[k] = k == (int)off ? y[k] - d : y[k];
  }
#pragma unroll
  for (int k = 0; k < W; k++) g.v[k] = from_f32<T>(y[k]);
}

template <typename T>
__device__ __forceinline__ void cross_entropy_backward(const T* __restrict__ logits, const int* __restrict__ labels,
                                                       const float* __restrict__ lse, const float* __restrict__ dloss,
                                                       T* __restrict__ dx, int V) {
  constexpr int W = 16 / sizeof(T);
  constexpr int U = CE_STEP / W;
  const int n = blockIdx.x, tid = threadIdx.x, nt = blockDim.x;
  const T* __restrict__ x = logits + (i64)n * V;
  T* __restrict__ y = dx + (i64)n * V;
  const int label = labels[n];
  const float d = dloss[n];
  // Vectors need x and y at the same offset from a 16-byte boundary; otherwise all of it is scalar.
  const bool same = (((unsigned long long)x ^ (unsigned long long)y) & 15ull) == 0;
  const int head = same ? head_len(x, V) : V;
  const int nvec = (V - head) / W;
  const int tail = head + nvec * W;
  uint4* __restrict__ yv = reinterpret_cast<uint4*>(y + head);
  if (label < 0 || label >= V || d == 0.f) {
    for (int v = tid; v < head; v += nt) y[v] = from_f32<T>(0.f);
    for (int v = tail + tid; v < V; v += nt) y[v] = from_f32<T>(0.f);
    const uint4 zero = {0u, 0u, 0u, 0u};
    for (int i = tid; i < nvec; i += nt) yv[i] = zero;
    return;
  }
  const float z = lse[n];
  // z·L as zh + zl: zh rounded, zl the fma's exact remainder, so the exponent carries no rounding of z·L.
  const float zh = z * CE_LOG2E, zl = fmaf(z, CE_LOG2E, -zh);
#pragma unroll 1
  for (int v = tid; v < head; v += nt) {
    float g = ce_exp(to_f32(x[v]), zh, zl) * d;
    if (v == label) g -= d;
    y[v] = from_f32<T>(g);
  }
#pragma unroll 1
  for (int v = tail + tid; v < V; v += nt) {
    float g = ce_exp(to_f32(x[v]), zh, zl) * d;
    if (v == label) g -= d;
    y[v] = from_f32<T>(g);
  }
  const uint4* __restrict__ xv = reinterpret_cast<const uint4*>(x + head);
  int i = tid;
  for (; i + (U - 1) * nt < nvec; i += U * nt) {
    Vec16<T> a[U];
#pragma unroll
    for (int u = 0; u < U; u++) a[u].raw = xv[i + u * nt];
#pragma unroll
    for (int u = 0; u < U; u++) {
      Vec16<T> g;
      ce_grad<T, W>(g, a[u], head + (i + u * nt) * W, label, zh, zl, d);
      yv[i + u * nt] = g.raw;
    }
  }
  for (; i < nvec; i += nt) {
    Vec16<T> a, g;
    a.raw = xv[i];
    ce_grad<T, W>(g, a, head + i * W, label, zh, zl, d);
    yv[i] = g.raw;
  }
}

#define DEFINE_LOSS(T, S)                                                                                 \
  extern "C" __global__ void __launch_bounds__(CE_THREADS)                                                 \
  cross_entropy_##S(const T* logits, const int* labels, float* loss, float* lse, i64 V, int* err) {        \
    cross_entropy<T>(logits, labels, loss, lse, (int)V, err);                                              \
  }                                                                                                        \
  extern "C" __global__ void __launch_bounds__(CE_THREADS)                                                 \
  cross_entropy_backward_##S(const T* logits, const int* labels, const float* lse, const float* dloss, T* dx, i64 V) { \
    cross_entropy_backward<T>(logits, labels, lse, dloss, dx, (int)V);                                     \
  }
FOR_FLOAT_TYPES(DEFINE_LOSS)
