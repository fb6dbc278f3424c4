"""The fuzzer's findings stay fixed: every crasher it ever wrote to
tests/fuzz_corpus/ is replayed, and a short fuzzing run (``bench.fuzz_envelope``;
the full campaign is ``python -m bench.fuzz_envelope --count 1000000``) finds
nothing new."""

from __future__ import annotations

from bench.fuzz_envelope import CORPUS, check, run, world


def test_committed_crashers_and_a_short_run_are_refused_cleanly() -> None:
    w = world()
    for path in sorted(CORPUS.glob("*.bin")) if CORPUS.is_dir() else []:
        assert check(w, path.read_bytes()) is None, path.name
        assert path.with_suffix(".json").exists(), f"{path.name} has no explanation"
    result = run(3_000, seed=20261127, keep=False)
    assert result["inputs"] == 3_000
    assert result["crashers"] == []
