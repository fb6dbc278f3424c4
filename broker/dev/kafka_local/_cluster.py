"""A real Apache Kafka (KRaft) on loopback, started from Maven Central's jars.

Each node is one JVM that is both broker and controller (combined mode), with a
static controller quorum. Everything the launcher knows lives in ``state.json``
inside the state folder, so ``down``, ``status`` and ``logs`` work from another
shell. A node's command line carries ``-Dcrb.kafka.node=<its folder>`` so that
``down`` signals only processes this launcher started, never a reused pid.

Small-machine settings: a modest heap, few internal-topic partitions,
``group.initial.rebalance.delay.ms=0`` and internal-topic replication equal to the
node count (``min.insync.replicas`` 2 on three nodes).

Secured by default (the second lock): clients and brokers authenticate with SASL
SCRAM-SHA-512 on the client listener; the controller listener uses SASL PLAIN with
one static user (SCRAM on the controller listener never elects a leader with three
voters, KAFKA-15513; a plaintext one would need ``User:ANONYMOUS`` as super user,
letting any local process grant itself everything). ``StandardAuthorizer`` denies
by default (``allow.everyone.if.no.acl.found=false``); the super users are the
brokers, the controller and the provisioning admin (``crb-admin``). Their secrets
are generated at the first ``up`` into ``<state>/credentials/`` (0600); the broker
and admin SCRAM users are created by ``kafka-storage format`` from an argument file
(0600, deleted after), so no secret appears on a command line. ``server.properties``
holds the brokers' own logins and is 0600 too. Sessions are never re-authenticated
(``connections.max.reauth.ms=0``): aiokafka cannot.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from adapters.kafka import ADMIN, BROKER, Credential, CredentialStore, KafkaSettings, client_kwargs
from broker.dev.kafka_local._errors import BrokerStartError, LocalKafkaError
from broker.dev.kafka_local._jars import ensure_jars, find_java, kafka_version
from keys import atomic_write

__all__ = ["LocalKafka", "NodeState", "new_cluster_id", "node_properties"]

HOST = "127.0.0.1"
CONTROLLER = "crb-controller"
_T = TypeVar("_T")
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
_STATE_FILE = "state.json"
_LOG4J2 = """\
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Logger:
      - name: kafka.request.logger
        level: WARN
      - name: org.apache.kafka.storage.internals.log
        level: WARN
      - name: kafka.log
        level: WARN
    Root:
      level: INFO
      AppenderRef:
        - ref: STDOUT
"""


@dataclass
class NodeState:
    node_id: int
    client_port: int
    controller_port: int
    folder: str
    pid: int | None = None

    @property
    def data_dir(self) -> Path:
        return Path(self.folder) / "data"

    @property
    def log_file(self) -> Path:
        return Path(self.folder) / "kafka.log"

    @property
    def properties_file(self) -> Path:
        return Path(self.folder) / "server.properties"

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.client_port}"


@dataclass
class _State:
    kafka_version: str
    cluster_id: str
    nodes: list[NodeState] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)


def new_cluster_id() -> str:
    """A KRaft cluster id (URL-safe base64 of 16 random bytes) that does not start
    with ``-``: ``kafka-storage format -t -x…`` would read it as an option (Kafka's
    own ``Uuid.randomUuid`` avoids it the same way). One id in 64 did."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _jaas(module: str, user: str, password: str, *static_users: tuple[str, str]) -> str:
    users = "".join(f' user_{u}="{p}"' for u, p in static_users)
    return f'{module} required username="{user}" password="{password}"{users};'


