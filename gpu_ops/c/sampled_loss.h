// Final activation + GRU4Rec loss on one row of a sampled score matrix, and d(loss)/d(scores).
// C implementation of gpu_ops.sampled_loss.SampledLoss (same formulas as its numpy perform).
// Row i holds the target's score in column i; K is the number of columns.
#include <cmath>
#include <cstddef>

enum { SL_LINEAR, SL_RELU, SL_TANH, SL_SOFTMAX, SL_SOFTMAX_LOGIT, SL_LEAKY, SL_ELU, SL_SELU };
enum { SL_XE, SL_XE_LOGIT, SL_BPR, SL_TOP1, SL_BPR_MAX, SL_TOP1_MAX };

template <typename T> static inline T sl_sigmoid(T x) { return T(0.5) * (T(1) + std::tanh(T(0.5) * x)); }

// y = act(z); st = what the backward pass needs (softmax output, tanh, exp(min(z, 0))).
template <typename T>
static void sl_activation(int act, T a0, T a1, const T* __restrict__ z, T* __restrict__ y, T* __restrict__ st, ptrdiff_t K) {
    switch (act) {
    case SL_LINEAR: for (ptrdiff_t j = 0; j < K; ++j) y[j] = z[j]; break;
    case SL_RELU: for (ptrdiff_t j = 0; j < K; ++j) y[j] = z[j] > 0 ? z[j] : T(0); break;
    case SL_TANH: for (ptrdiff_t j = 0; j < K; ++j) { y[j] = std::tanh(z[j]); st[j] = y[j]; } break;
    case SL_LEAKY: for (ptrdiff_t j = 0; j < K; ++j) y[j] = z[j] >= 0 ? z[j] : a0 * z[j]; break;
    case SL_ELU: case SL_SELU: {
        const T scale = act == SL_SELU ? a0 : T(1), alpha = act == SL_SELU ? a1 : a0;
        for (ptrdiff_t j = 0; j < K; ++j) {
            st[j] = std::exp(z[j] < 0 ? z[j] : T(0));
            y[j] = scale * (z[j] >= 0 ? z[j] : alpha * (st[j] - T(1)));
        }
        break;
    }
    default: {  // softmax, softmax_logit
        T m = z[0];  // ``omp simd`` (-fopenmp-simd): gcc keeps this reduction scalar under
        #pragma omp simd reduction(max:m)  // -fno-finite-math-only (measured 1.7x slower loss)
        for (ptrdiff_t j = 1; j < K; ++j) m = z[j] > m ? z[j] : m;
        double s = 0;
        for (ptrdiff_t j = 0; j < K; ++j) { st[j] = std::exp(z[j] - m); s += st[j]; }
        const T inv = T(1.0 / s), logs = T(std::log(s));
        if (act == SL_SOFTMAX) {
            for (ptrdiff_t j = 0; j < K; ++j) { st[j] *= inv; y[j] = st[j]; }
        } else {
            for (ptrdiff_t j = 0; j < K; ++j) st[j] *= inv;
            for (ptrdiff_t j = 0; j < K; ++j) y[j] = logs - (z[j] - m);
        }
    }
    }
}

// dz = d(loss)/dz from g = d(loss)/dy.
template <typename T>
static void sl_activation_grad(int act, T a0, T a1, const T* __restrict__ z, const T* __restrict__ g,
                               const T* __restrict__ y, const T* __restrict__ st, T* __restrict__ dz, ptrdiff_t K) {
    switch (act) {
    case SL_LINEAR: for (ptrdiff_t j = 0; j < K; ++j) dz[j] = g[j]; break;
    case SL_RELU: for (ptrdiff_t j = 0; j < K; ++j) dz[j] = z[j] >= 0 ? g[j] : T(0); break;
    case SL_TANH: for (ptrdiff_t j = 0; j < K; ++j) dz[j] = g[j] * (T(1) - st[j] * st[j]); break;
    case SL_LEAKY: for (ptrdiff_t j = 0; j < K; ++j) dz[j] = z[j] >= 0 ? g[j] : a0 * g[j]; break;
    case SL_ELU: case SL_SELU: {
        const T scale = act == SL_SELU ? a0 : T(1), alpha = act == SL_SELU ? a1 : a0;
        for (ptrdiff_t j = 0; j < K; ++j) dz[j] = scale * (z[j] >= 0 ? g[j] : g[j] * alpha * st[j]);
        break;
    }
    case SL_SOFTMAX: {
        double s = 0;
        for (ptrdiff_t j = 0; j < K; ++j) s += g[j] * y[j];
        const T ts = T(s);
        for (ptrdiff_t j = 0; j < K; ++j) dz[j] = y[j] * (g[j] - ts);
        break;
    }
    default: {  // softmax_logit
        double s = 0;
        for (ptrdiff_t j = 0; j < K; ++j) s += g[j];
        const T ts = T(s);
        for (ptrdiff_t j = 0; j < K; ++j) dz[j] = st[j] * ts - g[j];
    }
    }
}

