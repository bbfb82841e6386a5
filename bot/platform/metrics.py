"""Prometheus metrics for one bot process, on a registry of their own (no global state). With several workers
(`chatops serve --workers N`, bot/platform/metrics_dir.py) /metrics, whichever worker answers it, adds up every
worker's values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bot.platform.metrics_dir import shared_dir

_ACK_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 3.0, 5.0)


@dataclass
class Metrics:
    """The counters and histograms the bot exports at /metrics."""

    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))

    def __post_init__(self) -> None:
        self.requests = Counter(
            "chatops_requests",
            "Slack requests handled, by command and outcome.",
            ["command", "outcome"],
            registry=self.registry,
        )
        self.ack_latency = Histogram(
            "chatops_ack_latency_seconds",
            "Time from receiving a Slack request to answering it.",
            ["kind"],
            buckets=_ACK_BUCKETS,
            registry=self.registry,
        )
        self.slack_calls = Counter(
            "chatops_slack_api_calls",
            "Slack Web API calls made, by method.",
            ["method"],
            registry=self.registry,
        )
        self.slack_errors = Counter(
            "chatops_slack_api_errors",
            "Slack Web API calls that failed, by method and error.",
            ["method", "error"],
            registry=self.registry,
        )
        self.redis_errors = Counter(
            "chatops_redis_errors",
            "Redis operations that failed, by operation.",
            ["operation"],
            registry=self.registry,
        )
        self.redis_write_conflicts = Counter(
            "chatops_redis_write_conflicts",
            "Optimistic read-modify-writes retried because another writer changed the record first, by what.",
            ["what"],
            registry=self.registry,
        )
        self.alerts_dead_lettered = Counter(
            "chatops_alert_entries_dead_lettered",
            "Alert stream entries moved to the dead-letter stream, by reason.",
            ["reason"],
            registry=self.registry,
        )

        self.loop_last_success = Gauge(
            "chatops_loop_last_success_timestamp_seconds",
            "Unix time of the last iteration each background loop completed.",
            ["loop"],
            registry=self.registry,
            multiprocess_mode="liveall",  # with several workers: one series per live worker (a `pid` label)
        )

        # Label children by label values: `labels()` takes a lock and builds a tuple on every call, which the
        # acknowledgement path should not pay per request.
        self._children: dict[tuple[object, ...], Any] = {}

    def request_done(self, command: str, outcome: str) -> None:
        """Counts one handled Slack request."""
        key = (self.requests, command, outcome)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(command=command, outcome=outcome)
        child.inc()

    def acked(self, kind: str, seconds: float) -> None:
        """Records how long answering one Slack request of `kind` took."""
        key = (self.ack_latency, kind)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.ack_latency.labels(kind=kind)
        child.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type: this process's, or every worker's added up."""
        if shared_dir() is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client import multiprocess

        every_worker = CollectorRegistry()
        multiprocess.MultiProcessCollector(every_worker)
        return generate_latest(every_worker), CONTENT_TYPE_LATEST
