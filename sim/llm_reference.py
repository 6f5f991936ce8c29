"""A deliberately naive model of continuous batching: one SimPy process per request, and every engine
step visits every running sequence in Python (the way simple simulators do).

It implements the scheduling rules of `sim.llm_engine.simulate_continuous` independently and plainly,
so tests can check the fast engine against it request for request, and `bench/` can measure the speed-up.
"""
from __future__ import annotations

import math

import numpy as np
import simpy

from .batching import ContinuousBatching
from .cost import LlmCost


def naive_continuous(policy: ContinuousBatching, cost: LlmCost, arrival_s, prompt_tokens, output_tokens):
    """Returns (first_token_s, finish_s, preemptions) per request.

    Long on purpose: the naive reference model is written straight through, one SimPy event per token step and
    no shared helper with the engine it checks (sim.replica.continuous), so a bug cannot hide in both."""
    if policy.order not in ("decode_first", "prefill_first"):
        raise ValueError(f"the naive reference models decode_first and prefill_first, not {policy.order!r}")
    env = simpy.Environment()
    n = len(arrival_s)
    bs, total, budget_max = policy.block_size, policy.kv_blocks, policy.max_num_batched_tokens
    chunk = policy.chunk if policy.chunked_prefill else budget_max
    first = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    preempt = np.zeros(n, np.int64)
    seqs = [{"id": i, "prompt": int(prompt_tokens[i]), "out": int(output_tokens[i]), "gen": 0, "done": 0,
             "target": int(prompt_tokens[i]), "blocks": 0, "phase": "new", "event": None} for i in range(n)]
    waiting: list[dict] = []
    running: list[dict] = []  # admission order
    wake = {"ev": env.event()}
    free = {"blocks": total}

    def request(s, at):
        yield env.timeout(at)
        last_kv = s["prompt"] + s["out"] - 1
        if math.ceil(last_kv / bs) > total or (not policy.chunked_prefill and last_kv > budget_max):
            return  # can never run
        s["event"] = env.event()
        waiting.append(s)
        if not wake["ev"].triggered:
            wake["ev"].succeed()
        yield s["event"]

    def preempt_last():
        victim = running.pop()
        free["blocks"] += victim["blocks"]
        victim.update(blocks=0, done=0, target=victim["prompt"] + victim["gen"], phase="new")
        preempt[victim["id"]] += 1
        waiting.insert(0, victim)
        return victim

    def decode_plan():
        """Blocks for every decoder's KV this step (preempting the newest when short); returns the decoders."""
        dec = [s for s in running if s["phase"] == "decode"]
        needers = [s for s in dec if s["blocks"] * bs < s["prompt"] + s["gen"]]
        preempted = False
        while free["blocks"] < len(needers) and running:
            v = preempt_last()
            preempted = True
            if v in needers:
                needers.remove(v)
        for s in needers:
            s["blocks"] += 1
            free["blocks"] -= 1
        return [s for s in running if s["phase"] == "decode"], preempted

    def prefill_plan(budget, admit):
        tokens, pairs, chunks, completed = 0, 0.0, 0, []
        for s in [s for s in running if s["phase"] == "prefill"]:
            if budget <= 0:
                break
            c = min(s["target"] - s["done"], budget, chunk)
            grow = math.ceil((s["done"] + c) / bs) - s["blocks"]
            if grow > free["blocks"]:
                c = max(0, (s["blocks"] + free["blocks"]) * bs - s["done"])
                grow = math.ceil((s["done"] + c) / bs) - s["blocks"]
                if c <= 0:
                    continue
            free["blocks"] -= grow
            s["blocks"] += grow
            pairs += c * (s["done"] + (c + 1) / 2)
            s["done"] += c
            tokens += c
            chunks += 1
            budget -= c
            if s["done"] == s["target"]:
                completed.append(s)
        while admit and waiting and budget > 0 and len(running) < policy.max_num_seqs:
            s = waiting[0]
            c = min(s["target"], budget, chunk)
            if not policy.chunked_prefill and c < s["target"]:
                break
            grow = math.ceil(c / bs)
            if grow > free["blocks"]:
                break
            waiting.pop(0)
            s.update(done=c, blocks=grow, phase="prefill")
            free["blocks"] -= grow
            running.append(s)
            pairs += c * (c + 1) / 2
            tokens += c
            chunks += 1
            budget -= c
            if c == s["target"]:
                completed.append(s)
        return tokens, pairs, chunks, completed

    def engine():
        while True:
            if not waiting and not running:
                wake["ev"] = env.event()
                yield wake["ev"]
            dec, preempted = [], False
            if policy.order == "decode_first":
                if any(s["phase"] == "decode" for s in running):
                    dec, preempted = decode_plan()
                pre, pairs, chunks, completed = prefill_plan(budget_max - len(dec), not preempted)
            else:
                pre, pairs, chunks, completed = prefill_plan(budget_max, True)
                if not pre and any(s["phase"] == "decode" for s in running):
                    dec, preempted = decode_plan()
            if not dec and not pre:
                if any(s["phase"] == "prefill" for s in running):
                    preempt_last()  # KV full of half-done prefills
                    continue
                wake["ev"] = env.event()
                yield wake["ev"]
                continue
            ctx = sum(s["prompt"] + s["gen"] for s in dec)
            yield env.timeout(cost.iteration_s(pre, pairs, len(dec), ctx, chunks))
            for s in dec + completed:  # each produced one token this step
                s["gen"] += 1
                if math.isnan(first[s["id"]]):
                    first[s["id"]] = env.now
                if s["gen"] >= s["out"]:
                    finish[s["id"]] = env.now
                    running.remove(s)
                    free["blocks"] += s["blocks"]
                    s["phase"] = "finished"
                    s["event"].succeed()
                else:
                    s["phase"] = "decode"

    for i in range(n):
        env.process(request(seqs[i], float(arrival_s[i])))
    env.process(engine())
    env.run()
    return first, finish, preempt