def node_properties(
    node: NodeState, all_nodes: list[NodeState], *, broker: Credential, controller: Credential
) -> dict[str, str]:
    """The server.properties of one combined broker+controller node (pure)."""
    count = len(all_nodes)
    min_isr = "2" if count >= 3 else "1"
    voters = ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in all_nodes)
    broker_pw = broker.password.get_secret_value()
    controller_pw = controller.password.get_secret_value()
    plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
    return {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": voters,
        "listeners": f"CLIENT://{HOST}:{node.client_port},CONTROLLER://{HOST}:{node.controller_port}",
        "advertised.listeners": f"CLIENT://{HOST}:{node.client_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "CLIENT",
        "listener.security.protocol.map": "CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": _jaas(
            plain, CONTROLLER, controller_pw, (CONTROLLER, controller_pw)
        ),
        "listener.name.client.scram-sha-512.sasl.jaas.config": _jaas(scram, BROKER, broker_pw),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"User:{BROKER};User:{CONTROLLER};User:{ADMIN}",
        "connections.max.reauth.ms": "0",
        "log.dirs": str(node.data_dir),
        # Topics the cluster creates inherit these: replication 3 / min ISR 2 on 3 nodes.
        "default.replication.factor": str(count),
        "min.insync.replicas": min_isr,
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        # Internal topics sized for a small machine, replicated across every node.
        "offsets.topic.replication.factor": str(count),
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": str(count),
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": "10",
        "share.coordinator.state.topic.replication.factor": str(count),
        "share.coordinator.state.topic.min.isr": min_isr,
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "log.flush.interval.messages": str(2**63 - 1),
        "unclean.leader.election.enable": "false",
    }


def _format_properties(props: Mapping[str, str]) -> str:
    return "".join(f"{k}={v}\n" for k, v in props.items())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the JVM's server sockets: connections in TIME_WAIT do not make a port busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _pid_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _marker(node: NodeState) -> str:
    return f"-Dcrb.kafka.node={node.folder}"


def _is_ours_and_alive(node: NodeState) -> bool:
    if node.pid is None:
        return False
    child = _CHILDREN.get(node.pid)
    if child is not None:
        # Started by this process: ask the Popen object. Right after fork the child's
        # /proc cmdline is still ours, without the marker, so /proc would mislead.
        return child.poll() is None
    try:
        os.kill(node.pid, 0)
    except OSError:
        return False
    if _is_zombie(node.pid):
        _reap(node.pid)
        return False
    cmdline = _pid_cmdline(node.pid)
    if not cmdline and not Path("/proc/self").exists():  # no /proc: trust the pid
        return True
    return _marker(node) in cmdline


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name.
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _tail(path: Path, lines: int) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


async def _own_view(settings: KafkaSettings, timeout_s: float) -> set[int] | str:
    """The broker ids one node itself reports, or why it did not answer.

    ``settings.bootstrap`` names that node alone: aiokafka's bootstrap sends its
    metadata request there and nowhere else.
    """
    from aiokafka.client import AIOKafkaClient

    kwargs = client_kwargs(settings)
    kwargs["request_timeout_ms"] = int(timeout_s * 1000)
    client = AIOKafkaClient(**kwargs)
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        return {b.nodeId for b in client.cluster.brokers()}
    except Exception as exc:  # the reason is the result
        name, text = type(exc).__name__, str(exc)
        return text if text.startswith(name) else f"{name}: {text}".rstrip(": ")
    finally:
        await client.close()


def _quietly(coro_factory: Callable[[], Coroutine[Any, Any, _T]], default: _T) -> _T:
    # aiokafka logs every refused connection while a broker is still starting.
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        # A thread of its own, so that callers inside a running event loop work too.
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, coro_factory()).result()
    except Exception:
        return default
    finally:
        quiet.setLevel(level)


def own_views(
    settings: KafkaSettings, addresses: Mapping[int, str], timeout_s: float = 5.0
) -> dict[int, set[int] | str]:
    """Each node's own answer: the broker ids it reports, or why it did not answer.

    Asking every node itself, rather than the cluster, is what tells a node that
    is back: the others keep listing a SIGKILLed broker until its session times
    out (9 s), and a restarted one is missing from every list until it has
    caught up with the metadata log and been unfenced.
    """

    async def ask_all() -> dict[int, set[int] | str]:
        ids = list(addresses)
        answers = await asyncio.gather(
            *(
                _own_view(settings.model_copy(update={"bootstrap": addresses[i]}), timeout_s)
                for i in ids
            )
        )
        return dict(zip(ids, answers, strict=True))

    return _quietly(ask_all, dict.fromkeys(addresses, "no answer"))


