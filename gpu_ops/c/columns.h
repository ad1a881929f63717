// Score columns from the score rows of distinct items, and the gradient back.
// C implementation of gpu_ops.columns.ScoreColumns / ScoreColumnsGrad.
//   forward:  z[i, j] = a[c[j], i] + off[j]        a: U x M, z: M x K (both C-contiguous)
//   backward: ga[u, i] = sum over j with c[j] == u of g[i, j];  goff[j] = sum over i of g[i, j]
// Both are transposes through an index. Element-wise they are strided gathers, which this kind of
// CPU runs at one element per cycle or worse; in 8 x 8 blocks of whole rows with an in-register
// transpose (AVX) they run at a few elements per cycle. Blocks that do not fill 8 x 8 (and builds
// without AVX, and float64) take the plain loops, which give the same sums in the same order
// (gradient rows: j ascending; offset gradient: i ascending).
#include <cstddef>
#include <cstring>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef __AVX__
#include <immintrin.h>
#endif

// Columns [j0, j1) of z, rows [i0, M).
template <typename T>
static void sc_forward_plain(const T* a, const npy_int32* c, const T* off, T* z, ptrdiff_t M, ptrdiff_t K,
                             ptrdiff_t i0, ptrdiff_t j0, ptrdiff_t j1) {
    for (ptrdiff_t j = j0; j < j1; ++j) {
        const T* ar = a + (ptrdiff_t) c[j] * M;
        for (ptrdiff_t i = i0; i < M; ++i) z[i * K + j] = ar[i] + off[j];
    }
}

// Rows [i0, i1) of ga from columns [j0, j1) of g, in ascending j.
template <typename T>
static void sc_backward_plain(const T* g, const npy_int32* c, T* ga, ptrdiff_t M, ptrdiff_t K,
                              ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t j0, ptrdiff_t j1) {
    for (ptrdiff_t j = j0; j < j1; ++j) {
        T* gr = ga + (ptrdiff_t) c[j] * M;
        for (ptrdiff_t i = i0; i < i1; ++i) gr[i] += g[i * K + j];
    }
}

#ifdef __AVX__
static inline void sc_transpose8(__m256& r0, __m256& r1, __m256& r2, __m256& r3, __m256& r4, __m256& r5, __m256& r6, __m256& r7) {
    const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r0 = _mm256_permute2f128_ps(s0, s4, 0x20); r1 = _mm256_permute2f128_ps(s1, s5, 0x20);
    r2 = _mm256_permute2f128_ps(s2, s6, 0x20); r3 = _mm256_permute2f128_ps(s3, s7, 0x20);
    r4 = _mm256_permute2f128_ps(s0, s4, 0x31); r5 = _mm256_permute2f128_ps(s1, s5, 0x31);
    r6 = _mm256_permute2f128_ps(s2, s6, 0x31); r7 = _mm256_permute2f128_ps(s3, s7, 0x31);
}
#endif

// One block of (up to) 8 columns of z.
template <typename T>
static void sc_forward_block(const T* a, const npy_int32* c, const T* off, T* z, ptrdiff_t M, ptrdiff_t K, ptrdiff_t j0, ptrdiff_t j1) {
    sc_forward_plain(a, c, off, z, M, K, 0, j0, j1);
}

// Rows [i0, i1) of ga (i0 a multiple of 8) from one block of (up to) 8 columns of g.
template <typename T>
static void sc_backward_block(const T* g, const npy_int32* c, T* ga, ptrdiff_t M, ptrdiff_t K,
                              ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t j0, ptrdiff_t j1) {
    sc_backward_plain(g, c, ga, M, K, i0, i1, j0, j1);
}

#ifdef __AVX__
template <>
void sc_forward_block<float>(const float* a, const npy_int32* c, const float* off, float* z, ptrdiff_t M, ptrdiff_t K,
                             ptrdiff_t j0, ptrdiff_t j1) {
    if (j1 - j0 < 8) {
        sc_forward_plain(a, c, off, z, M, K, 0, j0, j1);
        return;
    }
    const ptrdiff_t M8 = M - M % 8;
    const float* p[8];
    for (int q = 0; q < 8; ++q) p[q] = a + (ptrdiff_t) c[j0 + q] * M;
    const __m256 o = _mm256_loadu_ps(off + j0);
    for (ptrdiff_t i = 0; i < M8; i += 8) {
        __m256 r0 = _mm256_loadu_ps(p[0] + i), r1 = _mm256_loadu_ps(p[1] + i);
        __m256 r2 = _mm256_loadu_ps(p[2] + i), r3 = _mm256_loadu_ps(p[3] + i);
        __m256 r4 = _mm256_loadu_ps(p[4] + i), r5 = _mm256_loadu_ps(p[5] + i);
        __m256 r6 = _mm256_loadu_ps(p[6] + i), r7 = _mm256_loadu_ps(p[7] + i);
        sc_transpose8(r0, r1, r2, r3, r4, r5, r6, r7);
        float* zz = z + i * K + j0;
        _mm256_storeu_ps(zz, _mm256_add_ps(r0, o));
        _mm256_storeu_ps(zz + K, _mm256_add_ps(r1, o));
        _mm256_storeu_ps(zz + 2 * K, _mm256_add_ps(r2, o));
        _mm256_storeu_ps(zz + 3 * K, _mm256_add_ps(r3, o));
        _mm256_storeu_ps(zz + 4 * K, _mm256_add_ps(r4, o));
        _mm256_storeu_ps(zz + 5 * K, _mm256_add_ps(r5, o));
        _mm256_storeu_ps(zz + 6 * K, _mm256_add_ps(r6, o));
        _mm256_storeu_ps(zz + 7 * K, _mm256_add_ps(r7, o));
    }
    sc_forward_plain(a, c, off, z, M, K, M8, j0, j1);
}

