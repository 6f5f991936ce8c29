"""Sink metrics, registered by name (the YAML key `outputs.metrics[].metric`): statistics of the measured requests
that a user adds to summary.json (`metrics.<name>`), fed block by block the same way in records and streaming runs.

A metric is a frozen model (its fields are its YAML keys) that starts one mutable accumulator per replication
(`start`), which takes blocks of measured, finished requests in arrival order (`RequestBlock`), and pools the
replications' accumulators into JSON-able values (`summarize`). docs/extending.md adds one in a file of your own.
"""
from ..registry import Registry

REGISTRY = Registry("sink metric", "metric")

from .base import RequestBlock, SinkMetric, feed, section  # noqa: E402
from .latency_histogram import LatencyHistogram  # noqa: E402

__all__ = ["REGISTRY", "LatencyHistogram", "RequestBlock", "SinkMetric", "feed", "section"]
