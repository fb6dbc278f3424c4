"""The local Apache Kafka launcher: real KRaft brokers from Maven Central's jars.

Used by ``crb kafka up|down|status|logs``, by the test session fixture and by
``crb demo``. See README.md in this folder for the version choice and its evidence.
"""

from broker.dev.kafka_local._cluster import LocalKafka, NodeState, node_properties
from broker.dev.kafka_local._compose import (
    COMPOSE_NODES,
    compose_properties,
    external_port,
    write_compose_config,
)
from broker.dev.kafka_local._errors import BrokerStartError, LocalKafkaError
from broker.dev.kafka_local._jars import (
    MIN_JAVA,
    JavaRuntime,
    ensure_jars,
    find_java,
    kafka_version,
    parse_java_major,
    pom_path,
)

__all__ = [
    "COMPOSE_NODES",
    "MIN_JAVA",
    "BrokerStartError",
    "JavaRuntime",
    "LocalKafka",
    "LocalKafkaError",
    "NodeState",
    "compose_properties",
    "ensure_jars",
    "external_port",
    "find_java",
    "kafka_version",
    "node_properties",
    "parse_java_major",
    "pom_path",
    "write_compose_config",
]