template <>
void sc_backward_block<float>(const float* g, const npy_int32* c, float* ga, ptrdiff_t M, ptrdiff_t K,
                              ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t j0, ptrdiff_t j1) {
    const ptrdiff_t i8 = i0 + (i1 - i0) / 8 * 8;
    if (j1 - j0 < 8 || i8 == i0) {
        sc_backward_plain(g, c, ga, M, K, i0, i1, j0, j1);
        return;
    }
    float* p[8];
    for (int q = 0; q < 8; ++q) p[q] = ga + (ptrdiff_t) c[j0 + q] * M;
    for (ptrdiff_t i = i0; i < i8; i += 8) {
        const float* gg = g + i * K + j0;
        __m256 r0 = _mm256_loadu_ps(gg), r1 = _mm256_loadu_ps(gg + K);
        __m256 r2 = _mm256_loadu_ps(gg + 2 * K), r3 = _mm256_loadu_ps(gg + 3 * K);
        __m256 r4 = _mm256_loadu_ps(gg + 4 * K), r5 = _mm256_loadu_ps(gg + 5 * K);
        __m256 r6 = _mm256_loadu_ps(gg + 6 * K), r7 = _mm256_loadu_ps(gg + 7 * K);
        sc_transpose8(r0, r1, r2, r3, r4, r5, r6, r7);
        // one row after the other: two columns of the block may be the same item
        _mm256_storeu_ps(p[0] + i, _mm256_add_ps(_mm256_loadu_ps(p[0] + i), r0));
        _mm256_storeu_ps(p[1] + i, _mm256_add_ps(_mm256_loadu_ps(p[1] + i), r1));
        _mm256_storeu_ps(p[2] + i, _mm256_add_ps(_mm256_loadu_ps(p[2] + i), r2));
        _mm256_storeu_ps(p[3] + i, _mm256_add_ps(_mm256_loadu_ps(p[3] + i), r3));
        _mm256_storeu_ps(p[4] + i, _mm256_add_ps(_mm256_loadu_ps(p[4] + i), r4));
        _mm256_storeu_ps(p[5] + i, _mm256_add_ps(_mm256_loadu_ps(p[5] + i), r5));
        _mm256_storeu_ps(p[6] + i, _mm256_add_ps(_mm256_loadu_ps(p[6] + i), r6));
        _mm256_storeu_ps(p[7] + i, _mm256_add_ps(_mm256_loadu_ps(p[7] + i), r7));
    }
    sc_backward_plain(g, c, ga, M, K, i8, i1, j0, j1);
}
#endif

// z (M x K) = a[c].T + off; threads take blocks of 8 columns.
template <typename T>
static void sc_forward(const T* a, const npy_int32* c, const T* off, T* z, ptrdiff_t M, ptrdiff_t K) {
    const ptrdiff_t blocks = (K + 7) / 8;
    const int nt = rs_threads((double) M * K, 32768.0);
    #pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (ptrdiff_t b = 0; b < blocks; ++b)
        sc_forward_block(a, c, off, z, M, K, b * 8, b * 8 + 8 < K ? b * 8 + 8 : K);
}

// ga (N x M) and off (K) from g (M x K). Threads take ranges of rows of g (the rows the loss Op's
// threads wrote, still in their caches): for ga a thread then writes its own columns of every row,
// cut on 64-byte boundaries of ga's rows so that no cache line is written by two threads; for off
// ranges of columns. Every sum runs in the same order whatever the number of threads.
template <typename T>
static void sc_backward(const T* g, const npy_int32* c, T* ga, T* off, ptrdiff_t M, ptrdiff_t K, ptrdiff_t N) {
    const int nt = rs_threads((double) M * K, 32768.0);
    const ptrdiff_t per_line = 64 / sizeof(T);
    const ptrdiff_t shift = ((ptrdiff_t) ((size_t) ga % 64)) / (ptrdiff_t) sizeof(T);
    #pragma omp parallel num_threads(nt) if (nt > 1)
    {
#ifdef _OPENMP
        const int t = omp_get_thread_num(), nth = omp_get_num_threads();
#else
        const int t = 0, nth = 1;
#endif
        auto cut = [&](int q) -> ptrdiff_t {
            if (q <= 0) return 0;
            if (q >= nth) return M;
            const ptrdiff_t x = (M * q / nth + shift) / per_line * per_line - shift;
            return x < 0 ? 0 : (x > M ? M : x);
        };
        const ptrdiff_t i0 = cut(t), i1 = cut(t + 1);
        if (i1 > i0) {
            for (ptrdiff_t u = 0; u < N; ++u) memset(ga + u * M + i0, 0, sizeof(T) * (i1 - i0));
            for (ptrdiff_t j = 0; j < K; j += 8) sc_backward_block(g, c, ga, M, K, i0, i1, j, j + 8 < K ? j + 8 : K);
        }
        const ptrdiff_t j0 = K * t / nth, j1 = K * (t + 1) / nth;
        for (ptrdiff_t j = j0; j < j1; ++j) off[j] = 0;
        for (ptrdiff_t i = 0; i < M; ++i) {
            const T* gr = g + i * K;
            for (ptrdiff_t j = j0; j < j1; ++j) off[j] += gr[j];
        }
    }
}
