"""The secured configuration of ``docker-compose.yml``'s three Kafka nodes.

``crb kafka compose`` writes, under ``$CRB_HOME/docker/``, one folder per node
(``kafka-1`` … ``kafka-3``: ``server.properties``, ``format.args``, ``data/``) and the
brokers', controller's and admin's secrets in ``docker/credentials/`` (0600). The
compose file mounts each node's folder at ``/etc/crb`` and runs, as the invoking user
(``CRB_UID``/``CRB_GID``, default 1000 — the files are 0600):

    kafka-storage.sh format @/etc/crb/format.args    # once; creates the SCRAM users
    kafka-server-start.sh /etc/crb/server.properties

The settings are the local launcher's (:func:`node_properties`: SCRAM-SHA-512 for
clients and brokers, PLAIN with a static user on the controller listener,
``StandardAuthorizer`` denying by default, the same super users, no
re-authentication) with container listeners: ``INTERNAL`` (``kafka-N:9092``, between
brokers and for the compose services) and ``EXTERNAL`` (``127.0.0.1:N9092`` on the
host). Secrets never appear on a command line or in the compose file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from adapters.kafka import ADMIN, BROKER, Credential, CredentialStore
from broker.dev.kafka_local._cluster import (
    CONTROLLER,
    NodeState,
    _format_properties,
    _jaas,
    new_cluster_id,
    node_properties,
)
from broker.dev.kafka_local._errors import LocalKafkaError
from keys import atomic_write

__all__ = ["COMPOSE_NODES", "compose_properties", "external_port", "write_compose_config"]

COMPOSE_NODES = 3
_MOUNT = "/etc/crb"
_SCRAM = "org.apache.kafka.common.security.scram.ScramLoginModule"


def external_port(node_id: int) -> int:
    """The host port of node ``node_id``'s EXTERNAL listener (19092, 29092, 39092)."""
    return node_id * 10_000 + 9092


def compose_properties(
    node_id: int, *, broker: Credential, controller: Credential, count: int = COMPOSE_NODES
) -> dict[str, str]:
    """``server.properties`` of compose node ``node_id`` (pure)."""
    nodes = [NodeState(i, 9092, 9093, f"/unused/{i}") for i in range(1, count + 1)]
    props = node_properties(nodes[node_id - 1], nodes, broker=broker, controller=controller)
    del props["listener.name.client.scram-sha-512.sasl.jaas.config"]
    port = external_port(node_id)
    ids = [n.node_id for n in nodes]
    props.update(
        {
            "controller.quorum.voters": ",".join(f"{i}@kafka-{i}:9093" for i in ids),
            "listeners": f"INTERNAL://:9092,EXTERNAL://:{port},CONTROLLER://:9093",
            "advertised.listeners": f"INTERNAL://kafka-{node_id}:9092,EXTERNAL://127.0.0.1:{port}",
            "inter.broker.listener.name": "INTERNAL",
            "listener.security.protocol.map": (
                "INTERNAL:SASL_PLAINTEXT,EXTERNAL:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
            ),
            "listener.name.internal.scram-sha-512.sasl.jaas.config": _jaas(
                _SCRAM, BROKER, broker.password.get_secret_value()
            ),
            "listener.name.external.scram-sha-512.sasl.jaas.config": f"{_SCRAM} required;",
            "log.dirs": f"{_MOUNT}/data",
        }
    )
    return props


def write_compose_config(folder: Path, *, reset: bool = False) -> CredentialStore:
    """Write every node's folder under ``folder`` with fresh secrets and cluster id.

    Refuses when a node's data exists (the cluster would not accept new secrets)
    unless ``reset``, which deletes the data. Returns the store with the admin's
    login."""
    formatted = [p for p in folder.glob("kafka-*/data/*") if p.exists()]
    if formatted and not reset:
        raise LocalKafkaError(
            f"the compose cluster in {folder} has data; keep it, or stop it "
            "(docker compose down) and run `crb kafka compose --reset` to start afresh"
        )
    for node in folder.glob("kafka-*"):
        shutil.rmtree(node)
    store = CredentialStore(folder / "credentials")
    for name in (BROKER, CONTROLLER, ADMIN):
        store.delete(name)
    broker, controller, admin = (store.ensure(n) for n in (BROKER, CONTROLLER, ADMIN))
    cluster_id = new_cluster_id()
    for node_id in range(1, COMPOSE_NODES + 1):
        node = folder / f"kafka-{node_id}"
        (node / "data").mkdir(mode=0o700, parents=True, exist_ok=True)
        props = compose_properties(node_id, broker=broker, controller=controller)
        atomic_write(node / "server.properties", _format_properties(props).encode(), mode=0o600)
        args = ["format", "-t", cluster_id, "-c", f"{_MOUNT}/server.properties"]
        args.append("--ignore-formatted")
        for user in (broker, admin):
            secret = user.password.get_secret_value()
            args += ["--add-scram", f"SCRAM-SHA-512=[name={user.username},password={secret}]"]
        atomic_write(node / "format.args", ("\n".join(args) + "\n").encode(), mode=0o600)
    return store
