"""The KV block manager of one LLM engine: a pool of fixed-size blocks that sequences take and give back
(vLLM's paged accounting), behind one interface the engines use: allocate, grow, append a block, free (on finish
or preemption), reserve (a sequence arriving with its KV already computed), the free/used/evictable counts and
`cached_prefix`, the query a prefix cache answers (a cache of no prefixes here: 0 tokens)."""
from __future__ import annotations

from typing import Sequence


class KvCache:
    """`blocks` blocks of `block_size` tokens; `held[sid]` is the blocks sequence sid holds (the fleet's request
    table's list, shared by the engines of a fleet: a sequence is at one engine at a time).

    The continuous-batching engine reads `free` directly and, inside a run of decode steps, appends blocks inline
    (labelled there); everything else goes through the methods."""

    __slots__ = ("blocks", "block_size", "free", "held")

    def __init__(self, blocks: int, block_size: int, held: list | None = None):
        self.blocks = int(blocks)
        self.block_size = int(block_size)
        self.free = int(blocks)
        self.held = held if held is not None else []

    # ---- counts ----
    @property
    def capacity_tokens(self) -> int:
        """Returns the cache's size in tokens (whole blocks)."""
        return self.blocks * self.block_size

    @property
    def used_tokens(self) -> int:
        """Returns the tokens held by allocated blocks."""
        return (self.blocks - self.free) * self.block_size

    @property
    def used(self) -> int:
        """Returns the blocks allocated to running sequences."""
        return self.blocks - self.free

    @property
    def evictable(self) -> int:
        """Returns the blocks a new sequence could take by evicting cached, unreferenced ones (none: no prefix
        cache)."""
        return 0

    @property
    def use(self) -> float:
        """Returns the fraction of blocks allocated, 0..1."""
        return (self.blocks - self.free) / self.blocks

    def blocks_for(self, tokens: int) -> int:
        """Returns the blocks `tokens` tokens occupy (rounded up)."""
        return -(-tokens // self.block_size)

    # ---- sequences ----
    def cached_prefix(self, block_hashes: Sequence) -> int:
        """Returns how many leading tokens of a sequence whose full blocks hash to `block_hashes` are already in
        the cache, computed (a prefix cache's hit; 0 without one). Pure: it changes nothing."""
        return 0

    def grow(self, sid: int, tokens: int) -> bool:
        """Gives sequence sid the blocks to hold `tokens` tokens in all (allocation on admission, then prefill
        chunks); returns False, changing nothing, when too few blocks are free."""
        need = -(-tokens // self.block_size) - self.held[sid]
        if need > self.free:
            return False
        if need > 0:
            self.free -= need
            self.held[sid] += need
        return True

    def reserve(self, sid: int, tokens: int) -> bool:
        """Reserves the blocks of a sequence arriving with `tokens` tokens of KV already computed (a handed-over
        prefill); returns False when they are not free (the sender must wait)."""
        return self.grow(sid, tokens)

    def append(self, sids: list) -> None:
        """Gives each of `sids` one more block (decode steps crossing a block boundary; the caller made room)."""
        held = self.held
        for sid in sids:
            held[sid] += 1
        self.free -= len(sids)

    def release(self, sid: int) -> None:
        """Frees every block of sequence sid (finished, or preempted: vLLM recomputes it later)."""
        self.free += self.held[sid]
        self.held[sid] = 0
