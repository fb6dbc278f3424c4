"""Hostile records at the Kafka edge: a committed corpus of attacks on the router
(:mod:`tests.hostile.corpus`, listed in ``CORPUS.md``), replayed against a running
router on the real Kafka by ``tests/integration/test_hostile_records.py``."""
