// Shared by every kernel file: the kernel declaration macro (plain extern "C" __global__ kernels
// under nvcc; registered host functions under host_emulation.h) and small device helpers.
#pragma once
#ifdef RECSYS_HOST_EMULATION
#include "host_emulation.h"
#else
#define RECSYS_KERNEL(name, ...) extern "C" __global__ void name(__VA_ARGS__)
#define RECSYS_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

typedef long long index_t;

// Threads per block of the one-block-per-row kernels (ranking); a power of two.
#define RECSYS_ROW_THREADS 256
// Square tile edge of the gathered matrix products (sampled scoring).
#define RECSYS_TILE 16

// Sum of v over the block's RECSYS_ROW_THREADS threads; the result is valid in thread 0.
template <class T>
__device__ __forceinline__ T block_sum(T v, T* buffer) {
    const unsigned t = threadIdx.x;
    buffer[t] = v;
    __syncthreads();
    for (unsigned half = RECSYS_ROW_THREADS / 2; half > 0; half >>= 1) {
        if (t < half) buffer[t] += buffer[t + half];
        __syncthreads();
    }
    return buffer[0];
}
