// Score columns from the score rows of distinct items, and the gradient back.
// C implementation of gpu_ops.columns.ScoreColumns / ScoreColumnsGrad.
//   forward:  z[i, j] = a[c[j], i] + off[j]        a: U x M, z: M x K (both C-contiguous)
//   backward: ga[u, i] = sum over j with c[j] == u of g[i, j];  goff[j] = sum over i of g[i, j]
// Both are transposes through an index. Element-wise they are strided gathers, which this kind of
// CPU runs at one element per cycle or worse; in 8 x 8 blocks of whole rows with an in-register
// transpose (AVX) they run at a few elements per cycle. Blocks that do not fill 8 x 8 (and builds
// without AVX, and float64) take the plain loops, which give the same sums in the same order for
// the gradient rows (j ascending) and may differ only in the order of the offset-gradient sums.
#include <cstddef>
#include <cstring>
#ifdef __AVX__
#include <immintrin.h>
#endif

template <typename T>
static void sc_forward_plain(const T* a, const npy_int32* c, const T* off, T* z, ptrdiff_t M, ptrdiff_t K,
                             ptrdiff_t i0, ptrdiff_t j0) {
    // rows i >= i0 of every column, and every row of the columns j >= j0
    for (ptrdiff_t j = 0; j < K; ++j) {
        const T* ar = a + (ptrdiff_t) c[j] * M;
        for (ptrdiff_t i = (j < j0 ? i0 : 0); i < M; ++i) z[i * K + j] = ar[i] + off[j];
    }
}

template <typename T>
static void sc_backward_plain(const T* g, const npy_int32* c, T* ga, T* off, ptrdiff_t M, ptrdiff_t K,
                              ptrdiff_t i0, ptrdiff_t j0) {
    for (ptrdiff_t j = 0; j < K; ++j) {
        T* gr = ga + (ptrdiff_t) c[j] * M;
        T s = 0;
        for (ptrdiff_t i = (j < j0 ? i0 : 0); i < M; ++i) {
            const T v = g[i * K + j];
            gr[i] += v;
            s += v;
        }
        off[j] += s;
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

template <typename T>
static void sc_forward(const T* a, const npy_int32* c, const T* off, T* z, ptrdiff_t M, ptrdiff_t K) {
    sc_forward_plain(a, c, off, z, M, K, 0, 0);
}

template <typename T>
static void sc_backward(const T* g, const npy_int32* c, T* ga, T* off, ptrdiff_t M, ptrdiff_t K) {
    sc_backward_plain(g, c, ga, off, M, K, 0, 0);
}

#ifdef __AVX__
template <>
void sc_forward<float>(const float* a, const npy_int32* c, const float* off, float* z, ptrdiff_t M, ptrdiff_t K) {
    const ptrdiff_t M8 = M - M % 8, K8 = K - K % 8;
    for (ptrdiff_t j = 0; j < K8; j += 8) {
        const float* p[8];
        for (int q = 0; q < 8; ++q) p[q] = a + (ptrdiff_t) c[j + q] * M;
        const __m256 o = _mm256_loadu_ps(off + j);
        for (ptrdiff_t i = 0; i < M8; i += 8) {
            __m256 r0 = _mm256_loadu_ps(p[0] + i), r1 = _mm256_loadu_ps(p[1] + i);
            __m256 r2 = _mm256_loadu_ps(p[2] + i), r3 = _mm256_loadu_ps(p[3] + i);
            __m256 r4 = _mm256_loadu_ps(p[4] + i), r5 = _mm256_loadu_ps(p[5] + i);
            __m256 r6 = _mm256_loadu_ps(p[6] + i), r7 = _mm256_loadu_ps(p[7] + i);
            sc_transpose8(r0, r1, r2, r3, r4, r5, r6, r7);
            float* zz = z + i * K + j;
            _mm256_storeu_ps(zz, _mm256_add_ps(r0, o));
            _mm256_storeu_ps(zz + K, _mm256_add_ps(r1, o));
            _mm256_storeu_ps(zz + 2 * K, _mm256_add_ps(r2, o));
            _mm256_storeu_ps(zz + 3 * K, _mm256_add_ps(r3, o));
            _mm256_storeu_ps(zz + 4 * K, _mm256_add_ps(r4, o));
            _mm256_storeu_ps(zz + 5 * K, _mm256_add_ps(r5, o));
            _mm256_storeu_ps(zz + 6 * K, _mm256_add_ps(r6, o));
            _mm256_storeu_ps(zz + 7 * K, _mm256_add_ps(r7, o));
        }
    }
    sc_forward_plain(a, c, off, z, M, K, M8, K8);
}

template <>
void sc_backward<float>(const float* g, const npy_int32* c, float* ga, float* off, ptrdiff_t M, ptrdiff_t K) {
    const ptrdiff_t M8 = M - M % 8, K8 = K - K % 8;
    for (ptrdiff_t j = 0; j < K8; j += 8) {
        float* p[8];
        for (int q = 0; q < 8; ++q) p[q] = ga + (ptrdiff_t) c[j + q] * M;
        __m256 acc = _mm256_setzero_ps();
        for (ptrdiff_t i = 0; i < M8; i += 8) {
            const float* gg = g + i * K + j;
            __m256 r0 = _mm256_loadu_ps(gg), r1 = _mm256_loadu_ps(gg + K);
            __m256 r2 = _mm256_loadu_ps(gg + 2 * K), r3 = _mm256_loadu_ps(gg + 3 * K);
            __m256 r4 = _mm256_loadu_ps(gg + 4 * K), r5 = _mm256_loadu_ps(gg + 5 * K);
            __m256 r6 = _mm256_loadu_ps(gg + 6 * K), r7 = _mm256_loadu_ps(gg + 7 * K);
            acc = _mm256_add_ps(acc, _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(r0, r1), _mm256_add_ps(r2, r3)),
                                                   _mm256_add_ps(_mm256_add_ps(r4, r5), _mm256_add_ps(r6, r7))));
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
        _mm256_storeu_ps(off + j, _mm256_add_ps(_mm256_loadu_ps(off + j), acc));
    }
    sc_backward_plain(g, c, ga, off, M, K, M8, K8);
}
#endif
