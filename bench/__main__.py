"""Run every benchmark: ``python -m bench`` (what ``make bench`` does).

Each benchmark prints ratios against a baseline measured in the same run, because
these machines are shared and noisy: absolute numbers mean little, ratios travel.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main() -> int:
    names = sorted(
        m.name
        for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if m.name.startswith("bench_")
    )
    wanted = sys.argv[1:] or names
    for name in wanted:
        module = importlib.import_module(f"bench.{name}")
        print(f"== {name} ==", flush=True)
        module.main([])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
