// Activations (gelu exact, gelu_tanh, relu, silu), gated activations, softmax; forward and backward.
// defines: act_<kind>_<t>, act_backward_<kind>_<t>                  elementwise over n
//          gated_<kind>_<t>, gated_backward_<kind>_<t>               x [R, 2F] = [up ‖ gate] → y [R, F]
//          softmax_<t>, softmax_backward_<t>                         one block per row of C
// (<kind> in gelu, gelu_tanh, relu, silu). f32 math with the f32 libm (erff, tanhf, expf).
#include "common.cuh"

#define KIND_GELU 0
#define KIND_GELU_TANH 1
#define KIND_RELU 2
#define KIND_SILU 3

#define SQRT1_2 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f
#define TANH_K 0.79788456080286535588f  // sqrt(2/pi)
#define TANH_C 0.044715f

template <int K> __device__ __forceinline__ float act(float x) {
  if (K == KIND_GELU) return 0.5f * x * (1.f + erff(x * SQRT1_2));
  if (K == KIND_GELU_TANH) return 0.5f * x * (1.f + tanhf(TANH_K * (x + TANH_C * x * x * x)));
  if (K == KIND_RELU) return x > 0.f ? x : 0.f;
  return x / (1.f + expf(-x));
}

template <int K> __device__ __forceinline__ float act_grad(float x) {
  if (K == KIND_GELU) return 0.5f * (1.f + erff(x * SQRT1_2)) + x * expf(-0.5f * x * x) * INV_SQRT_2PI;
  if (K == KIND_GELU_TANH) {
    const float t = tanhf(TANH_K * (x + TANH_C * x * x * x));
    return 0.5f * (1.f + t) + 0.5f * x * (1.f - t * t) * TANH_K * (1.f + 3.f * TANH_C * x * x);
  }
  if (K == KIND_RELU) return x > 0.f ? 1.f : 0.f;
  const float s = 1.f / (1.f + expf(-x));
  return s * (1.f + x * (1.f - s));
}

// Elementwise: 16-byte vectors when the pointers are aligned (common.cuh map_unary/map_binary).
template <typename T, int K>
__device__ void act_forward(const T* __restrict__ x, T* __restrict__ y, i64 n) {
  map_unary(x, y, n, [](float v) { return act<K>(v); });
}

template <typename T, int K>
__device__ void act_backward(const T* __restrict__ x, const T* __restrict__ dy, T* __restrict__ dx, i64 n) {
  map_binary(x, dy, dx, n, [](float v, float d) { return K == KIND_RELU ? (v > 0.f ? d : 0.f) : d * act_grad<K>(v); });
}

// i runs over y [R, F]: up = x[r, j], gate = x[r, F + j].
template <typename T, int K>
__device__ void gated_forward(const T* __restrict__ x, T* __restrict__ y, i64 n, i64 F) {
  GRID_STRIDE(i, n) {
    const i64 r = i / F, j = i - r * F;
    const T* xr = x + 2 * F * r;
    y[i] = from_f32<T>(act<K>(to_f32(xr[F + j])) * to_f32(xr[j]));
  }
}

// dgate = dy · up · act'(gate), dup = dy · act(gate)
template <typename T, int K>
__device__ void gated_backward(const T* __restrict__ x, const T* __restrict__ dy, T* __restrict__ dx, i64 n, i64 F) {
  GRID_STRIDE(i, n) {
    const i64 r = i / F, j = i - r * F;
    const T* xr = x + 2 * F * r;
    T* dxr = dx + 2 * F * r;
    const float up = to_f32(xr[j]), gate = to_f32(xr[F + j]), d = to_f32(dy[i]);
    if (K == KIND_RELU) {
      dxr[F + j] = from_f32<T>(gate > 0.f ? d * up : 0.f);
      dxr[j] = from_f32<T>(gate > 0.f ? d * gate : 0.f);
    } else {
      dxr[F + j] = from_f32<T>(d * up * act_grad<K>(gate));
      dxr[j] = from_f32<T>(d * act<K>(gate));
    }
  }
}

#define DEFINE_ACT(T, S, KN, K)                                                                          \
  extern "C" __global__ void act_##KN##_##S(const T* x, T* y, i64 n) { act_forward<T, K>(x, y, n); }      \
  extern "C" __global__ void act_backward_##KN##_##S(const T* x, const T* dy, T* dx, i64 n) { act_backward<T, K>(x, dy, dx, n); } \
  extern "C" __global__ void gated_##KN##_##S(const T* x, T* y, i64 n, i64 F) { gated_forward<T, K>(x, y, n, F); } \
  extern "C" __global__ void gated_backward_##KN##_##S(const T* x, const T* dy, T* dx, i64 n, i64 F) {    \
    gated_backward<T, K>(x, dy, dx, n, F);                                                               \
  }
#define DEFINE_ACTS(T, S) \
  DEFINE_ACT(T, S, gelu, KIND_GELU) DEFINE_ACT(T, S, gelu_tanh, KIND_GELU_TANH) DEFINE_ACT(T, S, relu, KIND_RELU) DEFINE_ACT(T, S, silu, KIND_SILU)
FOR_FLOAT_TYPES(DEFINE_ACTS)

template <typename T>
__device__ void softmax_row(const T* __restrict__ x, T* __restrict__ y, i64 C) {
  const i64 r = blockIdx.x;
  const T* xr = x + r * C;
  T* yr = y + r * C;
  float m = NEG_INF;
  for (i64 c = threadIdx.x; c < C; c += blockDim.x) m = fmaxf(m, to_f32(xr[c]));
  m = block_allmax(m);
  float s = 0.f;
  for (i64 c = threadIdx.x; c < C; c += blockDim.x) s += expf(to_f32(xr[c]) - m);
  const float inv = 1.f / block_allsum(s);
  for (i64 c = threadIdx.x; c < C; c += blockDim.x) yr[c] = from_f32<T>(expf(to_f32(xr[c]) - m) * inv);
}

// dx = y · (dy − Σ y · dy)
template <typename T>
__device__ void softmax_backward_row(const T* __restrict__ y, const T* __restrict__ dy, T* __restrict__ dx, i64 C) {
  const i64 r = blockIdx.x;
  const T* yr = y + r * C;
  const T* dyr = dy + r * C;
  T* dxr = dx + r * C;
  float s = 0.f;
  for (i64 c = threadIdx.x; c < C; c += blockDim.x) s += to_f32(yr[c]) * to_f32(dyr[c]);
  s = block_allsum(s);
  for (i64 c = threadIdx.x; c < C; c += blockDim.x) dxr[c] = from_f32<T>(to_f32(yr[c]) * (to_f32(dyr[c]) - s));
}

#define DEFINE_SOFTMAX(T, S)                                                                             \
  extern "C" __global__ void softmax_##S(const T* x, T* y, i64 C) { softmax_row<T>(x, y, C); }            \
  extern "C" __global__ void softmax_backward_##S(const T* y, const T* dy, T* dx, i64 C) { softmax_backward_row<T>(y, dy, dx, C); }
FOR_FLOAT_TYPES(DEFINE_SOFTMAX)
