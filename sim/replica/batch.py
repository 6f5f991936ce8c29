"""A request-level batching replica with its own queue (one Triton model instance behind a router)."""
from __future__ import annotations

from typing import Callable, Optional

from ..batching import DispatchRule
from ..cost import CostModel
from .queued import QueuedReplica


class BatchReplica(QueuedReplica):
    """Runs batches whose step time is the cost model's table entry for the batch size, times the
    replica's own jitter draw (one stream per replica, so replicas are independent)."""

    kind = "batch"

    def __init__(self, index: int, rule: DispatchRule, cost: CostModel, out: list,
                 jitter: Optional[Callable[[int], float]] = None, max_queue: Optional[int] = None,
                 timeout_s: Optional[float] = None):
        super().__init__(index, rule, out, max_queue, timeout_s)
        self.table = cost.step_table_s(rule.max_batch_size).tolist()
        self.jitter = jitter
        self.steps: list[float] = []
        self._busy_sum, self._busy_seen = 0.0, 0
        self._busy_read = False  # an autoscaler reads busy_s: a stream keeps the steps it has not summed yet

    def busy_s(self, t: float) -> float:
        """Returns the busy seconds so far (a batch's step counted when it starts; summed incrementally)."""
        self._busy_read = True
        steps = self.steps
        if len(steps) > self._busy_seen:
            self._busy_sum += sum(steps[self._busy_seen:])
            self._busy_seen = len(steps)
        return self._busy_sum

    def _forget_dispatched(self) -> None:
        super()._forget_dispatched()
        if not self._busy_read:  # nothing reads them (a fixed fleet): the harvest handed over their batches
            self.steps.clear()
            return
        # busy_s has summed these (the rest is summed as before: the same additions in the same order)
        del self.steps[:self._busy_seen]
        self._busy_seen = 0

    def run_batch(self, t: float, head: int, k: int) -> tuple[int, float]:
        step = self.table[k]
        if self.jitter is not None:
            step *= self.jitter(k)
        self.steps.append(step)
        return k, t + step
