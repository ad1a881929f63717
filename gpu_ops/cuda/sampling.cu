// Popularity^alpha sampling by binary search into a cumulative distribution, writing straight
// into the sample store. Uniforms come from a counter-based hash (SplitMix64 of seed and position),
// so any slice of the store can be regenerated and checked on the CPU
// (gpu_ops.cuda_kernels.counter_uniforms computes the same numbers with numpy).
#include "common.cuh"

__device__ __forceinline__ unsigned long long splitmix64(unsigned long long x) {
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

// A float in [0, 1) with 24 random bits (exactly representable in float32).
__device__ __forceinline__ float counter_uniform(unsigned long long seed, unsigned long long counter) {
    return (float)(splitmix64(seed ^ splitmix64(counter)) >> 40) * (1.0f / 16777216.0f);
}

// Number of cdf entries below u (numpy.searchsorted, side='left').
__device__ __forceinline__ index_t lower_bound(const float* __restrict__ cdf, index_t n, float u) {
    index_t lo = 0, hi = n;
    while (lo < hi) {
        const index_t mid = lo + ((hi - lo) >> 1);
        if (cdf[mid] < u) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

// out[i] = searchsorted(cdf, counter_uniform(seed, offset + i)) for i < n; cdf[n_items-1] == 1.
RECSYS_KERNEL(sample_from_cdf, const float* __restrict__ cdf, index_t n_items, unsigned long long seed,
              unsigned long long offset, index_t n, index_t* __restrict__ out) {
    const index_t stride = (index_t)blockDim.x * gridDim.x;
    for (index_t i = (index_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        out[i] = lower_bound(cdf, n_items, counter_uniform(seed, offset + (unsigned long long)i));
}

// out[i] = searchsorted(cdf, u[i]) for given uniforms (the SearchSorted Op's semantics).
RECSYS_KERNEL(search_sorted, const float* __restrict__ cdf, index_t n_items, const float* __restrict__ u,
              index_t n, index_t* __restrict__ out) {
    const index_t stride = (index_t)blockDim.x * gridDim.x;
    for (index_t i = (index_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        out[i] = lower_bound(cdf, n_items, u[i]);
}
