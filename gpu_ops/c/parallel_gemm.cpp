// GEMM and GEMV entry points for PyTensor's C code that split a product between OpenMP threads,
// each thread calling the OpenBLAS wheel's single-threaded routine on its share of the output.
//
// Why: OpenBLAS's own worker threads spin for a while after every call. The project's custom Ops
// run their loops on OpenMP threads, and the two thread pools spinning on the same cores slowed a
// training step from 1.5 ms to 4 ms. With this wrapper every parallel loop of a step (GEMMs and
// Ops) runs on the one OpenMP pool. Rows or columns of the output are split in multiples of 16.
// A share may be summed in another order than the whole (OpenBLAS picks kernels by size, e.g. its
// small-matrix kernels), so results can differ from an unsplit call by rounding, as they do
// between thread counts of OpenBLAS's own threading.
#include <omp.h>

extern "C" {
void scipy_sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*, const int*,
                  const float*, const int*, const float*, float*, const int*);
void scipy_dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*, const int*,
                  const double*, const int*, const double*, double*, const int*);
void scipy_sgemv_(const char*, const int*, const int*, const float*, const float*, const int*, const float*, const int*,
                  const float*, float*, const int*);
void scipy_dgemv_(const char*, const int*, const int*, const double*, const double*, const int*, const double*,
                  const int*, const double*, double*, const int*);
void scipy_openblas_set_num_threads(int);
}

namespace {

// Products below this many flops per thread are not worth waking another thread for.
const double MIN_FLOPS_PER_THREAD = 2e6;

__attribute__((constructor)) void single_threaded_openblas() { scipy_openblas_set_num_threads(1); }

// How many threads share a product of ``flops`` whose output side being split has ``len`` entries
// (shares are multiples of 16 entries); 1 inside another parallel region.
int shares(double flops, int len) {
    int parts = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (parts > flops / MIN_FLOPS_PER_THREAD) parts = (int) (flops / MIN_FLOPS_PER_THREAD);
    if (parts > len / 16) parts = len / 16;
    return parts;
}

// Calls part(lo, count) on ``parts`` threads for consecutive ranges of [0, len), cut at multiples of 16.
template <typename Part>
void in_shares(int parts, int len, Part part) {
    const int blocks = (len + 15) / 16;
    #pragma omp parallel num_threads(parts)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int lo = blocks * t / nt * 16, hi = t == nt - 1 ? len : blocks * (t + 1) / nt * 16;
        if (hi > lo) part(lo, hi - lo);
    }
}

template <typename T, typename Gemm>
void split_gemm(Gemm gemm, const char* ta, const char* tb, const int* m, const int* n, const int* k, const T* alpha,
                const T* a, const int* lda, const T* b, const int* ldb, const T* beta, T* c, const int* ldc) {
    const bool along_n = *n >= *m;  // column-major C (m x n): split its longer side
    const int len = along_n ? *n : *m;
    const int parts = shares(2.0 * *m * *n * *k, len);
    if (parts <= 1) {
        gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    const bool a_plain = *ta == 'N' || *ta == 'n', b_plain = *tb == 'N' || *tb == 'n';
    in_shares(parts, len, [&](int lo, int cnt) {
        if (along_n) {  // columns lo..lo+cnt of C: columns of op(B)
            const T* bp = b_plain ? b + (long) lo * *ldb : b + lo;
            gemm(ta, tb, m, &cnt, k, alpha, a, lda, bp, ldb, beta, c + (long) lo * *ldc, ldc);
        } else {  // rows lo..lo+cnt of C: rows of op(A)
            const T* ap = a_plain ? a + lo : a + (long) lo * *lda;
            gemm(ta, tb, &cnt, n, k, alpha, ap, lda, b, ldb, beta, c + lo, ldc);
        }
    });
}

// y = alpha op(A) x + beta y: threads take ranges of y (rows of A, or columns of A transposed).
template <typename T, typename Gemv>
void split_gemv(Gemv gemv, const char* ta, const int* m, const int* n, const T* alpha, const T* a, const int* lda,
                const T* x, const int* incx, const T* beta, T* y, const int* incy) {
    const bool plain = *ta == 'N' || *ta == 'n';
    const int len = plain ? *m : *n;
    const int parts = *incx <= 0 || *incy <= 0 ? 1 : shares(2.0 * *m * *n, len);
    if (parts <= 1) {
        gemv(ta, m, n, alpha, a, lda, x, incx, beta, y, incy);
        return;
    }
    in_shares(parts, len, [&](int lo, int cnt) {
        if (plain)
            gemv(ta, &cnt, n, alpha, a + lo, lda, x, incx, beta, y + (long) lo * *incy, incy);
        else
            gemv(ta, m, &cnt, alpha, a + (long) lo * *lda, lda, x, incx, beta, y + (long) lo * *incy, incy);
    });
}

}  // namespace

extern "C" {
void recsys_sgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k, const float* alpha,
                   const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
                   const int* ldc) {
    split_gemm<float>(scipy_sgemm_, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void recsys_dgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k, const double* alpha,
                   const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
                   const int* ldc) {
    split_gemm<double>(scipy_dgemm_, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void recsys_sgemv_(const char* ta, const int* m, const int* n, const float* alpha, const float* a, const int* lda,
                   const float* x, const int* incx, const float* beta, float* y, const int* incy) {
    split_gemv<float>(scipy_sgemv_, ta, m, n, alpha, a, lda, x, incx, beta, y, incy);
}

void recsys_dgemv_(const char* ta, const int* m, const int* n, const double* alpha, const double* a, const int* lda,
                   const double* x, const int* incx, const double* beta, double* y, const int* incy) {
    split_gemv<double>(scipy_dgemv_, ta, m, n, alpha, a, lda, x, incx, beta, y, incy);
}
}
