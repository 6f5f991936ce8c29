"""Outstanding requests per replica, kept exact by the replicas (`inc` on arrival, `dec` on completion)."""
from __future__ import annotations

from bisect import insort


class Counts:
    """Per-replica outstanding request counts; routers read `n`. In an autoscaled pool, `members` lists the
    replicas taking new work (sorted), kept by `park` (released, draining or starting) and `unpark` (serving)."""

    def __init__(self, replicas: int):
        self.n = [0] * replicas
        self.members = list(range(replicas))

    def park(self, i: int) -> None:
        """Replica i takes no new work: routers no longer see it (its counts are still kept)."""
        if i in self.members:
            self.members.remove(i)

    def unpark(self, i: int) -> None:
        """Replica i takes new work again."""
        if i not in self.members:
            insort(self.members, i)

    def inc(self, i: int) -> None:
        self.n[i] += 1

    def dec(self, i: int, k: int = 1) -> None:
        self.n[i] -= k


class BucketCounts(Counts):
    """Counts that also keep the replicas grouped by count, so the least loaded replica, uniformly at random
    among ties, is found in O(1) (join_shortest_queue's hot path) instead of a scan of every replica."""

    def __init__(self, replicas: int):
        super().__init__(replicas)
        self.buckets: list[list[int]] = [list(range(replicas))]  # buckets[v]: replicas with v outstanding
        self.pos = list(range(replicas))                          # each replica's index in its bucket
        self.low = 0                                              # the smallest count held by any replica
        self.parked = [False] * replicas  # out of the buckets, count still kept (PoolBucketCounts parks)

    # hot path: the bucket move is inlined in inc and dec (one call per arrival and per completion)
    def inc(self, i: int) -> None:
        n, buckets, pos = self.n, self.buckets, self.pos
        if self.parked[i]:
            n[i] += 1
            return
        v = n[i]
        n[i] = v + 1
        b = buckets[v]
        last = b.pop()
        if last != i:
            p = pos[i]
            b[p] = last
            pos[last] = p
        if v + 1 == len(buckets):
            buckets.append([])
        nb = buckets[v + 1]
        pos[i] = len(nb)
        nb.append(i)
        if v == self.low and not b:
            self.low = v + 1

    def dec(self, i: int, k: int = 1) -> None:
        if k == 0:
            return
        v = self.n[i]
        w = self.n[i] = v - k
        if self.parked[i]:
            return
        buckets, pos = self.buckets, self.pos  # _move, inlined
        b = buckets[v]
        last = b.pop()
        if last != i:
            p = pos[i]
            b[p] = last
            pos[last] = p
        nb = buckets[w]
        pos[i] = len(nb)
        nb.append(i)
        if w < self.low:
            self.low = w

    def least(self, uniforms) -> int:
        """Returns a replica with the fewest outstanding requests, uniformly at random among the tied ones
        (one draw from `uniforms`, a routers.base.Uniforms, only when there is a tie)."""
        b = self.buckets[self.low]
        return b[int(uniforms.next() * len(b))] if len(b) > 1 else b[0]


class PoolBucketCounts(BucketCounts):
    """BucketCounts for an autoscaled pool: a parked replica leaves the buckets (join_shortest_queue no longer
    sees it) while its count is still kept; with every replica a member it is BucketCounts, draw for draw."""

    def park(self, i: int) -> None:
        if self.parked[i]:
            return
        super().park(i)
        b, pos = self.buckets[self.n[i]], self.pos
        last = b.pop()
        if last != i:
            p = pos[i]
            b[p] = last
            pos[last] = p
        self.parked[i] = True
        if self.members:  # the least count may have left with it
            while not self.buckets[self.low]:
                self.low += 1

    def unpark(self, i: int) -> None:
        if not self.parked[i]:
            return
        super().unpark(i)
        self.parked[i] = False
        v = self.n[i]
        while v >= len(self.buckets):
            self.buckets.append([])
        nb = self.buckets[v]
        self.pos[i] = len(nb)
        nb.append(i)
        if len(self.members) == 1 or v < self.low:
            self.low = v