class LocalKafka:
    """A local Kafka cluster described by a state folder.

    ``up()`` is idempotent: a running cluster is left alone, a stopped one is
    restarted on its old ports and data.
    """

    def __init__(self, state_dir: Path, *, jar_dir: Path | None = None) -> None:
        self.state_dir = Path(state_dir).resolve()
        self._jar_dir = jar_dir

    # -- state -------------------------------------------------------------
    @property
    def _state_path(self) -> Path:
        return self.state_dir / _STATE_FILE

    def _load(self) -> _State | None:
        try:
            raw = json.loads(self._state_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise LocalKafkaError(f"unreadable launcher state {self._state_path}: {exc}") from exc
        nodes = [NodeState(**n) for n in raw["nodes"]]
        return _State(kafka_version=raw["kafka_version"], cluster_id=raw["cluster_id"], nodes=nodes)

    def _save(self, state: _State) -> None:
        data = json.dumps(asdict(state), indent=2) + "\n"
        atomic_write(self._state_path, data.encode(), mode=0o644)

    @property
    def bootstrap(self) -> str:
        state = self._load()
        if state is None:
            raise LocalKafkaError(f"no local Kafka in {self.state_dir}: run `crb kafka up`")
        return state.bootstrap

    @property
    def credentials(self) -> CredentialStore:
        """The cluster's own secrets: brokers, controller, provisioning admin (0600)."""
        return CredentialStore(self.state_dir / "credentials")

    def admin_credential(self) -> Credential:
        found = self.credentials.load(ADMIN)
        if found is None:
            raise LocalKafkaError(f"no admin credential in {self.credentials.folder}")
        return found

    def _probe_settings(self, state: _State) -> KafkaSettings:
        """The admin's login; none for a cluster from before the launcher secured it."""
        admin = self.credentials.load(ADMIN)
        base = KafkaSettings(bootstrap=state.bootstrap)
        return admin.apply(base) if admin is not None else base

    def settings(self, credential: Credential | None = None) -> KafkaSettings:
        """How to reach this cluster as ``credential`` (default: the admin)."""
        base = KafkaSettings(bootstrap=self.bootstrap)
        return (credential or self.admin_credential()).apply(base)

    def nodes(self) -> list[NodeState]:
        state = self._load()
        return [] if state is None else list(state.nodes)

    # -- lifecycle ---------------------------------------------------------
    def up(self, *, nodes: int = 1, port: int | None = None, timeout_s: float = 90.0) -> str:
        """Start (or keep) the cluster and return its bootstrap address."""
        if nodes not in (1, 3):
            raise LocalKafkaError(f"--nodes must be 1 or 3, not {nodes}")
        state = self._load()
        if state is not None and self.credentials.load(ADMIN) is None:
            # A cluster from before the launcher secured it: never reuse it unsecured.
            if any(_is_ours_and_alive(n) for n in state.nodes):
                raise LocalKafkaError(
                    f"an unsecured Kafka is running from {self.state_dir}; "
                    "run `crb kafka down` first"
                )
            state = None
        if state is not None:
            if len(state.nodes) != nodes:
                if any(_is_ours_and_alive(n) for n in state.nodes):
                    raise LocalKafkaError(
                        f"a {len(state.nodes)}-node Kafka is already running from "
                        f"{self.state_dir}; run `crb kafka down` first"
                    )
                state = None  # a stopped cluster of another shape: start afresh
            elif port is not None and state.nodes[0].client_port != port:
                if any(_is_ours_and_alive(n) for n in state.nodes):
                    raise LocalKafkaError(
                        f"Kafka is already running on port {state.nodes[0].client_port}; "
                        "run `crb kafka down` first"
                    )
                state = None
        if state is None:
            state = self._new_state(nodes, port)
        java = find_java()
        jars = ensure_jars(self._jar_dir)
        for node in state.nodes:
            if _is_ours_and_alive(node):
                continue
            self._start_node(state, node, java.executable, jars)
            self._save(state)
        self._wait_ready(state, timeout_s)
        return state.bootstrap

    def _new_state(self, count: int, port: int | None) -> _State:
        # Leftover data from an older, differently shaped cluster must not be reused.
        for old in self.state_dir.glob("node-*"):
            shutil.rmtree(old, ignore_errors=True)
        ports: list[int] = []
        if port is not None:
            if not _port_is_free(port):
                raise LocalKafkaError(f"port {port} is already in use on {HOST}")
            ports.append(port)
        while len(ports) < 2 * count:
            candidate = _free_port()
            if candidate not in ports:
                ports.append(candidate)
        cluster_id = new_cluster_id()
        nodes = [
            NodeState(
                node_id=i + 1,
                client_port=ports[i],
                controller_port=ports[count + i],
                folder=str(self.state_dir / f"node-{i + 1}"),
            )
            for i in range(count)
        ]
        state = _State(kafka_version=kafka_version(), cluster_id=cluster_id, nodes=nodes)
        store = self.credentials
        for name in (BROKER, CONTROLLER, ADMIN):
            store.delete(name)  # a new cluster gets new secrets
        broker, controller = store.ensure(BROKER), store.ensure(CONTROLLER)
        store.ensure(ADMIN)
        for node in nodes:
            Path(node.folder).mkdir(parents=True, exist_ok=True)
            props = node_properties(node, nodes, broker=broker, controller=controller)
            atomic_write(node.properties_file, _format_properties(props).encode(), mode=0o600)
            (Path(node.folder) / "log4j2.yaml").write_text(_LOG4J2)
        self._save(state)
        return state

    def _java_cmd(self, java: str, jars: Path, node: NodeState, main: list[str]) -> list[str]:
        heap = os.environ.get("CRB_KAFKA_HEAP", "512m" if len(self.nodes()) <= 1 else "384m")
        return [
            java,
            "-Xms128m",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={Path(node.folder) / 'log4j2.yaml'}",
            _marker(node),
            "-cp",
            f"{jars}/*",
            *main,
        ]

    def _start_node(self, state: _State, node: NodeState, java: str, jars: Path) -> None:
        for p in (node.client_port, node.controller_port):
            if not _port_is_free(p):
                raise LocalKafkaError(f"port {p} is already in use on {HOST} (node {node.node_id})")
        if not (node.data_dir / "meta.properties").is_file():
            self._format(state, node, java, jars)
        with node.log_file.open("ab") as log:
            proc_ = subprocess.Popen(
                self._java_cmd(java, jars, node, ["kafka.Kafka", str(node.properties_file)]),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=node.folder,
            )
        node.pid = proc_.pid
        # Keep the Popen object: it reaps the child later, and dropping it while the
        # broker runs would warn. Brokers outlive the launcher process on purpose.
        _CHILDREN[proc_.pid] = proc_

    def _format(self, state: _State, node: NodeState, java: str, jars: Path) -> None:
        """``kafka-storage format`` with the broker and admin SCRAM users. Their
        passwords go through a 0600 argument file (Java's ``@file``), never argv; the
        tool's output names the salted credentials, so none of it is shown."""
        args = [
            "format",
            "-t",
            state.cluster_id,
            "-c",
            str(node.properties_file),
            "--ignore-formatted",
        ]
        for name in (BROKER, ADMIN):
            credential = self.credentials.load(name)
            if credential is None:
                raise LocalKafkaError(f"no {name} credential in {self.credentials.folder}")
            secret = credential.password.get_secret_value()
            args += ["--add-scram", f"SCRAM-SHA-512=[name={name},password={secret}]"]
        argfile = Path(node.folder) / ".format.args"
        atomic_write(argfile, ("\n".join(args) + "\n").encode(), mode=0o600)
        try:
            cmd = self._java_cmd(java, jars, node, ["kafka.tools.StorageTool", f"@{argfile}"])
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        finally:
            argfile.unlink(missing_ok=True)
        if proc.returncode != 0:
            lines = (proc.stdout + proc.stderr).strip().splitlines()
            tail = [ln for ln in lines if "Scram" not in ln and "password" not in ln][-5:]
            raise BrokerStartError(
                f"formatting KRaft storage of node {node.node_id} failed: "
                + (tail[-1] if tail else "no output"),
                node_id=node.node_id,
                log_tail="\n".join(tail),
            )

    def _wait_ready(self, state: _State, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        wanted = {n.node_id for n in state.nodes}
        while True:
            for node in state.nodes:
                if not _is_ours_and_alive(node):
                    tail = _tail(node.log_file, 20)
                    raise BrokerStartError(
                        f"Kafka node {node.node_id} died at start; last log line: "
                        + (tail.splitlines()[-1] if tail else "(empty log)"),
                        node_id=node.node_id,
                        log_tail=tail,
                    )
            views = own_views(
                self._probe_settings(state),
                {n.node_id: n.bootstrap for n in state.nodes},
                timeout_s=min(10.0, max(1.0, deadline - time.monotonic())),
            )
            waiting = {
                i: view for i, view in views.items() if isinstance(view, str) or not view >= wanted
            }
            if not waiting:
                return
            if time.monotonic() > deadline:
                node_id, view = sorted(waiting.items())[0]
                node = next(n for n in state.nodes if n.node_id == node_id)
                seen = view if isinstance(view, str) else f"it lists brokers {sorted(view)}"
                raise BrokerStartError(
                    f"Kafka node {node_id} was not ready within {timeout_s:.0f}s "
                    f"({seen}; want {sorted(wanted)}; see {node.log_file})",
                    node_id=node_id,
                    log_tail=_tail(node.log_file, 20),
                )
            time.sleep(0.5)

    def down(self, *, timeout_s: float = 30.0) -> list[int]:
        """Stop the nodes this launcher started; returns the node ids it stopped."""
        state = self._load()
        if state is None:
            return []
        stopped: list[int] = []
        for node in state.nodes:
            if _is_ours_and_alive(node):
                assert node.pid is not None
                with contextlib.suppress(ProcessLookupError):
                    os.kill(node.pid, signal.SIGTERM)
                stopped.append(node.node_id)
        deadline = time.monotonic() + timeout_s
        for node in state.nodes:
            while _is_ours_and_alive(node) and time.monotonic() < deadline:
                _reap(node.pid)
                time.sleep(0.2)
            if _is_ours_and_alive(node):
                assert node.pid is not None
                with contextlib.suppress(ProcessLookupError):
                    os.kill(node.pid, signal.SIGKILL)
            _reap(node.pid)
            node.pid = None
        self._save(state)
        return stopped

    def destroy(self) -> None:
        """Stop everything and delete data, logs and state."""
        self.down()
        shutil.rmtree(self.state_dir, ignore_errors=True)

    # -- fault injection (tests) -------------------------------------------
    def kill_node(self, node_id: int, sig: int = signal.SIGKILL) -> None:
        """Signal one node (SIGKILL by default) and wait until it is gone."""
        state = self._load()
        if state is None:
            raise LocalKafkaError("no local Kafka to kill")
        node = next(n for n in state.nodes if n.node_id == node_id)
        if _is_ours_and_alive(node):
            assert node.pid is not None
            os.kill(node.pid, sig)
            deadline = time.monotonic() + 30
            while _is_ours_and_alive(node) and time.monotonic() < deadline:
                _reap(node.pid)
                time.sleep(0.05)

    # -- read side ---------------------------------------------------------
    def status(self) -> list[dict[str, object]]:
        state = self._load()
        if state is None:
            return []
        views = own_views(
            self._probe_settings(state),
            {n.node_id: n.bootstrap for n in state.nodes},
            timeout_s=3.0,
        )
        return [
            {
                "node": n.node_id,
                "pid": n.pid,
                "running": _is_ours_and_alive(n),
                "answering": not isinstance(views.get(n.node_id), str)
                and n.node_id in views.get(n.node_id, set()),
                "bootstrap": n.bootstrap,
                "controller_port": n.controller_port,
                "data_dir": str(n.data_dir),
                "log_file": str(n.log_file),
            }
            for n in state.nodes
        ]

    def log_tail(self, node_id: int | None = None, lines: int = 50) -> str:
        parts = []
        for n in self.nodes():
            if node_id is None or n.node_id == node_id:
                parts.append(f"==> node {n.node_id}: {n.log_file} <==\n{_tail(n.log_file, lines)}")
        return "\n".join(parts)

    def iter_data_files(self) -> Iterator[Path]:
        for n in self.nodes():
            yield from (p for p in n.data_dir.rglob("*") if p.is_file())


def _reap(pid: int | None) -> None:
    if pid is None:
        return
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            del _CHILDREN[pid]
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
