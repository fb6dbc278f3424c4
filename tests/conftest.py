"""Session fixtures: a real Apache Kafka for the whole test session.

Where the cluster comes from, in order:

1. ``CRB_KAFKA_BOOTSTRAP=host:port`` — an existing cluster (used as is, never stopped);
2. ``CRB_KAFKA=docker`` — testcontainers with the official ``apache/kafka`` image at
   the version the pom pins (needs a Docker engine; refused with a clear error if none);
3. otherwise the project's own launcher starts genuine Kafka from Maven Central's jars
   on free loopback ports, once per session, and stops it at the end.

The launcher's cluster is secured (SASL SCRAM-SHA-512, ACLs, deny by default):
``KafkaEndpoint.settings`` logs in as its provisioning admin, and every raw client a
test builds gets the same login (``tests._kafka.kafka_kwargs``). An
existing cluster's admin login comes from ``CRB_KAFKA__*`` variables.

Every test gets unique topic and group names (``names``); when a test that used
Kafka fails, the tail of the broker log is attached to its report.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from adapters.kafka import KafkaSettings
from broker.dev.kafka_local import LocalKafka, kafka_version
from broker.settings import Settings
from tests._kafka import register_login


@dataclass
class KafkaEndpoint:
    """A running cluster the tests may use; ``settings`` log in as its admin."""

    settings: KafkaSettings
    launcher: LocalKafka | None = None
    _docker: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        register_login(self.settings)

    @property
    def bootstrap(self) -> str:
        return self.settings.bootstrap

    @property
    def secured(self) -> bool:
        return self.settings.sasl_mechanism is not None

    def log_tail(self, lines: int = 60) -> str:
        if self.launcher is None:
            return "(broker log not available: cluster not started by this session)"
        return self.launcher.log_tail(None, lines)


def _start_docker() -> KafkaEndpoint:
    try:
        from testcontainers.kafka import KafkaContainer
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise pytest.UsageError("CRB_KAFKA=docker needs `pip install .[docker]`") from exc
    container = KafkaContainer(image=f"apache/kafka:{kafka_version()}").with_kraft()
    try:
        container.start()
    except Exception as exc:  # pragma: no cover - depends on the machine
        raise pytest.UsageError(f"CRB_KAFKA=docker but no usable Docker engine: {exc}") from exc
    settings = KafkaSettings(bootstrap=container.get_bootstrap_server())
    return KafkaEndpoint(settings=settings, _docker=container)


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaEndpoint]:
    """One real Kafka for the whole session (see the module docstring)."""
    if bootstrap := os.environ.get("CRB_KAFKA_BOOTSTRAP"):
        external = Settings().kafka.model_copy(update={"bootstrap": bootstrap})
        yield KafkaEndpoint(settings=external)
        return
    if os.environ.get("CRB_KAFKA") == "docker":
        endpoint = _start_docker()
        yield endpoint
        endpoint._docker.stop()
        return
    yield from _launched(tmp_path_factory, 1)


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaEndpoint]:
    """Three real brokers on loopback (replication 3, min.insync.replicas 2)."""
    yield from _launched(tmp_path_factory, 3)


def _launched(factory: pytest.TempPathFactory, nodes: int) -> Iterator[KafkaEndpoint]:
    launcher = LocalKafka(factory.mktemp(f"kafka-{nodes}"))
    launcher.up(nodes=nodes)
    try:
        yield KafkaEndpoint(settings=launcher.settings(), launcher=launcher)
    finally:
        launcher.destroy()


@dataclass(frozen=True)
class Names:
    """Unique names for one test, so tests never see each other's records."""

    prefix: str

    def topic(self, label: str = "t") -> str:
        return f"{self.prefix}.{label}"

    def group(self, label: str = "g") -> str:
        return f"{self.prefix}.{label}"


@pytest.fixture
def names(request: pytest.FixtureRequest) -> Names:
    base = request.node.name.replace("[", "-").replace("]", "")[:40]
    return Names(prefix=f"test.{base}.{uuid.uuid4().hex[:8]}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and call.when in ("call", "setup"):
        for fixture_name in ("kafka", "kafka_cluster"):
            funcargs: dict[str, object] = getattr(item, "funcargs", {})
            endpoint = funcargs.get(fixture_name)
            if isinstance(endpoint, KafkaEndpoint):
                report.sections.append((f"broker log ({fixture_name})", endpoint.log_tail()))
    return report


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


TopicFactory = Callable[..., str]
