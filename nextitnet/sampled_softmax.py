"""NextItNet's sampled-softmax option: TensorFlow's sampled_softmax_loss with its default sampler.

Candidates come from the log-uniform (Zipfian) sampler over the vocabulary, P(id) =
log((id+2)/(id+1)) / log(V+1), drawn *unique* (draw until ``n`` distinct ids; one set for the
whole batch). Expected counts follow TF: p * tries when no draw was rejected, else
1 - (1 - p)^tries. The loss is the softmax cross-entropy of the true logit against the sampled
logits, each corrected by subtracting log(expected count), with accidental hits (a sampled id
equal to the row's label) removed. Sampling happens in numpy once per batch.
"""
import numpy as np
import pytensor.tensor as pt

from recsys_core.softmax import cross_entropy


def log_uniform_prob(ids, vocab_size):
    ids = np.asarray(ids, dtype=np.float64)
    return np.log((ids + 2.0) / (ids + 1.0)) / np.log(vocab_size + 1.0)


def sample_unique_log_uniform(rng, n, vocab_size):
    """(ids, tries): ``n`` distinct ids in draw order and how many draws it took."""
    if n >= vocab_size:
        return np.arange(vocab_size), vocab_size
    seen = np.zeros(vocab_size, dtype=bool)
    found, tries = [], 0
    log_range = np.log(vocab_size + 1.0)
    chunk = max(4 * n, 1024)
    while len(found) < n:
        draws = np.minimum((np.exp(rng.random(chunk) * log_range) - 1).astype(np.int64), vocab_size - 1)
        uniq, first = np.unique(draws, return_index=True)
        order = np.argsort(first)
        uniq, first = uniq[order], first[order]
        fresh = ~seen[uniq]
        uniq, first = uniq[fresh], first[fresh]
        need = n - len(found)
        if len(uniq) >= need:
            found.extend(uniq[:need])
            tries += int(first[need - 1]) + 1
            break
        found.extend(uniq)
        seen[uniq] = True
        tries += chunk
    return np.asarray(found, dtype=np.int64), tries


def expected_counts(ids, tries, n, vocab_size):
    p = log_uniform_prob(ids, vocab_size)
    if tries == n:
        return p * tries
    return -np.expm1(tries * np.log1p(-p))


def draw(rng, labels, n, vocab_size):
    """Numeric inputs of :func:`sampled_softmax_loss` for one batch of labels (any shape)."""
    ids, tries = sample_unique_log_uniform(rng, n, vocab_size)
    true_logq = np.log(expected_counts(labels, tries, n, vocab_size)).astype('float32')
    sampled_logq = np.log(expected_counts(ids, tries, n, vocab_size)).astype('float32')
    return ids.astype(np.int32), true_logq, sampled_logq


def sampled_softmax_loss(h, labels, W, b, sampled, true_logq, sampled_logq, mask=None):
    """Mean sampled-softmax loss. h: (N, C), labels/true_logq: (N,), W: (V, C), b: (V,), sampled: (S,);
    ``mask`` (N,): 1 = the row counts in the mean (None: every row)."""
    true_logit = (h * W[labels]).sum(axis=1) + b[labels] - true_logq
    sampled_logits = pt.dot(h, W[sampled].T) + b[sampled] - sampled_logq
    hits = pt.eq(labels[:, None], sampled[None, :])
    sampled_logits = pt.switch(hits, np.float32(-1e30), sampled_logits)  # accidental hits removed, as TF does
    logits = pt.concatenate([true_logit[:, None], sampled_logits], axis=1)  # the true class is column 0
    return cross_entropy(logits, pt.zeros_like(labels), mask)
