"""The kernel (sim.kernel): SimPy's Environment firing handlers' events, with the same-instant order defined once
(kind, then handler index), arrivals handed in between events, and exact instants (ties stay ties)."""
import simpy

from sim.kernel import DONE, START, Kernel


class Recorder:
    """A handler that logs its events and, on a START, schedules its DONE `step_s` later."""

    def __init__(self, index, log, step_s=None):
        self.index, self.log, self.step_s = index, log, step_s

    def on_event(self, t, kind, push):
        self.log.append((t, "done" if kind == DONE else "start", self.index))
        if kind == START and self.step_s is not None:
            push((t + self.step_s, DONE, self.index))


def test_same_instant_order_is_kind_then_handler_whatever_the_push_order():
    log = []
    k = Kernel([Recorder(i, log) for i in range(3)])
    for item in [(1.0, START, 2), (1.0, DONE, 1), (1.0, START, 0), (0.5, START, 1), (1.0, DONE, 2), (1.0, DONE, 0)]:
        k.push(item)
    k.drain()
    assert log == [(0.5, "start", 1), (1.0, "done", 0), (1.0, "done", 1), (1.0, "done", 2),
                   (1.0, "start", 0), (1.0, "start", 2)]
    assert k.now == 1.0 and not k.queue


def due_before(k, a):
    """What the fleet loops ask before handing in an arrival at a: whether an event runs first."""
    return bool(k.queue) and k.queue[0] < (a, k.arrival)


def run_until(k, a):
    """What the fleet loops do before handing in an arrival at a (sim.fleet.fleet.run_open)."""
    while due_before(k, a):
        k.step()


def test_an_arrival_comes_after_completions_and_before_starts_at_its_instant():
    log = []
    k = Kernel([Recorder(0, log), Recorder(1, log)])
    k.push((2.0, START, 0))
    k.push((2.0, DONE, 1))
    k.push((1.0, START, 1))
    assert due_before(k, 2.0)
    run_until(k, 2.0)
    assert log == [(1.0, "start", 1), (2.0, "done", 1)]  # the completion at 2.0 runs before the arrival at 2.0
    assert not due_before(k, 2.0) and due_before(k, 2.0 + 1e-9)
    run_until(k, 3.0)
    assert log[-1] == (2.0, "start", 0)


def test_instants_are_exact_so_ties_pushed_at_different_times_stay_ties():
    now, t = 9.391491627785106, 28.174856087593003
    assert now + (t - now) > t  # SimPy's schedule(delay=t - now) would put this event after an exact t

    class Later:
        """At `now` it schedules its completion at exactly t, as a replica computes start + step."""
        index = 0

        def on_event(self, at, kind, push):
            log.append((at, kind, 0))
            if kind == START:
                push((t, DONE, 0))
    log = []
    k = Kernel([Later(), Recorder(1, log)])
    k.push((t, DONE, 1))  # pushed at 0, for the same instant
    k.push((now, START, 0))
    k.drain()
    # a tie: handler 0 before handler 1, at exactly t, whenever each was pushed
    assert log == [(now, START, 0), (t, DONE, 0), (t, "done", 1)]
    assert k.now == t


def test_a_kernel_without_handlers_hosts_simpy_processes():
    # processes use SimPy's own priorities (0, 1), which would share handler slots 0 and 1: a kernel hosts handlers
    # or processes, and the one engine with processes (sim.fleet.scaling.simulate_autoscaled) has no handlers
    log = []
    k = Kernel([])

    def proc(env, name, gap_s):
        for _ in range(2):
            yield env.timeout(gap_s)
            log.append((env.now, name))
    k.process(proc(k, "a", 1.5))
    k.process(proc(k, "b", 1.0))
    k.drain()
    assert log == [(1.0, "b"), (1.5, "a"), (2.0, "b"), (3.0, "a")]
    assert isinstance(k, simpy.Environment)


def test_the_shared_queue_engine_breaks_a_tie_of_free_replicas_by_index_not_by_when_they_were_scheduled():
    """An old-loop difference, on purpose: the shared-queue engine's replicas were SimPy processes, so two replicas
    freeing at the same instant claimed in the order their timeouts were scheduled. On the kernel the order is
    defined once, by index. Here the slow replica 1 scheduled its end (at 2 s) at 0 s, the fast replica 0 its own
    (also at 2 s) at 1 s: the request at 1.5 s now goes to replica 0 (done at 3 s; it went to replica 1, done at
    4 s, before)."""
    import numpy as np

    import sim
    from sim.engine import simulate_shared

    rule = sim.NoBatching().rule(1)
    fast = sim.AffineCost(base_ms=1000.0, per_item_ms=0.0, max_batch_size=1)
    slow = sim.AffineCost(base_ms=2000.0, per_item_ms=0.0, max_batch_size=1)
    log = simulate_shared([(rule, fast), (rule, slow)], np.array([0.0, 0.0, 1.0, 1.5]))
    assert log.replica.tolist() == [0, 1, 0, 0]
    assert log.dispatch_s.tolist() == [0.0, 0.0, 1.0, 2.0] and log.completion_s.tolist() == [1.0, 2.0, 2.0, 3.0]
