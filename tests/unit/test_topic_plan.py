"""What ``crb topics apply`` creates: replication follows the cluster unless set."""

from __future__ import annotations

import pytest

from adapters.kafka import TopicSettings
from broker import topics
from tests._fed import LiveFederation


@pytest.mark.parametrize(
    ("brokers", "replication", "min_isr"),
    [(1, 1, None), (2, 2, None), (3, 3, "2"), (5, 3, "2")],
)
def test_by_default_every_topic_has_as_many_replicas_as_brokers_up_to_three(
    brokers: int, replication: int, min_isr: str | None
) -> None:
    """A three-broker cluster gets replication 3 and min ISR 2 without being told:
    a broker lost takes no partition offline and no acknowledged write."""
    specs = topics.plan(LiveFederation().directory(), TopicSettings(), brokers=brokers)
    assert len(specs) == 2 * 6 + 6
    assert {s.replication for s in specs} == {replication}
    assert {s.config.get("min.insync.replicas") for s in specs} == {min_isr}


def test_what_is_set_wins_over_the_cluster() -> None:
    settings = TopicSettings(replication=2, min_insync_replicas=1)
    specs = topics.plan(LiveFederation().directory(), settings, brokers=3)
    assert {s.replication for s in specs} == {2}
    assert {s.config["min.insync.replicas"] for s in specs} == {"1"}


def test_without_the_cluster_the_replication_is_left_open() -> None:
    """``crb topics plan`` needs no Kafka: it says how replication will be chosen."""
    specs = topics.plan(LiveFederation().directory(), TopicSettings())
    assert {s.replication for s in specs} == {None}
    assert all("min.insync.replicas" not in s.config for s in specs)
