"""A paged KV cache: a pool of fixed-size blocks that sequences take and give back (vLLM's accounting)."""
from __future__ import annotations


class KvCache:
    """Counts free blocks of `block_size` tokens out of `blocks`.

    The continuous-batching replica reads and writes `free` directly on its hot path (one attribute per
    step instead of a method call per sequence); the methods are for everything else."""

    __slots__ = ("blocks", "block_size", "free")

    def __init__(self, blocks: int, block_size: int):
        self.blocks = int(blocks)
        self.block_size = int(block_size)
        self.free = int(blocks)

    @property
    def capacity_tokens(self) -> int:
        """Returns the cache's size in tokens (whole blocks)."""
        return self.blocks * self.block_size

    @property
    def used_tokens(self) -> int:
        """Returns the tokens held by allocated blocks."""
        return (self.blocks - self.free) * self.block_size

    @property
    def use(self) -> float:
        """Returns the fraction of blocks allocated, 0..1."""
        return (self.blocks - self.free) / self.blocks

    def blocks_for(self, tokens: int) -> int:
        """Returns the blocks `tokens` tokens occupy (rounded up)."""
        return -(-tokens // self.block_size)
