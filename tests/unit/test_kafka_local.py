"""The local Kafka launcher's pure parts and its one-line failures (no broker needed)."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest
import yaml

from adapters.kafka import Credential
from broker.dev.kafka_local import (
    LocalKafka,
    LocalKafkaError,
    NodeState,
    ensure_jars,
    find_java,
    kafka_version,
    node_properties,
    parse_java_major,
    write_compose_config,
)
from broker.dev.kafka_local._jars import MIN_JAVA
from tests.conftest import repo_root

BROKER = Credential.generate("crb-broker")
CONTROLLER = Credential.generate("crb-controller")


def _props(node: NodeState, nodes: list[NodeState]) -> dict[str, str]:
    return node_properties(node, nodes, broker=BROKER, controller=CONTROLLER)


def _nodes(count: int) -> list[NodeState]:
    return [
        NodeState(node_id=i + 1, client_port=9000 + i, controller_port=9100 + i, folder=f"/d/{i}")
        for i in range(count)
    ]


def test_single_node_properties_replicate_once() -> None:
    """One node: internal topics and new topics get replication 1, min ISR 1."""
    props = _props(_nodes(1)[0], _nodes(1))
    assert props["default.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["min.insync.replicas"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"


def test_three_node_properties_replicate_three_times_min_isr_two() -> None:
    """Three nodes: replication 3 and min.insync.replicas 2, a quorum of three voters."""
    nodes = _nodes(3)
    props = _props(nodes[1], nodes)
    assert props["default.replication.factor"] == "3"
    assert props["min.insync.replicas"] == "2"
    assert props["offsets.topic.replication.factor"] == "3"
    assert props["transaction.state.log.replication.factor"] == "3"
    assert props["transaction.state.log.min.isr"] == "2"
    assert props["controller.quorum.voters"] == (
        "1@127.0.0.1:9100,2@127.0.0.1:9101,3@127.0.0.1:9102"
    )
    assert props["node.id"] == "2"


def test_the_cluster_is_secured_by_default() -> None:
    """Every listener authenticates (SCRAM for clients and brokers, PLAIN for the
    controller), the authorizer denies by default, and only the cluster's own
    principals and the admin are super users; nothing is re-authenticated."""
    nodes = _nodes(3)
    props = _props(nodes[0], nodes)
    assert "PLAINTEXT:" not in props["listener.security.protocol.map"].replace("SASL_", "")
    assert props["listener.security.protocol.map"] == (
        "CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
    )
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["sasl.mechanism.controller.protocol"] == "PLAIN"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert set(props["super.users"].split(";")) == {
        "User:crb-broker",
        "User:crb-controller",
        "User:crb-admin",
    }
    assert "User:ANONYMOUS" not in props["super.users"]
    assert props["connections.max.reauth.ms"] == "0"
    # No comment at the end of a line: Kafka would read it as part of the value.
    assert all("#" not in v for v in props.values())


def test_every_listener_is_loopback() -> None:
    """The broker binds and advertises only 127.0.0.1."""
    nodes = _nodes(3)
    for node in nodes:
        props = _props(node, nodes)
        for key in ("listeners", "advertised.listeners", "controller.quorum.voters"):
            hosts = [part.split("//")[-1].split("@")[-1] for part in props[key].split(",")]
            assert all(h.startswith("127.0.0.1:") for h in hosts), props[key]


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_392"', 8),
        ('openjdk version "25" 2025-09-16', 25),
        ("no version here", None),
    ],
)
def test_java_major_version_parsing(output: str, major: int | None) -> None:
    """`java -version` output of old and new JDKs gives the right major version."""
    assert parse_java_major(output) == major


def _fake_tool(folder: Path, name: str, script: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_too_old_java_is_refused_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Java 8 on PATH gives a one-line error naming the version needed."""
    _fake_tool(tmp_path, "java", "echo 'java version \"1.8.0_392\"' >&2")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LocalKafkaError, match=rf"Java 8 .* too old.*Java {MIN_JAVA}\+"):
        find_java()


def test_missing_java_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No java anywhere: the error says to install a JDK."""
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LocalKafkaError, match="no `java` found"):
        find_java()


def test_unreachable_maven_central_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Maven that cannot reach Central yields 'Maven Central unreachable' and no jars."""
    _fake_tool(
        tmp_path,
        "mvn",
        "echo '[ERROR] Could not transfer artifact org.apache.kafka:kafka_2.13:pom: "
        "Unknown host repo.maven.apache.org'; exit 1",
    )
    monkeypatch.setenv("PATH", str(tmp_path))
    cache = tmp_path / "jars"
    with pytest.raises(LocalKafkaError, match="Maven Central unreachable"):
        ensure_jars(cache)
    assert not cache.exists()


