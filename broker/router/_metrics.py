"""Router counters in Prometheus text format (a registry of its own, no globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import start_http_server

__all__ = ["RouterMetrics"]


class RouterMetrics:
    """The router's Prometheus counters, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.forwarded = Counter(
            "crb_router_forwarded", "Envelopes forwarded", registry=self.registry
        )
        self.deliveries = Counter(
            "crb_router_deliveries",
            "Inbox records written, per recipient",
            ["recipient"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "crb_router_rejected",
            "Records dead-lettered, per reason",
            ["reason"],
            registry=self.registry,
        )
        self.transaction_failures = Counter(
            "crb_router_transaction_failures",
            "Transactions aborted and retried",
            registry=self.registry,
        )
        self.latency = Histogram(
            "crb_router_latency_seconds",
            "Outbox append to committed forward",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))

    def serve(self, host: str, port: int) -> None:
        """Expose ``/metrics`` on host:port (a daemon thread)."""
        start_http_server(port, addr=host, registry=self.registry)
