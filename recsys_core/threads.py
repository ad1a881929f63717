"""How many OpenMP threads a training loop uses, re-chosen while it runs (issue 16).

Every parallel loop of a training step (the GEMM wrapper, gpu_ops/c/parallel_gemm.cpp, and the
custom Ops) runs on libgomp's thread pool, whose size is the calling thread's
``omp_get_max_threads()``. On a machine shared with another CPU-bound process that is the wrong
size: the pool's threads wait for each other at every loop's end while the scheduler hands their
cores to the other process. Measured on the 2-core VM (GRU4Rec, layers 96, momentum, n_sample
2048; benchmarks/contention.py): 2 threads ran 950 mb/s alone and 340 beside one busy process
(20-29 in another session's run), 1 thread 690 alone and 590 beside it. OMP_WAIT_POLICY=PASSIVE
kept 610 under contention but cost a third of the uncontended speed (threads sleep and are woken
at every loop), and a shorter spin (GOMP_SPINCOUNT=10000) was worse under contention than the
default. No fixed setting is best in both conditions, so :class:`ThreadTuner` measures: now and
then (often at first, every 4 s once settled) it runs a few steps with a neighbouring thread count
and keeps whichever ran faster.
libgomp's waiting policy is left as it is (its default, or the user's OMP_WAIT_POLICY / GOMP_SPINCOUNT).

Switching does not change what is computed: the GEMM wrapper splits outputs, not sums, and the Ops
sum in a fixed order; the golden tests give the same numbers with OMP_NUM_THREADS=1 and 2.

``RECSYS_THREAD_TUNING=0`` turns the tuner off (the pool keeps OMP_NUM_THREADS, or one thread per
core). The tuner never uses more threads than the pool had when training started.
"""
import ctypes
import ctypes.util
import os
import time

_LIBGOMP = []


def _libgomp():
    """libgomp's handle (the one the compiled Ops and the GEMM wrapper use), or None."""
    if not _LIBGOMP:
        lib = None
        for name in ('libgomp.so.1', ctypes.util.find_library('gomp')):
            if not name:
                continue
            try:
                lib = ctypes.CDLL(name)
                lib.omp_get_max_threads.restype = ctypes.c_int
                lib.omp_set_num_threads.argtypes = [ctypes.c_int]
                break
            except (OSError, AttributeError):
                lib = None
        _LIBGOMP.append(lib)
    return _LIBGOMP[0]


def openmp_threads():
    """The thread count the next parallel loop started from this thread will use (None without libgomp)."""
    lib = _libgomp()
    return lib.omp_get_max_threads() if lib is not None else None


def set_openmp_threads(n):
    """Set the thread count of parallel loops started from this thread (no-op without libgomp)."""
    lib = _libgomp()
    if lib is not None:
        lib.omp_set_num_threads(int(n))


def tuning_enabled():
    return os.environ.get('RECSYS_THREAD_TUNING', '1') not in ('0', 'false', 'False', 'no')


def ladder(most):
    """Thread counts the tuner moves between: most, most/2, ..., 1 (each a neighbour of the next)."""
    counts = [most]
    while counts[-1] > 1:
        counts.append(max(1, counts[-1] // 2))
    return counts


class ThreadTuner:
    """Call :meth:`tick` after every training step; the thread count follows the faster setting.

    Phases alternate: a measuring phase on the current count, then a probe of at least
    ``probe_steps`` steps and ``probe_seconds`` seconds on a neighbouring count (one rung up or down
    the ladder, alternating). The probe's steps per second against the measuring phase's decide: the
    neighbour is kept when it was faster by ``margin``. A measuring phase lasts ``period`` seconds,
    which starts at ``min_period``, doubles after every probe that keeps the count (up to
    ``max_period``) and starts over after a switch, so a wrong start is left within a second and a
    settled count is probed rarely; it also lasts long enough that probes take at most
    ``probe_share`` of the time (models whose steps take a large part of a second). A wrong
    choice is undone at the next probe. The first ``warmup`` steps are not timed.

    Used as a context manager around a training loop: leaving it gives the pool back its starting
    size. ``clock`` and ``set_threads`` are injectable for tests; by default time.perf_counter and
    libgomp. Off where the GEMMs do not run on OpenMP (RECSYS_PARALLEL_GEMM=0, a system OpenBLAS).
    """

    def __init__(self, min_period=0.25, max_period=4.0, probe_steps=3, probe_seconds=0.05, probe_share=0.05,
                 margin=1.05, warmup=3, clock=time.perf_counter, set_threads=None, start_threads=None, enabled=None):
        self.start = start_threads if start_threads is not None else openmp_threads()
        if enabled is None:  # only the wrapper's and the Ops' OpenMP loops follow omp_set_num_threads
            import recsys_core
            enabled = tuning_enabled() and recsys_core.parallel_ops()
        self.enabled = enabled and bool(self.start) and self.start > 1
        self.counts = ladder(self.start) if self.enabled else [self.start]
        self.min_period, self.max_period = min_period, max_period
        self.probe_steps, self.probe_seconds, self.probe_share = probe_steps, probe_seconds, probe_share
        self.margin, self.warmup = margin, warmup
        self.clock = clock
        self._set = set_threads if set_threads is not None else set_openmp_threads
        self.current = 0  # index into counts
        self._probe_down = True
        self._phase, self._candidate = 'measure', None
        self._steps, self._t0, self._seen = 0, None, 0
        self._period, self._last_probe = min_period, 0.0
        self._measured_rate = None

    @property
    def threads(self):
        return self.counts[self.current]

    def tick(self):
        """One training step has finished."""
        if not self.enabled:
            return
        self._seen += 1
        now = self.clock()
        if self._seen <= self.warmup or self._t0 is None:
            self._t0, self._steps = now, 0
            return
        self._steps += 1
        elapsed = now - self._t0
        if self._phase == 'measure':
            long_enough = max(self._period, self._last_probe / self.probe_share)
            if elapsed >= long_enough and self._steps >= self.probe_steps:
                self._measured_rate = self._steps / elapsed
                self._start_probe(now)
        elif self._steps >= self.probe_steps and elapsed >= self.probe_seconds:
            rate = self._steps / elapsed
            self._last_probe = elapsed
            if rate > self._measured_rate * self.margin:
                self.current = self._candidate
                self._period = self.min_period
            else:
                self._set(self.threads)
                self._period = min(2 * self._period, self.max_period)
            self._phase, self._t0, self._steps = 'measure', now, 0

    def _start_probe(self, now):
        down, up = self.current + 1, self.current - 1
        options = [i for i in ((down, up) if self._probe_down else (up, down)) if 0 <= i < len(self.counts)]
        self._probe_down = not self._probe_down
        self._candidate = options[0]
        self._set(self.counts[self._candidate])
        self._phase, self._t0, self._steps = 'probe', now, 0

    def finish(self):
        """Give the pool back its starting size (evaluation and later loops start from it)."""
        if self.enabled:
            self._set(self.start)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.finish()
        return False
