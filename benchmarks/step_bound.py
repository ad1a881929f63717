"""How close a sequence model's training step runs to its matrix products (issue 21, item 3).

For NextItNet and CpRec (FullSoftmax and Block_Input_Softmax) at the issue's sizes (C = 64,
dilations 1/4/1/4, batch 80, windows of 43, about 4,090 items), in one run and for each thread
count: the mean step time (compilation and 3 warm-up steps excluded), the FLOPs of the step's matrix
products (counted from the model's weight shapes: every GEMM forward, plus the two of its backward
pass), the GEMM rate of this machine through the same BLAS and threads (a PyTensor 1024^3 float32
product), and the ratio bound / step (1.0 = the step costs only its products at peak rate). Steps
and the GEMM rate are measured alternately (5 rounds of steps, each followed by the rate); the
table shows the median round and every round's ratio. The last two columns: the seconds the step's
own products take alone, back to back through the same BLAS (measured in every round too), and
the step's ratio to that (median of the rounds): the bound as this BLAS runs these shapes.

    python benchmarks/sequence_models_speed.py --bound [--threads 1,2] [--batches 30]

Each thread count runs in its own process (OMP_NUM_THREADS, the thread tuner off).
"""
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CASES = {
    'NextItNet': ('nextitnet', dict()),
    'NextItNet padding_loss=skip': ('nextitnet', dict(padding_loss='skip')),
    'CpRec FullSoftmax': ('cprec', dict(use_softmax_type='FullSoftmax')),
    'CpRec Block_Input_Softmax': ('cprec', dict(use_softmax_type='Block_Input_Softmax', block='auto',
                                                use_embedding_type_factor=4)),
}
COMMON = dict(dilated_channels=64, dilations=[1, 4, 1, 4], batch_size=80, max_len=43, n_epochs=2)


_GEMM = {}


def pytensor_gemm_gflops(n=1024, repeats=20):
    """GF/s of a PyTensor float32 n x n x n product (compiled once per process)."""
    if n not in _GEMM:
        import pytensor.tensor as pt
        from recsys_core.backend import compile_function
        a, b = pt.matrix('a'), pt.matrix('b')
        x, y = np.random.rand(n, n).astype('float32'), np.random.rand(n, n).astype('float32')
        _GEMM[n] = (compile_function([a, b], pt.dot(a, b)), x, y)
    f, x, y = _GEMM[n]
    f(x, y)
    t0 = time.perf_counter()
    for _ in range(repeats):
        f(x, y)
    return 2 * n ** 3 * repeats / (time.perf_counter() - t0) / 1e9


def step_gemm_shapes(model, labels):
    """The step's matrix products as (m, k, n) triples, row-major (m x k) times (k x n): each GEMM of
    the forward pass and the two of its backward pass (input and weight gradients)."""
    P = labels.size  # every position of the window: the network runs on all of them
    C, k = model.dilated_channels, model.kernel_size
    forward = [(P, k * C, C)] * (2 * len(model.dilations))  # two dilated convolutions per residual block
    if getattr(model, 'padding_loss', 'released') == 'skip':  # the output layer scores the real targets only
        labels = labels[labels != model.pad_index]
        P = labels.size
    shapes = {name: np.shape(v) for name, v in model.weights.items()}
    if getattr(model, 'block_input', False):  # each tail's up-projection runs on every position
        forward += [(P, s[0], s[1]) for n, s in shapes.items() if n.startswith('in_proj')]
    if getattr(model, 'block_output', False):  # the head on every row, tail j on the rows of its targets
        bounds, y = model.bounds, labels.ravel()
        forward.append((P, C, shapes['out_head'][1]))
        for j in range(len(bounds) - 1):
            rows = int(((y >= bounds[j]) & (y < bounds[j + 1])).sum())
            down, tail = shapes['out_down{}'.format(j + 1)], shapes['out_tail{}'.format(j + 1)]
            forward += [(rows, down[0], down[1]), (rows, tail[0], tail[1])]
    else:
        forward.append((P, C, model.n_vocab))
    backward = []
    for m, kk, n in forward:
        backward += [(m, n, kk), (kk, m, n)]  # d input = g W^T, d W = x^T g
    return [s for s in forward + backward if min(s) > 0]


def step_gemm_flops(model, labels):
    """FLOPs of one step's matrix products."""
    return sum(2 * m * k * n for m, k, n in step_gemm_shapes(model, labels))


def product_functions(shapes):
    """One compiled PyTensor product per distinct (m, k, n), with its float32 operands."""
    import pytensor.tensor as pt
    from recsys_core.backend import compile_function
    rng = np.random.default_rng(0)
    fns = {}
    for m, k, n in set(shapes):
        a, b = pt.matrix('a'), pt.matrix('b')
        fns[m, k, n] = (compile_function([a, b], pt.dot(a, b)), rng.random((m, k), dtype='float32'),
                        rng.random((k, n), dtype='float32'))
    for f, x, y in fns.values():
        f(x, y)
    return fns


