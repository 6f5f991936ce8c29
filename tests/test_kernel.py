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


def test_an_arrival_comes_after_completions_and_before_starts_at_its_instant():
    log = []
    k = Kernel([Recorder(0, log), Recorder(1, log)])
    k.push((2.0, START, 0))
    k.push((2.0, DONE, 1))
    k.push((1.0, START, 1))
    assert k.due_before(2.0)
    k.run_until(2.0)
    assert log == [(1.0, "start", 1), (2.0, "done", 1)]  # the completion at 2.0 runs before the arrival at 2.0
    assert not k.due_before(2.0) and k.due_before(2.0 + 1e-9)
    k.run_until(3.0)
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


def test_processes_run_on_the_same_kernel_as_handlers():
    log = []
    k = Kernel([Recorder(0, log)])

    def proc(env):
        yield env.timeout(1.5)
        log.append((env.now, "process", None))
    k.process(proc(k))
    k.push((1.0, START, 0))
    k.push((2.0, START, 0))
    k.drain()
    assert log == [(1.0, "start", 0), (1.5, "process", None), (2.0, "start", 0)]
    assert isinstance(k, simpy.Environment)
