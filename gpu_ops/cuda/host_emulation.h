// Runs this package's CUDA kernels on the CPU, for tests on machines without a GPU.
//
// Each block of a launch runs on its own set of std::threads (one per CUDA thread), so
// __syncthreads is a real barrier and __shared__ memory is shared by the block's threads; blocks
// run one after another. Kernels are registered by name and launched with cuLaunchKernel's
// argument convention (an array of pointers to the argument values), so the Python launcher packs
// arguments once for both executors. Slow, and meant only for checking kernel logic.
#pragma once
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

namespace emu {
inline thread_local dim3 thread_index;
inline dim3 block_index, block_dim, grid_dim;
inline std::barrier<>* block_barrier = nullptr;
inline std::vector<unsigned char> dynamic_shared;

using Invoker = std::function<void(void**)>;
inline std::map<std::string, Invoker>& registry() {
    static std::map<std::string, Invoker> kernels;
    return kernels;
}

template <class... A, std::size_t... I>
void invoke(void (*kernel)(A...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(args[I])...);
}

struct Registrar {
    template <class... A>
    Registrar(const char* name, void (*kernel)(A...)) {
        registry()[name] = [kernel](void** args) { invoke(kernel, args, std::index_sequence_for<A...>{}); };
    }
};

template <class T>
T atomic_add(T* address, T value) {
    return std::atomic_ref<T>(*address).fetch_add(value);
}
}  // namespace emu

#define threadIdx (emu::thread_index)
#define blockIdx (emu::block_index)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)
#define __syncthreads() (emu::block_barrier->arrive_and_wait())
#define __shared__ static
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
#define RECSYS_KERNEL(name, ...)                               \
    static void name(__VA_ARGS__);                             \
    static emu::Registrar name##_registrar(#name, &name);      \
    static void name(__VA_ARGS__)
#define RECSYS_DYNAMIC_SHARED(type, name) type* name = reinterpret_cast<type*>(emu::dynamic_shared.data())

inline float atomicAdd(float* a, float v) { return emu::atomic_add(a, v); }
inline double atomicAdd(double* a, double v) { return emu::atomic_add(a, v); }
inline int atomicAdd(int* a, int v) { return emu::atomic_add(a, v); }
inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) { return emu::atomic_add(a, v); }
template <class T>
inline T __ldg(const T* p) { return *p; }

extern "C" int recsys_emulated_launch(const char* name, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                                      unsigned by, unsigned bz, unsigned shared_bytes, void** args) {
    auto found = emu::registry().find(name);
    if (found == emu::registry().end()) return 1;
    const emu::Invoker& kernel = found->second;
    emu::grid_dim = dim3{gx, gy, gz};
    emu::block_dim = dim3{bx, by, bz};
    emu::dynamic_shared.assign(shared_bytes, 0);
    const unsigned n_threads = bx * by * bz;
    for (unsigned z = 0; z < gz; ++z)
        for (unsigned y = 0; y < gy; ++y)
            for (unsigned x = 0; x < gx; ++x) {
                emu::block_index = dim3{x, y, z};
                std::barrier<> barrier(n_threads);
                emu::block_barrier = &barrier;
                std::vector<std::thread> threads;
                threads.reserve(n_threads);
                for (unsigned t = 0; t < n_threads; ++t)
                    threads.emplace_back([&, t] {
                        emu::thread_index = dim3{t % bx, (t / bx) % by, t / (bx * by)};
                        kernel(args);
                        barrier.arrive_and_drop();  // an exited thread no longer holds up __syncthreads
                    });
                for (auto& thread : threads) thread.join();
            }
    emu::block_barrier = nullptr;
    return 0;
}
