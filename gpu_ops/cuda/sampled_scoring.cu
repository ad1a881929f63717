// Sampled scoring for training: a batch's hidden states H (B x d) against the item rows idx[0..K)
// (the batch's own targets first, then the shared negative samples) of the item matrix E (N x d),
// plus an optional item bias. Positives are on the diagonal of the B x K score matrix.
//
// Forward:  S[i, j] = H[i, :] . E[idx[j], :] + bias[idx[j]]
// Backward: dH = dS E[idx]            (sampled_scores_grad_hidden)
//           dE[idx[j]] += dS[:, j] H   (sampled_scores_grad_items: one gradient row per column j,
//           written as rows or scattered with atomics into a dense gradient; the bias likewise)
// The gathered rows are read in place: no K x d copy of E[idx] is made. All three are 16 x 16
// shared-memory tiled products (blockDim = (RECSYS_TILE, RECSYS_TILE)).
#include "common.cuh"

#define T RECSYS_TILE

// grid = (ceil(K / T), ceil(B / T)); thread (x, y) computes S[i0 + y, j0 + x].
RECSYS_KERNEL(sampled_scores, const float* __restrict__ H, const float* __restrict__ E,
              const float* __restrict__ bias, const index_t* __restrict__ idx, int B, int K, int d,
              float* __restrict__ S) {
    __shared__ float h_tile[T][T + 1];
    __shared__ float e_tile[T][T + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int i = blockIdx.y * T + ty, j = blockIdx.x * T + tx;
    const int j_load = blockIdx.x * T + ty;  // the gathered row this thread loads
    const index_t e_row = j_load < K ? idx[j_load] : 0;
    float acc = 0.0f;
    for (int k0 = 0; k0 < d; k0 += T) {
        const int k = k0 + tx;
        h_tile[ty][tx] = (i < B && k < d) ? H[(index_t)i * d + k] : 0.0f;
        e_tile[ty][tx] = (j_load < K && k < d) ? E[e_row * d + k] : 0.0f;
        __syncthreads();
        for (int kk = 0; kk < T; ++kk) acc += h_tile[ty][kk] * e_tile[tx][kk];
        __syncthreads();
    }
    if (i < B && j < K) S[(index_t)i * K + j] = acc + (bias ? bias[idx[j]] : 0.0f);
}

// dH[i, k] = sum_j dS[i, j] E[idx[j], k]; grid = (ceil(d / T), ceil(B / T)).
RECSYS_KERNEL(sampled_scores_grad_hidden, const float* __restrict__ dS, const float* __restrict__ E,
              const index_t* __restrict__ idx, int B, int K, int d, float* __restrict__ dH) {
    __shared__ float g_tile[T][T + 1];
    __shared__ float e_tile[T][T + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int i = blockIdx.y * T + ty, k = blockIdx.x * T + tx;
    float acc = 0.0f;
    for (int j0 = 0; j0 < K; j0 += T) {
        const int j_col = j0 + tx, j_row = j0 + ty;
        g_tile[ty][tx] = (i < B && j_col < K) ? dS[(index_t)i * K + j_col] : 0.0f;
        e_tile[ty][tx] = (j_row < K && k < d) ? E[idx[j_row] * d + k] : 0.0f;
        __syncthreads();
        for (int jj = 0; jj < T; ++jj) acc += g_tile[ty][jj] * e_tile[jj][tx];
        __syncthreads();
    }
    if (i < B && k < d) dH[(index_t)i * d + k] = acc;
}

// Gradient rows G[j, k] = sum_i dS[i, j] H[i, k] and bias gradient g_b[j] = sum_i dS[i, j].
// With dense_E null they are written as rows (grad_rows: K x d, grad_bias: K); otherwise they are
// added atomically into dense_E[idx[j]] and dense_bias[idx[j]] (repeated items sum up).
// grid = (ceil(d / T), ceil(K / T)); thread (x, y) computes G[j0 + y, k0 + x].
RECSYS_KERNEL(sampled_scores_grad_items, const float* __restrict__ dS, const float* __restrict__ H,
              const index_t* __restrict__ idx, int B, int K, int d, float* __restrict__ grad_rows,
              float* __restrict__ grad_bias, float* dense_E, float* dense_bias) {
    __shared__ float g_tile[T][T + 1];
    __shared__ float h_tile[T][T + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int j = blockIdx.y * T + ty, k = blockIdx.x * T + tx;
    const int j_load = blockIdx.y * T + tx;
    const bool bias_thread = blockIdx.x == 0 && tx == 0;
    float acc = 0.0f, bias_acc = 0.0f;
    for (int i0 = 0; i0 < B; i0 += T) {
        const int i = i0 + ty;
        g_tile[ty][tx] = (i < B && j_load < K) ? dS[(index_t)i * K + j_load] : 0.0f;
        h_tile[ty][tx] = (i < B && k < d) ? H[(index_t)i * d + k] : 0.0f;
        __syncthreads();
        for (int ii = 0; ii < T; ++ii) {
            acc += g_tile[ii][ty] * h_tile[ii][tx];
            if (bias_thread) bias_acc += g_tile[ii][ty];
        }
        __syncthreads();
    }
    if (j >= K) return;
    if (dense_E) {
        if (k < d) atomicAdd(dense_E + idx[j] * d + k, acc);
        if (bias_thread && dense_bias) atomicAdd(dense_bias + idx[j], bias_acc);
    } else {
        if (k < d) grad_rows[(index_t)j * d + k] = acc;
        if (bias_thread && grad_bias) grad_bias[j] = bias_acc;
    }
}

// diag[i] = S[i, i] for i < B (S is B x K, K >= B).
RECSYS_KERNEL(positive_diagonal, const float* __restrict__ S, int B, int K, float* __restrict__ diag) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < B) diag[i] = S[(index_t)i * K + i];
}

#undef T