def test_taken_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    """`up --port P` with P already listening fails at once and starts no broker."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(LocalKafkaError, match=f"port {port} is already in use"):
            LocalKafka(tmp_path).up(port=port)
    assert LocalKafka(tmp_path).nodes() == []


def test_only_one_or_three_nodes(tmp_path: Path) -> None:
    """Two nodes cannot form a useful KRaft quorum; the launcher says so."""
    with pytest.raises(LocalKafkaError, match="--nodes must be 1 or 3"):
        LocalKafka(tmp_path).up(nodes=2)


def test_down_without_a_cluster_stops_nothing(tmp_path: Path) -> None:
    """`down` on a folder with no cluster is harmless and stops nothing."""
    assert LocalKafka(tmp_path).down() == []


def test_down_never_signals_a_foreign_process(tmp_path: Path) -> None:
    """A pid in the state file that is not our broker (here: this test) is left alone."""
    launcher = LocalKafka(tmp_path)
    node = {"node_id": 1, "client_port": 1, "controller_port": 2, "folder": str(tmp_path)}
    state = {"kafka_version": "x", "cluster_id": "c", "nodes": [node | {"pid": os.getpid()}]}
    (tmp_path / "state.json").write_text(json.dumps(state))
    assert launcher.down() == []


def test_docker_compose_runs_the_pinned_kafka_version() -> None:
    """docker-compose.yml runs 3 nodes of the official image at the version pom.xml
    pins, each from its mounted crb configuration, with no secret in the file."""
    text = (repo_root() / "docker-compose.yml").read_text()
    compose = yaml.safe_load(text)
    kafka_services = {
        name: svc for name, svc in compose["services"].items() if name.startswith("kafka-")
    }
    assert len(kafka_services) == 3
    for name, svc in kafka_services.items():
        assert svc["image"] == f"apache/kafka:{kafka_version()}"
        assert [f"./.crb/docker/{name}:/etc/crb"] == svc["volumes"]
        command = " ".join(svc["command"])
        assert "format @/etc/crb/format.args" in command
        assert "kafka-server-start.sh /etc/crb/server.properties" in command
        assert all(p.startswith("127.0.0.1:") for p in svc["ports"])
    assert "password" not in text.lower()
    assert "PLAINTEXT" not in text


def test_compose_configuration_is_the_launchers_secured_one(tmp_path: Path) -> None:
    """``crb kafka compose`` writes per-node configuration with the launcher's
    security settings and container listeners; secrets 0600; it refuses to replace
    a cluster that has data unless told to reset."""
    store = write_compose_config(tmp_path)
    admin = store.load("crb-admin")
    assert admin is not None
    for n in (1, 2, 3):
        node = tmp_path / f"kafka-{n}"
        props = dict(
            line.split("=", 1) for line in (node / "server.properties").read_text().splitlines()
        )
        local = _props(_nodes(3)[n - 1], _nodes(3))
        for key in (
            "sasl.enabled.mechanisms",
            "sasl.mechanism.controller.protocol",
            "authorizer.class.name",
            "allow.everyone.if.no.acl.found",
            "super.users",
            "connections.max.reauth.ms",
            "min.insync.replicas",
        ):
            assert local[key] == props[key], key
        assert "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093" == props["controller.quorum.voters"]
        assert (
            f"INTERNAL://kafka-{n}:9092,EXTERNAL://127.0.0.1:{n}9092"
            == (props["advertised.listeners"])
        )
        protocols = [m.split(":")[1] for m in props["listener.security.protocol.map"].split(",")]
        assert ["SASL_PLAINTEXT"] * 3 == protocols
        for f in ("server.properties", "format.args"):
            assert 0o600 == stat.S_IMODE((node / f).stat().st_mode)
        assert "name=crb-admin,password=" in (node / "format.args").read_text()
        assert admin.password.get_secret_value() in (node / "format.args").read_text()
    (tmp_path / "kafka-1" / "data" / "meta.properties").write_text("cluster.id=x\n")
    with pytest.raises(LocalKafkaError, match="--reset"):
        write_compose_config(tmp_path)
    again = write_compose_config(tmp_path, reset=True).load("crb-admin")
    assert again is not None
    assert again.password.get_secret_value() != admin.password.get_secret_value()
    assert not (tmp_path / "kafka-1" / "data" / "meta.properties").exists()


def test_docker_compose_services_run_real_crb_commands() -> None:
    """The project's compose services invoke commands the `crb` CLI really has, publish
    ports on loopback only, and talk to the compose brokers."""
    import typer.main

    from broker.cli import app

    cli = typer.main.get_command(app)
    compose = yaml.safe_load((repo_root() / "docker-compose.yml").read_text())
    services = {n: s for n, s in compose["services"].items() if not n.startswith("kafka-")}
    assert set(services) == {"router", "tracker"}
    for svc in services.values():
        group, command, *args = svc["command"]
        assert command in cli.commands[group].commands  # type: ignore[attr-defined]
        assert args[args.index("--bootstrap") + 1].startswith("kafka-1:9092")
        assert all(p.startswith("127.0.0.1:") for p in svc["ports"])


def test_cluster_ids_never_start_with_a_dash() -> None:
    """``kafka-storage format -t -abc`` reads the id as an option: one random id in
    64 did, failing `crb kafka up` at random."""
    from broker.dev.kafka_local._cluster import new_cluster_id

    ids = [new_cluster_id() for _ in range(2000)]
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(i) == 22 for i in ids)
    assert len(set(ids)) == len(ids)