// The original's negative-only softmax of row y (position i masked out, max taken after masking).
template <typename T>
static void sl_softmax_neg(const T* __restrict__ y, T* __restrict__ sn, ptrdiff_t i, ptrdiff_t K) {
    T m = i == 0 ? T(0) : y[0];
    #pragma omp simd reduction(max:m)
    for (ptrdiff_t j = 0; j < K; ++j) { const T x = j == i ? T(0) : y[j]; m = x > m ? x : m; }
    double s = 0;
    for (ptrdiff_t j = 0; j < K; ++j) { sn[j] = j == i ? T(0) : std::exp(y[j] - m); s += sn[j]; }
    const T inv = T(1.0 / s);
    for (ptrdiff_t j = 0; j < K; ++j) sn[j] *= inv;
}

// Loss of row i (target at column i) and g = d(loss)/dy; sn is scratch of K values.
template <typename T>
static double sl_loss(int loss, T smoothing, T bpreg, const T* __restrict__ y, T* __restrict__ g, T* __restrict__ sn,
                      ptrdiff_t i, ptrdiff_t K) {
    const T EPS = T(1e-24);
    const T d = y[i];
    double value = 0;
    if (loss == SL_XE || loss == SL_XE_LOGIT) {
        const T w = smoothing != 0 ? T(1) - (T(K) / T(K - 1)) * smoothing : T(1);
        const T spread = smoothing != 0 ? smoothing / T(K - 1) : T(0);
        if (loss == SL_XE) {
            value = w * -std::log(d + EPS);
            if (smoothing != 0) {
                double s = 0;
                for (ptrdiff_t j = 0; j < K; ++j) { s += -std::log(y[j] + EPS); g[j] = -spread / (y[j] + EPS); }
                value += spread * s;
            } else {
                for (ptrdiff_t j = 0; j < K; ++j) g[j] = T(0);
            }
            g[i] += -w / (d + EPS);
        } else {
            double s = 0;
            for (ptrdiff_t j = 0; j < K; ++j) { s += y[j]; g[j] = spread; }
            value = w * d + (smoothing != 0 ? spread * s : 0.0);
            g[i] += w;
        }
        return value;
    }
    if (loss == SL_BPR) {
        double sg = 0;
        for (ptrdiff_t j = 0; j < K; ++j) {
            const T u = d - y[j];  // log(1 + exp(-u)), stable
            value += (u < 0 ? -u : T(0)) + std::log1p(std::exp(-(u < 0 ? -u : u)));
            g[j] = sl_sigmoid(-u);
            sg += g[j];
        }
        g[i] = T(0.5 - sg);
        return value;
    }
    if (loss == SL_TOP1) {
        double s = 0, sg1 = 0;
        T g1i = 0;
        for (ptrdiff_t j = 0; j < K; ++j) {
            const T s1 = sl_sigmoid(y[j] - d), s2 = sl_sigmoid(y[j] * y[j]);
            s += s1 + s2;
            const T g1 = s1 * (T(1) - s1);
            sg1 += g1;
            if (j == i) g1i = g1;
            g[j] = (g1 + T(2) * y[j] * s2 * (T(1) - s2)) / T(K);
        }
        g[i] = T(-(sg1 - g1i) / K);
        return (s - sl_sigmoid(d * d)) / K;
    }
    sl_softmax_neg(y, sn, i, K);
    if (loss == SL_BPR_MAX) {
        double A0 = 0, B = 0, sdas = 0;
        for (ptrdiff_t j = 0; j < K; ++j) {
            const T a = sl_sigmoid(d - y[j]);
            A0 += a * sn[j];
            B += sn[j] * y[j] * y[j];
            sdas += a * (T(1) - a) * sn[j];
        }
        const T A = T(A0) + EPS, tA0 = T(A0), tB = T(B);
        for (ptrdiff_t j = 0; j < K; ++j) {
            const T a = sl_sigmoid(d - y[j]), da = a * (T(1) - a), ysq = y[j] * y[j];
            g[j] = -(-da * sn[j] + sn[j] * (a - tA0)) / A + bpreg * (T(2) * sn[j] * y[j] + sn[j] * (ysq - tB));
        }
        g[i] = T(-sdas) / A;
        return -std::log(A) + bpreg * B;
    }
    // top1-max
    double C = 0, ssg1 = 0;
    for (ptrdiff_t j = 0; j < K; ++j) {
        const T s1 = T(1) - sl_sigmoid(d - y[j]), s2 = sl_sigmoid(y[j] * y[j]);
        C += sn[j] * (s1 + s2);
        ssg1 += sn[j] * s1 * (T(1) - s1);
    }
    const T tC = T(C);
    for (ptrdiff_t j = 0; j < K; ++j) {
        const T s1 = T(1) - sl_sigmoid(d - y[j]), s2 = sl_sigmoid(y[j] * y[j]);
        const T g1 = s1 * (T(1) - s1);
        g[j] = sn[j] * (g1 + T(2) * y[j] * s2 * (T(1) - s2)) + sn[j] * (s1 + s2 - tC);
    }
    g[i] = T(-ssg1);
    return C;
}

