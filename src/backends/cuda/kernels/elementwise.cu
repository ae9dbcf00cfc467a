// Elementwise kernels: cast, add/sub/mul with suffix broadcast, scale, addInPlace, scaleInPlace.
// defines: cast_<from>_<to>, add_<t>, sub_<t>, mul_<t>, scale_<t>, add_inplace_<t>, scale_inplace_<t>
// (<t> in f32, bf16, f16; cast also from/to i32). Grid-stride loops, 16-byte accesses where the
// shapes allow (common.cuh map_unary/map_binary); math in f32.
#include "common.cuh"

struct AddOp { __device__ float operator()(float a, float b) const { return a + b; } };
struct SubOp { __device__ float operator()(float a, float b) const { return a - b; } };
struct MulOp { __device__ float operator()(float a, float b) const { return a * b; } };

// y[i] = a[i] op b[i mod m]: b is a (n elements) or a suffix of its shape (m elements, m divides n).
template <typename T, typename Op>
__device__ void binary(const T* a, const T* b, T* y, i64 n, i64 m) {
  Op op;
  if (m == n) {
    map_binary(a, b, y, n, op);
  } else {
    GRID_STRIDE(i, n) y[i] = from_f32<T>(op(to_f32(a[i]), to_f32(b[i % m])));
  }
}

// In place is allowed here (y may be a): bias added onto a GEMM output.
template <typename T>
__device__ void add_broadcast_inplace(T* y, const T* b, i64 n, i64 m) {
  GRID_STRIDE(i, n) y[i] = from_f32<T>(to_f32(y[i]) + to_f32(b[i % m]));
}

#define DEFINE_ARITHMETIC(T, S)                                                                         \
  extern "C" __global__ void add_##S(const T* a, const T* b, T* y, i64 n, i64 m) { binary<T, AddOp>(a, b, y, n, m); } \
  extern "C" __global__ void sub_##S(const T* a, const T* b, T* y, i64 n, i64 m) { binary<T, SubOp>(a, b, y, n, m); } \
  extern "C" __global__ void mul_##S(const T* a, const T* b, T* y, i64 n, i64 m) { binary<T, MulOp>(a, b, y, n, m); } \
  extern "C" __global__ void add_rows_inplace_##S(T* y, const T* b, i64 n, i64 m) { add_broadcast_inplace<T>(y, b, n, m); } \
  extern "C" __global__ void scale_##S(const T* x, T* y, float alpha, i64 n) {                           \
    map_unary(x, y, n, [alpha](float v) { return alpha * v; });                                          \
  }                                                                                                      \
  extern "C" __global__ void add_inplace_##S(T* a, const T* b, float alpha, i64 n) {                     \
    map_binary(a, b, a, n, [alpha](float u, float v) { return u + alpha * v; });                         \
  }                                                                                                      \
  extern "C" __global__ void scale_inplace_##S(T* a, float alpha, i64 n) {                               \
    map_unary(a, a, n, [alpha](float v) { return alpha * v; });                                          \
  }
FOR_FLOAT_TYPES(DEFINE_ARITHMETIC)

template <typename S, typename D>
__device__ void cast(const S* __restrict__ x, D* __restrict__ y, i64 n) {
  GRID_STRIDE(i, n) y[i] = from_f32<D>(to_f32(x[i]));
}

#define DEFINE_CAST(S, SN, D, DN) \
  extern "C" __global__ void cast_##SN##_##DN(const S* x, D* y, i64 n) { cast<S, D>(x, y, n); }
#define DEFINE_CASTS_FROM(S, SN) \
  DEFINE_CAST(S, SN, float, f32) DEFINE_CAST(S, SN, bf16, bf16) DEFINE_CAST(S, SN, f16, f16) DEFINE_CAST(S, SN, int, i32)
FOR_FLOAT_TYPES(DEFINE_CASTS_FROM)
DEFINE_CAST(int, i32, float, f32)
DEFINE_CAST(int, i32, bf16, bf16)
DEFINE_CAST(int, i32, f16, f16)
