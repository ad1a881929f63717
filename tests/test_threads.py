"""ThreadTuner: the training loops' thread count follows the faster setting (simulated clock), and
the libgomp controls it uses really change the pool size."""
import pytest

from recsys_core.threads import ThreadTuner, ladder, openmp_threads, set_openmp_threads


class World:
    """A machine whose step time depends on the thread count (and on whether it is contended)."""

    def __init__(self, seconds_per_step, start=2):
        self.seconds_per_step, self.threads, self.now, self.sets = seconds_per_step, start, 0.0, []
        self.steps_at = {}

    def set_threads(self, n):
        self.threads = n
        self.sets.append(n)

    def clock(self):
        return self.now

    def run(self, tuner, steps):
        for _ in range(steps):
            self.now += self.seconds_per_step[self.threads]
            self.steps_at[self.threads] = self.steps_at.get(self.threads, 0) + 1
            tuner.tick()


def tuner_for(world, **kw):
    return ThreadTuner(clock=world.clock, set_threads=world.set_threads, start_threads=world.threads, enabled=True, **kw)


# steps per second measured on the 2-core VM (recsys_core.threads): alone, and beside a busy process
ALONE = {2: 1 / 950, 1: 1 / 690}
BUSY = {2: 1 / 340, 1: 1 / 590}


def test_uncontended_it_keeps_all_threads_and_probes_cost_little():
    w = World(ALONE)
    t = tuner_for(w)
    w.run(t, 20000)
    assert t.threads == 2 and w.threads == 2
    assert w.now < 1.01 * 20000 / 950  # the probes on one thread cost under 1% of the time
    assert 1 in w.sets  # it did probe


def test_beside_a_busy_process_it_moves_to_fewer_threads_and_back_when_the_load_ends():
    w = World(BUSY)
    t = tuner_for(w)
    w.run(t, 200)  # about 0.4 s
    assert t.threads == 1  # a contended start is left within the first half second
    w.run(t, 2800)
    assert t.threads == 1 and w.threads == 1
    assert w.now < 1.03 * (200 / 340 + 2800 / 590)  # the probes on two threads cost little
    w.seconds_per_step = ALONE
    w.run(t, 6000)
    assert t.threads == 2 and w.threads == 2
    t.finish()
    assert w.threads == 2


class NoisyWorld(World):
    """Step times with the host's jitter and, every ``every`` steps, one long step that does something
    else as well (a sample store refill, an evaluation)."""

    def __init__(self, seconds_per_step, every=700, extra=0.15, jitter=0.15, seed=0):
        super().__init__(seconds_per_step)
        import random
        self.random, self.every, self.extra, self.jitter, self.count = random.Random(seed), every, extra, jitter, 0

    def run(self, tuner, steps):
        for _ in range(steps):
            self.count += 1
            base = self.seconds_per_step[self.threads] * (1 + self.jitter * (2 * self.random.random() - 1))
            self.now += base + (self.extra if self.count % self.every == 0 else 0.0)
            self.steps_at[self.threads] = self.steps_at.get(self.threads, 0) + 1
            tuner.tick()


@pytest.mark.parametrize('seed', range(3))
def test_outlier_steps_and_jitter_do_not_move_an_idle_machine_to_fewer_threads(seed):
    """Long steps now and then (a refill, an evaluation) and 15% jitter: two threads stay, on all but
    the probes' steps, and the probes cost about 1% of the time."""
    w = NoisyWorld(ALONE, seed=seed)
    t = tuner_for(w)
    w.run(t, 30000)
    assert t.threads == 2
    assert w.steps_at.get(1, 0) < 0.02 * 30000
    w = NoisyWorld(BUSY, seed=seed)
    t = tuner_for(w)
    w.run(t, 10000)
    assert t.threads == 1 and w.steps_at[1] > 0.95 * 10000


def test_no_switch_within_the_margin_and_finish_restores_the_start():
    w = World({2: 1 / 1000, 1: 1 / 1020})  # one thread 2% faster: below the 5% margin
    t = tuner_for(w)
    w.run(t, 5000)
    assert t.threads == 2
    w = World({4: 1 / 500, 2: 1 / 900, 1: 1 / 600}, start=4)  # the best is in the middle of the ladder
    t = tuner_for(w)
    w.run(t, 8000)
    assert t.threads == 2
    t.finish()
    assert w.threads == 4


def test_slow_steps_probe_whole_steps_and_rarely():
    w = World({2: 0.5, 1: 0.2})  # half-second steps: a probe is 3 steps, not a fraction of one
    t = tuner_for(w)
    w.run(t, 40)
    assert t.threads == 1 and w.steps_at[2] >= 3 + 3
    w = World({2: 0.16, 1: 0.2})  # NextItNet-like steps, two threads best
    t = tuner_for(w)
    w.run(t, 200)
    assert t.threads == 2 and w.now < 1.02 * 200 * 0.16  # probes under 2% of the time


def test_disabled_tuner_touches_nothing(monkeypatch):
    w = World(BUSY)
    monkeypatch.setenv('RECSYS_THREAD_TUNING', '0')
    t = ThreadTuner(clock=w.clock, set_threads=w.set_threads, start_threads=2)
    w.run(t, 3000)
    t.finish()
    assert not t.enabled and w.sets == [] and t.threads == 2
    one = ThreadTuner(clock=w.clock, set_threads=w.set_threads, start_threads=1, enabled=True)
    w.run(one, 100)
    assert not one.enabled and w.sets == []


def test_ladder():
    assert ladder(8) == [8, 4, 2, 1] and ladder(6) == [6, 3, 1] and ladder(2) == [2, 1] and ladder(1) == [1]


def test_libgomp_thread_count_is_set_for_this_thread():
    start = openmp_threads()
    if start is None:
        pytest.skip('no libgomp on this machine (the tuner is off there)')
    try:
        set_openmp_threads(1)
        assert openmp_threads() == 1
        set_openmp_threads(3)
        assert openmp_threads() == 3
    finally:
        set_openmp_threads(start)
    assert openmp_threads() == start
