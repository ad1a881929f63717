// Argmax-free ranking for evaluation: per row of a score matrix, how many items score above and
// equal to the target, fused with the Recall/MRR accumulation. No sort; the score matrix stays
// where it is (only per-row counts and per-cut-off sums are written).
#include "common.cuh"

// Tie modes, as gpu_ops.ranking.ranks_from_counts: 0 standard (and tiebreaking, whose noise is
// added to the scores before), 1 conservative, 2 median.
__device__ __forceinline__ double rank_from_counts(index_t greater, index_t equal, int tie_mode) {
    if (tie_mode == 1) return (double)(greater + equal);
    if (tie_mode == 2) return (double)greater + 0.5 * (double)(equal - 1) + 1.0;
    return (double)greater + 1.0;
}

// One block per row (blockIdx.x); scores[row * row_stride + j] for j < n_items. The target's score
// is read from the row itself (column targets[row]), so it is compared bit for bit. greater/equal
// may be null; recall_sums/mrr_sums (n_cutoffs each) are accumulated atomically.
RECSYS_KERNEL(rank_metrics, const float* __restrict__ scores, index_t row_stride,
              const index_t* __restrict__ targets, int n_rows, int n_items, const int* __restrict__ cutoffs,
              int n_cutoffs, int tie_mode, index_t* greater_out, index_t* equal_out, double* recall_sums,
              double* mrr_sums) {
    __shared__ index_t greater_buffer[RECSYS_ROW_THREADS];
    __shared__ index_t equal_buffer[RECSYS_ROW_THREADS];
    const int row = blockIdx.x;
    if (row >= n_rows) return;
    const float* values = scores + row * row_stride;
    const float target = values[targets[row]];
    index_t greater = 0, equal = 0;
    for (int j = threadIdx.x; j < n_items; j += RECSYS_ROW_THREADS) {
        const float v = values[j];
        greater += v > target;
        equal += v == target;
    }
    greater = block_sum(greater, greater_buffer);
    equal = block_sum(equal, equal_buffer);
    if (threadIdx.x != 0) return;
    if (greater_out) greater_out[row] = greater;
    if (equal_out) equal_out[row] = equal;
    if (!recall_sums) return;
    const double rank = rank_from_counts(greater, equal, tie_mode);
    for (int c = 0; c < n_cutoffs; ++c)
        if (rank <= cutoffs[c]) {
            atomicAdd(recall_sums + c, 1.0);
            atomicAdd(mrr_sums + c, 1.0 / rank);
        }
}
