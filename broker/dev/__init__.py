"""Development tooling: the local Apache Kafka launcher and the demo.

Used by the CLI (``crb kafka``, ``crb demo``), the tests and the benchmarks; never
imported by a service (an import-linter contract in ``pyproject.toml`` says so).
"""
