// Cross-entropy fused over the vocabulary: no softmax tensor is materialized.
// defines: cross_entropy_<t>            logits [N, V], labels [N] i32 → loss [N] f32, lse [N] f32
//          cross_entropy_backward_<t>   logits, labels, lse, dloss [N] f32 → dlogits [N, V]
// One block per row. lse comes from one pass with a running (max, sum) per thread, merged across
// the block. Labels < 0 give loss 0 and gradient 0; labels ≥ V set ERR_CROSS_ENTROPY_LABEL.
#include "common.cuh"

template <typename T>
__device__ void cross_entropy(const T* __restrict__ logits, const int* __restrict__ labels, float* __restrict__ loss,
                              float* __restrict__ lse, i64 V, int* err) {
  const i64 n = blockIdx.x;
  const T* x = logits + n * V;
  float m = NEG_INF, s = 0.f;
  for (i64 v = threadIdx.x; v < V; v += blockDim.x) {
    const float a = to_f32(x[v]);
    if (a > m) {
      s = s * expf(m - a) + 1.f;
      m = a;
    } else {
      s += expf(a - m);
    }
  }
  const float M = block_allmax(m);
  const float S = block_allsum(m == NEG_INF ? 0.f : s * expf(m - M));
  if (threadIdx.x == 0) {
    const float z = M + logf(S);
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

template <typename T>
__device__ void cross_entropy_backward(const T* __restrict__ logits, const int* __restrict__ labels, const float* __restrict__ lse,
                                       const float* __restrict__ dloss, T* __restrict__ dx, i64 V) {
  const i64 n = blockIdx.x;
  const T* x = logits + n * V;
  T* dxr = dx + n * V;
  const int label = labels[n];
  const float d = dloss[n];
  if (label < 0 || label >= V || d == 0.f) {
    for (i64 v = threadIdx.x; v < V; v += blockDim.x) dxr[v] = from_f32<T>(0.f);
    return;
  }
  const float z = lse[n];
  for (i64 v = threadIdx.x; v < V; v += blockDim.x) {
    float g = expf(to_f32(x[v]) - z) * d;
    if (v == label) g -= d;
    dxr[v] = from_f32<T>(g);
  }
}

#define DEFINE_LOSS(T, S)                                                                                 \
  extern "C" __global__ void cross_entropy_##S(const T* logits, const int* labels, float* loss, float* lse, i64 V, int* err) { \
    cross_entropy<T>(logits, labels, loss, lse, V, err);                                                   \
  }                                                                                                        \
  extern "C" __global__ void cross_entropy_backward_##S(const T* logits, const int* labels, const float* lse, const float* dloss, \
                                                        T* dx, i64 V) {                                    \
    cross_entropy_backward<T>(logits, labels, lse, dloss, dx, V);                                          \
  }
FOR_FLOAT_TYPES(DEFINE_LOSS)
