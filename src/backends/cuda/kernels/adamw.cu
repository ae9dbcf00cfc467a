// Fused AdamW (torch.optim.AdamW semantics, decoupled weight decay), one pass over memory.
// defines: adamw_<g>, adamw_<g>_<l>   p f32, grad <g>, m f32, v f32 [, lowp <l>] — all [n], in place
// (<g> in f32, bf16; <l> in bf16, f16: a low-precision copy of the updated parameter).
// `scaleIn` (nullable, one f32 on the device) multiplies gradScale; non-finite, the update is skipped.
// clip_factor: sumsq [1] → out [1], torch's clip_grad_norm_ factor (NaN for a non-finite norm).
// adamw_chunks_<g>: the same update over many parameters in one launch: block b updates chunk b,
// table[5b … 5b+4] = p, grad, m, v (device pointers at the chunk's start) and its length.
//
// With g = grad · gradScale, per element, in the CPU kernel's order (backends/cpu/kernels/optim.ts):
//   m ← β1 m + (1 − β1) g
//   v ← β2 v + (1 − β2) g²
//   p ← p · decay                                   decay = 1 − lr · weightDecay (rounded, as stored)
//   p ← p − stepSize · m / (√v · rsqrtBc2 + eps)    stepSize = lr / (1 − β1^t), rsqrtBc2 = 1 / √(1 − β2^t)
#include "common.cuh"

template <typename G, typename L, bool LOWP>
__device__ __forceinline__ void adamw_element(float* __restrict__ p, const G* __restrict__ grad, float* __restrict__ m,
                                              float* __restrict__ v, L* __restrict__ lowp, i64 i, float decay, float stepSize,
                                              float beta1, float beta2, float eps, float rsqrtBc2, float gradScale) {
  const float g = to_f32(grad[i]) * gradScale;
  const float mi = beta1 * m[i] + (1.f - beta1) * g;
  const float vi = beta2 * v[i] + (1.f - beta2) * g * g;
  m[i] = mi;
  v[i] = vi;
  const float pd = __fmul_rn(p[i], decay);  // not fused into the next line: the CPU rounds it
  const float pi = pd - stepSize * mi / (sqrtf(vi) * rsqrtBc2 + eps);
  p[i] = pi;
  if (LOWP) lowp[i] = from_f32<L>(pi);
}

template <typename G, typename L, bool LOWP>
__device__ void adamw(float* __restrict__ p, const G* __restrict__ grad, float* __restrict__ m, float* __restrict__ v,
                      L* __restrict__ lowp, i64 n, float decay, float stepSize, float beta1, float beta2, float eps,
                      float rsqrtBc2, float gradScale, const float* __restrict__ scaleIn) {
  if (scaleIn) {
    const float s = *scaleIn;
    if (!isfinite(s)) return;
    gradScale *= s;
  }
  GRID_STRIDE(i, n) adamw_element<G, L, LOWP>(p, grad, m, v, lowp, i, decay, stepSize, beta1, beta2, eps, rsqrtBc2, gradScale);
}

#define ADAMW_ARGS i64 n, float decay, float stepSize, float beta1, float beta2, float eps, float rsqrtBc2, float gradScale, const float* scaleIn
#define ADAMW_PASS n, decay, stepSize, beta1, beta2, eps, rsqrtBc2, gradScale, scaleIn

#define DEFINE_ADAMW(G, GN)                                                                              \
  extern "C" __global__ void adamw_##GN(float* p, const G* g, float* m, float* v, ADAMW_ARGS) {           \
    adamw<G, float, false>(p, g, m, v, nullptr, ADAMW_PASS);                                              \
  }                                                                                                      \
  extern "C" __global__ void adamw_##GN##_bf16(float* p, const G* g, float* m, float* v, bf16* lowp, ADAMW_ARGS) { \
    adamw<G, bf16, true>(p, g, m, v, lowp, ADAMW_PASS);                                                   \
  }                                                                                                      \
  extern "C" __global__ void adamw_##GN##_f16(float* p, const G* g, float* m, float* v, f16* lowp, ADAMW_ARGS) { \
    adamw<G, f16, true>(p, g, m, v, lowp, ADAMW_PASS);                                                    \
  }
DEFINE_ADAMW(float, f32)
DEFINE_ADAMW(bf16, bf16)

extern "C" __global__ void clip_factor(const float* sumsq, float* out, float maxNorm, float normScale) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  const float norm = sqrtf(*sumsq) * normScale;
  *out = !isfinite(norm) ? nanf("") : (maxNorm > 0.f && norm > maxNorm) ? maxNorm / (norm + 1e-6f) : 1.f;
}

template <typename G>
__device__ void adamw_chunks(const i64* __restrict__ table, float decay, float stepSize, float beta1, float beta2, float eps,
                             float rsqrtBc2, float gradScale, const float* __restrict__ scaleIn) {
  if (scaleIn) {
    const float s = *scaleIn;
    if (!isfinite(s)) return;
    gradScale *= s;
  }
  const i64* e = table + 5 * blockIdx.x;
  float* p = reinterpret_cast<float*>(e[0]);
  const G* g = reinterpret_cast<const G*>(e[1]);
  float* m = reinterpret_cast<float*>(e[2]);
  float* v = reinterpret_cast<float*>(e[3]);
  const i64 n = e[4];
  for (i64 i = threadIdx.x; i < n; i += blockDim.x)
    adamw_element<G, float, false>(p, g, m, v, nullptr, i, decay, stepSize, beta1, beta2, eps, rsqrtBc2, gradScale);
}

extern "C" __global__ void adamw_chunks_f32(const i64* table, float decay, float stepSize, float beta1, float beta2, float eps,
                                            float rsqrtBc2, float gradScale, const float* scaleIn) {
  adamw_chunks<float>(table, decay, stepSize, beta1, beta2, eps, rsqrtBc2, gradScale, scaleIn);
}
extern "C" __global__ void adamw_chunks_bf16(const i64* table, float decay, float stepSize, float beta1, float beta2, float eps,
                                             float rsqrtBc2, float gradScale, const float* scaleIn) {
  adamw_chunks<bf16>(table, decay, stepSize, beta1, beta2, eps, rsqrtBc2, gradScale, scaleIn);
}
