// Token embeddings: gather rows of w, and scatter-add gradients into an f32 table.
// defines: embedding_<t>            ids [N] i32, w [V, C] → y [N, C]
//          embedding_backward_<t>   ids [N] i32, dy [N, C] → dw [V, C] f32 (+=, atomicAdd)
// An id outside [0, V) sets a bit of the device error word (reported by the host at its next
// wait) and gives NaN rows forward and no contribution backward.
#include "common.cuh"

template <typename T>
__device__ void gather(const int* __restrict__ ids, const T* __restrict__ w, T* __restrict__ y, i64 N, i64 C, i64 V, int* err) {
  GRID_STRIDE(i, N * C) {
    const i64 n = i / C, c = i - n * C;
    const int id = ids[n];
    if (id >= 0 && id < V) {
      y[i] = w[(i64)id * C + c];
    } else {
      y[i] = from_f32<T>(QNAN);
      if (c == 0) atomicOr(err, ERR_EMBEDDING_ID);
    }
  }
}

template <typename T>
__device__ void scatter_add(const int* __restrict__ ids, const T* __restrict__ dy, float* __restrict__ dw, i64 N, i64 C, i64 V, int* err) {
  GRID_STRIDE(i, N * C) {
    const i64 n = i / C, c = i - n * C;
    const int id = ids[n];
    if (id >= 0 && id < V) atomicAdd(&dw[(i64)id * C + c], to_f32(dy[i]));
    else if (c == 0) atomicOr(err, ERR_EMBEDDING_BACKWARD_ID);
  }
}

#define DEFINE_EMBEDDING(T, S)                                                                           \
  extern "C" __global__ void embedding_##S(const int* ids, const T* w, T* y, i64 N, i64 C, i64 V, int* err) { \
    gather<T>(ids, w, y, N, C, V, err);                                                                  \
  }                                                                                                      \
  extern "C" __global__ void embedding_backward_##S(const int* ids, const T* dy, float* dw, i64 N, i64 C, i64 V, int* err) { \
    scatter_add<T>(ids, dy, dw, N, C, V, err);                                                           \
  }
FOR_FLOAT_TYPES(DEFINE_EMBEDDING)
