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

// rotary_qkv_<t>: the packed QKV of GPT-NeoX's fused projection, x [rows = B·T·H, 3·D] with each
// head's row [q (D) ‖ k (D) ‖ v (D)] → y: q and k rotated on their first `rot` dims at position
// t = (row / H) % T (as above; sign −1 for the inverse), v and the other dims copied. A thread
// handles V consecutive elements: V = 16 / sizeof(T) (one 16-byte vector) when D, rot / 2 and
// both pointers allow it (then a vector never straddles q/k/v, the rotated dims or the halves, and
// its partner x[e ± h] is one aligned vector too), else V = 1. 32-bit indexing: the host checks
// that 3·D·rows < 2³¹.
template <typename T, int V> struct ChunkOf { typedef Vec16<T> type; };  // V elements moved as one
template <typename T> struct ChunkOf<T, 1> { typedef T type; };

template <typename T, int V>
__device__ void rotary_qkv(const T* __restrict__ x, T* __restrict__ y, const float* __restrict__ cosT,
                           const float* __restrict__ sinT, unsigned n, unsigned Tn, unsigned H, unsigned D, unsigned rot,
                           float sign) {
  typedef typename ChunkOf<T, V>::type Chunk;
  const unsigned h = rot >> 1, W = 3 * D;
  for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const unsigned e = i * V;
    const unsigned row = e / W, c = e - row * W;
    const unsigned part = c / D, d = c - part * D;
    Chunk in = *reinterpret_cast<const Chunk*>(x + e);
    if (part < 2 && d < rot) {
      const bool lo = d < h;
      const Chunk other = *reinterpret_cast<const Chunk*>(x + (lo ? e + h : e - h));
      const unsigned t = (row / H) % Tn, f = (lo ? d : d - h) + t * h;
      const T* a = reinterpret_cast<const T*>(&in);
      const T* b = reinterpret_cast<const T*>(&other);
      Chunk res;
      T* r = reinterpret_cast<T*>(&res);
#pragma unroll
      for (int j = 0; j < V; j++) {
        const float cj = cosT[f + j], sj = sign * sinT[f + j];
        const float v = to_f32(a[j]), p = to_f32(b[j]);
        r[j] = from_f32<T>(lo ? v * cj - p * sj : v * cj + p * sj);
      }
      in = res;
    }
    *reinterpret_cast<Chunk*>(y + e) = in;
  }
}

#define DEFINE_ROTARY_QKV(T, S)                                                                                  \
  extern "C" __global__ void rotary_qkv_##S(const T* x, T* y, const float* cosT, const float* sinT, unsigned n,  \
                                            unsigned Tn, unsigned H, unsigned D, unsigned rot, float sign) {     \
    rotary_qkv<T, 16 / sizeof(T)>(x, y, cosT, sinT, n, Tn, H, D, rot, sign);                                    \
  }                                                                                                              \
  extern "C" __global__ void rotary_qkv_scalar_##S(const T* x, T* y, const float* cosT, const float* sinT,       \
                                                   unsigned n, unsigned Tn, unsigned H, unsigned D, unsigned rot, \
                                                   float sign) {                                                 \
    rotary_qkv<T, 1>(x, y, cosT, sinT, n, Tn, H, D, rot, sign);                                                 \
  }
FOR_FLOAT_TYPES(DEFINE_ROTARY_QKV)
