"""Kafka jars from Maven Central, and the JDK that runs them.

The committed ``pom.xml`` beside this module names the exact Kafka version. Maven
resolves it (and its transitive runtime dependencies) into a cache folder that is
reused as long as it is complete; a marker file is written only after a successful
copy, so an interrupted download is redone rather than half-used.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from xml.etree import ElementTree

from broker.dev.kafka_local._errors import LocalKafkaError

__all__ = ["MIN_JAVA", "JavaRuntime", "ensure_jars", "find_java", "kafka_version", "pom_path"]

MIN_JAVA = 17
"""Kafka 4.x brokers need Java 17 or newer."""

_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
_COMPLETE_MARKER = ".complete"


def pom_path() -> Path:
    """The committed pom.xml that pins the Kafka version."""
    return Path(str(resources.files("broker.dev.kafka_local").joinpath("pom.xml")))


def kafka_version() -> str:
    """The Kafka version pinned in pom.xml (the single source of truth)."""
    root = ElementTree.parse(pom_path()).getroot()  # noqa: S314 - our own committed file
    node = root.find("m:properties/m:kafka.version", _POM_NS)
    if node is None or not node.text:
        raise LocalKafkaError(f"{pom_path()} does not name a kafka.version")
    return node.text.strip()


@dataclass(frozen=True)
class JavaRuntime:
    executable: str
    major: int
    version_line: str


def _java_executable() -> str | None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file():
            return str(candidate)
    return shutil.which("java")


def parse_java_major(version_output: str) -> int | None:
    """Major version from ``java -version`` output ("1.8.0_392" is 8, "17.0.15" is 17)."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not match:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):
        return int(match.group(2))
    return major


def find_java() -> JavaRuntime:
    """The JDK to run Kafka on, or a one-line error saying what is wrong."""
    exe = _java_executable()
    if exe is None:
        raise LocalKafkaError(
            f"no `java` found: install a JDK {MIN_JAVA}+ or set JAVA_HOME (Kafka runs on the JVM)"
        )
    try:
        proc = subprocess.run(
            [exe, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LocalKafkaError(f"cannot run {exe} -version: {exc}") from exc
    output = proc.stderr + proc.stdout
    major = parse_java_major(output)
    if major is None:
        raise LocalKafkaError(f"cannot tell the Java version from `{exe} -version`")
    first_line = output.strip().splitlines()[0] if output.strip() else ""
    if major < MIN_JAVA:
        raise LocalKafkaError(
            f"Java {major} at {exe} is too old: Kafka {kafka_version()} needs Java {MIN_JAVA}+"
        )
    return JavaRuntime(executable=exe, major=major, version_line=first_line)


def default_jar_cache() -> Path:
    base = os.environ.get("CRB_HOME")
    root = Path(base) if base else Path.cwd() / ".crb"
    return root / "jars" / kafka_version()


def ensure_jars(cache_dir: Path | None = None, *, quiet: bool = True) -> Path:
    """Return a folder holding every jar Kafka needs, downloading it once if missing."""
    target = cache_dir or default_jar_cache()
    if (target / _COMPLETE_MARKER).is_file() and any(target.glob("kafka_2.13-*.jar")):
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalKafkaError(
            "no `mvn` found: Maven is needed once to fetch Kafka's jars from Maven Central"
        )
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    cmd = [
        mvn,
        "-B",
        "-f",
        str(pom_path()),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    if quiet:
        cmd.insert(2, "-q")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LocalKafkaError("Maven Central did not answer within 15 minutes") from exc
    if proc.returncode != 0:
        text = proc.stdout + proc.stderr
        errors = [ln for ln in text.splitlines() if "ERROR" in ln]
        reason = errors[0] if errors else (text.strip().splitlines() or ["unknown error"])[-1]
        if re.search(r"Unknown host|Could not transfer|Connection refused|timed out", text):
            raise LocalKafkaError(
                f"Maven Central unreachable, cannot fetch Kafka {kafka_version()} jars: "
                + _strip_ansi(reason)[:300]
            )
        raise LocalKafkaError(f"mvn failed to fetch Kafka jars: {_strip_ansi(reason)[:300]}")
    (staging / _COMPLETE_MARKER).write_text(kafka_version() + "\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text).strip()