def products_alone_seconds(shapes, fns, repeats=3):
    """Seconds the step's own GEMMs take back to back through PyTensor's BLAS on these threads: the
    bound a step can reach on this BLAS, below the 1024^3 rate where its shapes are thin (inner
    dimension or output 64 wide). ``fns``: :func:`product_functions` of the shapes."""
    t0 = time.perf_counter()
    for _ in range(repeats):
        for shape in shapes:
            f, x, y = fns[shape]
            f(x, y)
    return (time.perf_counter() - t0) / repeats


def interleaved(model, data, rounds, steps, labels, warmup=3):
    """Step time and GEMM rate measured alternately: ``rounds`` x (``steps`` training steps, then the
    1024^3 product, then the step's own products alone): per round the mean step time, the rate and
    the products' time measured right after it. This shared VM's speed drifts by 30% within a
    minute, so a rate measured minutes away from the steps it bounds would move the ratio more than
    any change to the step."""
    from recsys_core.model import FitRequest
    model._compiled = {}
    plan = model._training_plan(FitRequest(data, verbose=False))
    shapes = step_gemm_shapes(model, labels)  # the weights exist once the plan is made
    fns = product_functions(shapes)
    batches = iter(plan.batches(0))

    def run(n):
        t0 = time.perf_counter()
        for _ in range(n):
            try:
                xb, _ = next(batches)
            except StopIteration:
                raise SystemExit('the benchmark data has too few batches for {} rounds of {} steps'.format(rounds, steps))
            plan.step(xb)
        return (time.perf_counter() - t0) / n
    run(warmup)
    out = []
    for _ in range(rounds):
        step = run(steps)
        out.append((step, pytensor_gemm_gflops(repeats=10), products_alone_seconds(shapes, fns)))
    return out


def child(batches):
    from recsys_core import backend
    backend.configure('cpu')
    from recsys_core.cli import model_class
    from recsys_core.synthetic import generate_sessions
    data = generate_sessions(n_items=4500, n_sessions=12000, seed=3, mean_length=20, zipf=0.8)
    out = {'threads': int(os.environ.get('OMP_NUM_THREADS', '0')), 'models': []}
    rounds = 5
    for name, (package, params) in CASES.items():
        model = model_class(package)(**COMMON, **params)
        rows = model._training_rows(data, verbose=False)
        labels = rows[:model.batch_size, 1:]
        measured = interleaved(model, data, rounds, max(1, batches // rounds), labels)
        gflop = step_gemm_flops(model, labels) / 1e9
        ratios = [gflop / rate / step for step, rate, _ in measured]
        own = [alone / step for step, _, alone in measured]
        k = int(np.argsort(ratios)[len(ratios) // 2])  # the median round
        step, rate, alone = measured[k]
        out['models'].append(dict(name=name, vocabulary=int(model.n_vocab), gflop=gflop, step_s=step, gemm_gflops=rate,
                                  bound_s=gflop / rate, ratio=ratios[k], ratios=ratios, products_s=alone,
                                  products_ratio=float(np.median(own)), products_ratios=own,
                                  real_targets=float((labels != model.pad_index).mean())))
    print('RESULT ' + json.dumps(out))


def main(threads=(1, 2), batches=30):
    results = []
    for n in threads:
        env = dict(os.environ, OMP_NUM_THREADS=str(n), OPENBLAS_NUM_THREADS=str(n), RECSYS_THREAD_TUNING='0')
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), '--child', str(batches)], env=env, cwd=ROOT,
                              capture_output=True, text=True)
        line = [x for x in proc.stdout.splitlines() if x.startswith('RESULT ')]
        if proc.returncode or not line:
            sys.exit('step bound child with {} threads failed:\n{}'.format(n, proc.stderr[-3000:]))
        results.append(json.loads(line[0][7:]))
    print('{:<28} {:>7} {:>11} {:>9} {:>10} {:>10} {:>7}  {:<26} {:>10} {:>7}'.format(
        'model', 'threads', 'GEMM GF/s', 'GFLOP', 'step s', 'bound s', 'ratio', 'ratio per round', 'products s',
        'ratio'))
    for r in results:
        for m in r['models']:
            print('{:<28} {:>7} {:>11.1f} {:>9.2f} {:>10.4f} {:>10.4f} {:>6.0f}%  {:<26} {:>10.4f} {:>6.0f}%'.format(
                m['name'], r['threads'], m['gemm_gflops'], m['gflop'], m['step_s'], m['bound_s'], 100 * m['ratio'],
                ' '.join('{:.0f}%'.format(100 * x) for x in m['ratios']), m['products_s'],
                100 * m['products_ratio']))
        print('  (vocabulary {}; real targets {:.0%} of the positions)'.format(r['models'][0]['vocabulary'],
                                                                               r['models'][0]['real_targets']))
    return results


if __name__ == '__main__':
    sys.path.insert(0, ROOT)
    if len(sys.argv) > 2 and sys.argv[1] == '--child':
        child(int(sys.argv[2]))
