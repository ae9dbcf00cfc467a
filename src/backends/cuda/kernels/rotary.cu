// Rotary position embedding, rotate-half style (GPT-NeoX / HF), forward and inverse (its gradient).
// defines: rotary_<t>   x [outer, T, inner, D] → y; on the first `rot` dims with h = rot / 2:
//            y[i]     = x[i] · cos θ_i − x[i + h] · sin θ_i
//            y[i + h] = x[i + h] · cos θ_i + x[i] · sin θ_i        (sin negated for the inverse)
//          dims ≥ rot pass through. cos/sin: [T, h] f32 tables (ops/attention.ts rotaryTable).
//          Layouts: bhsd [B, H, T, D] is inner = 1, bshd [B, T, H, D] is inner = H; the position of
//          element i is t = (i / D / inner) % T.
#include "common.cuh"

template <typename T>
__device__ void rotary(const T* __restrict__ x, T* __restrict__ y, const float* __restrict__ cosT, const float* __restrict__ sinT,
                       i64 n, i64 Tn, i64 inner, i64 D, i64 rot, float sign) {
  const i64 h = rot >> 1;
  GRID_STRIDE(i, n) {
    const i64 row = i / D, d = i - row * D;
    if (d >= rot) {
      y[i] = x[i];
      continue;
    }
    const i64 t = (row / inner) % Tn;
    const i64 f = d < h ? d : d - h;
    const float c = cosT[t * h + f], s = sign * sinT[t * h + f];
    const float v = to_f32(x[i]);
    y[i] = from_f32<T>(d < h ? v * c - to_f32(x[i + h]) * s : v * c + to_f32(x[i - h]) * s);
  }
}

#define DEFINE_ROTARY(T, S)                                                                                    \
  extern "C" __global__ void rotary_##S(const T* x, T* y, const float* cosT, const float* sinT, i64 n, i64 Tn, \
                                        i64 inner, i64 D, i64 rot, float sign) {                               \
    rotary<T>(x, y, cosT, sinT, n, Tn, inner, D, rot, sign);                                                   \
  }
FOR_FLOAT_TYPES(DEFINE_ROTARY)