// Cross-entropy without smoothing after softmax / softmax_logit: d(loss)/dy is zero except at the
// target, so sl_loss + sl_activation_grad reduce to one pass with the same arithmetic (every term
// the general code adds for j != i is an exact zero). Returns the row's loss.
template <typename T>
static double sl_xe_one_hot(int act, int loss, const T* __restrict__ y, const T* __restrict__ st,
                            T* __restrict__ dz, ptrdiff_t i, ptrdiff_t K) {
    const T EPS = T(1e-24);
    const T d = y[i];
    const double value = loss == SL_XE ? double(T(1) * -std::log(d + EPS)) : double(T(1) * d);
    const T gi = loss == SL_XE ? -T(1) / (d + EPS) : T(1);
    if (act == SL_SOFTMAX) {
        const T ts = T(double(gi * d));
        for (ptrdiff_t j = 0; j < K; ++j) dz[j] = y[j] * (T(0) - ts);
        dz[i] = d * (gi - ts);
    } else {
        const T ts = T(double(gi));
        for (ptrdiff_t j = 0; j < K; ++j) dz[j] = st[j] * ts;
        dz[i] = st[i] * ts - gi;
    }
    return value;
}

// Summed loss over the M rows of the M x K matrix z (C-contiguous) and dz = d(loss)/dz.
// scratch: 4 * K values.
// Summed loss over the rows; dz filled. Rows are independent: threads take ranges of them, each
// with its own scratch rows, and the row losses are summed in row order afterwards (the same total
// whatever the number of threads) into *total. Returns false when scratch memory could not be had.
template <typename T>
static bool sl_matrix(int act, T a0, T a1, int loss, T smoothing, T bpreg, const T* z, T* dz,
                      ptrdiff_t M, ptrdiff_t K, double* total) {
    const bool one_hot = (loss == SL_XE || loss == SL_XE_LOGIT) && smoothing == 0 &&
                         (act == SL_SOFTMAX || act == SL_SOFTMAX_LOGIT);
    double* row_loss = (double*) malloc(sizeof(double) * (M > 0 ? M : 1));
    if (!row_loss) return false;
    int failed = 0;
    const int nt = rs_threads((double) M * K, 32768.0);
    #pragma omp parallel num_threads(nt) if (nt > 1)
    {
        T* scratch = (T*) malloc(sizeof(T) * 4 * K);
        if (!scratch) {
            #pragma omp atomic write
            failed = 1;
        }
        T *y = scratch, *st = scratch + K, *g = scratch + 2 * K, *sn = scratch + 3 * K;
        #pragma omp for schedule(static)
        for (ptrdiff_t i = 0; i < M; ++i) {
            if (!scratch) continue;
            sl_activation(act, a0, a1, z + i * K, y, st, K);
            if (one_hot) {
                row_loss[i] = sl_xe_one_hot(act, loss, y, st, dz + i * K, i, K);
                continue;
            }
            row_loss[i] = sl_loss(loss, smoothing, bpreg, y, g, sn, i, K);
            sl_activation_grad(act, a0, a1, z + i * K, g, y, st, dz + i * K, K);
        }
        free(scratch);
    }
    double sum = 0;
    for (ptrdiff_t i = 0; i < M; ++i) sum += row_loss[i];
    free(row_loss);
    *total = sum;
    return !failed;
}
