"""Soak: the whole federation at a steady rate for a long time, watched for growth.

``python -m bench.soak [--minutes 30] [--rate R] [--nodes 3] [--plot docs/soak.svg]``

The chaos run's federation and processes (:mod:`bench.chaos`: two routers, the
tracker, ten receiving adapters, the hotlines sending the demo's mix) without the
faults, at ``--rate`` referrals/s for ``--minutes``. Every ``--sample-s`` seconds it
samples each service's resident memory (VmRSS) and open file descriptors
(``/proc``), and each consumer group's lag (end offsets minus committed: the
routers over the outboxes, the tracker, every receiver over its inbox).

Verdict, from the samples after the first 10% (warm-up): per service, the median
RSS of the last quarter against the first quarter (``rss_growth``), the largest
change in open files, and the largest lag against the rate (records behind, in
seconds of traffic). The run's independent check (lost, duplicated, ...) is the
chaos run's. Exit 1 on any loss or duplicate, on RSS growing more than
``RSS_GROWTH_MAX``, open files growing by more than ``FD_GROWTH_MAX``, or a lag
above ``LAG_MAX_S`` seconds of traffic at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.chaos import ChaosConfig, ChaosReport, Sample, run_chaos, stop_on_sigterm

RSS_GROWTH_MAX = 0.15
FD_GROWTH_MAX = 8
LAG_MAX_S = 30.0


def verdict(samples: list[Sample], rate: float) -> dict[str, Any]:
    """RSS growth, open-file change and lag per service, from the samples (pure)."""
    steady = samples[len(samples) // 10 :]
    if len(steady) < 8:
        raise ValueError(f"{len(samples)} samples: too few to judge growth")
    quarter = max(1, len(steady) // 4)
    first, last = steady[:quarter], steady[-quarter:]
    services = sorted({name for s in steady for name in s.rss_mib})
    out: dict[str, Any] = {"services": {}, "lag": {}}
    for name in services:
        early = [s.rss_mib[name] for s in first if name in s.rss_mib]
        late = [s.rss_mib[name] for s in last if name in s.rss_mib]
        fds = [s.fds[name] for s in steady if name in s.fds]
        if not early or not late:
            continue
        out["services"][name] = {
            "rss_first_mib": round(statistics.median(early), 1),
            "rss_last_mib": round(statistics.median(late), 1),
            "rss_growth": round(statistics.median(late) / statistics.median(early) - 1, 3),
            "fds_min": min(fds),
            "fds_max": max(fds),
        }
    for group in sorted({g for s in steady for g in s.lag}):
        lags = [s.lag[group] for s in steady if group in s.lag]
        out["lag"][group] = {"max": max(lags), "last": lags[-1]}
    worst_rss = max((v["rss_growth"] for v in out["services"].values()), default=0.0)
    worst_fds = max((v["fds_max"] - v["fds_min"] for v in out["services"].values()), default=0)
    end_lag = max((v["last"] for v in out["lag"].values()), default=0)
    out["worst_rss_growth"] = worst_rss
    out["worst_fd_change"] = worst_fds
    out["end_lag_s"] = round(end_lag / rate, 1)
    out["flat"] = worst_rss <= RSS_GROWTH_MAX and worst_fds <= FD_GROWTH_MAX
    out["lag_bounded"] = end_lag / rate <= LAG_MAX_S
    return out


def svg(samples: list[Sample], title: str) -> str:
    """A small two-panel line plot (RSS per service group; lag per group) as SVG."""
    width, height, pad = 760, 440, 48
    panel = (height - 3 * pad) / 2
    t_max = max((s.at_s for s in samples), default=1.0) or 1.0

    def series(value: Any, names: list[str]) -> dict[str, list[tuple[float, float]]]:
        return {n: [(s.at_s, v) for s in samples if (v := value(s, n)) is not None] for n in names}

    def group_rss(s: Sample, group: str) -> float | None:
        vals = [v for k, v in s.rss_mib.items() if k.startswith(group)]
        return max(vals) if vals else None

    rss = series(group_rss, ["router", "tracker", "inbox"])
    lag_names = sorted({g for s in samples for g in s.lag})
    lag = series(lambda s, g: s.lag.get(g), lag_names)
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{pad}" y="20" font-size="13">{title}</text>',
    ]

    def plot(top: float, data: dict[str, list[tuple[float, float]]], label: str) -> None:
        y_max = max((v for pts in data.values() for _, v in pts), default=1.0) or 1.0
        y_max *= 1.1
        left, right = pad, width - 170
        parts.append(
            f'<rect x="{left}" y="{top}" width="{right - left}" height="{panel}" '
            'fill="none" stroke="#999"/>'
        )
        parts.append(f'<text x="{left}" y="{top - 6}">{label} (max axis {y_max:.0f})</text>')
        for i in range(5):
            x = left + (right - left) * i / 4
            parts.append(
                f'<text x="{x}" y="{top + panel + 14}" text-anchor="middle">'
                f"{t_max * i / 4 / 60:.0f} min</text>"
            )
        legend = 0
        for (name, pts), colour in zip(sorted(data.items()), colours * 4, strict=False):
            if not pts:
                continue
            path = " ".join(
                f"{left + (right - left) * t / t_max:.1f},{top + panel - panel * v / y_max:.1f}"
                for t, v in pts
            )
            parts.append(f'<polyline fill="none" stroke="{colour}" points="{path}"/>')
            parts.append(
                f'<text x="{right + 8}" y="{top + 12 + 14 * legend}" fill="{colour}">{name}</text>'
            )
            legend += 1

    plot(pad + 8, rss, "resident memory, MiB (largest process of each kind)")
    lag_label = "consumer lag, records (routers, tracker, receivers)"
    plot(2 * pad + panel, {k: v for k, v in lag.items() if k in ("routers", "tracker")} | {
        "receivers (max)": [
            (s.at_s, max((v for g, v in s.lag.items() if g.startswith("inbox-")), default=0))
            for s in samples
        ]
    }, lag_label)  # fmt: skip
    parts.append("</svg>")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=20.0, help="referrals/s")
    parser.add_argument("--nodes", type=int, choices=(1, 3), default=3)
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--plot", type=Path, help="write the SVG plot here")
    parser.add_argument("--samples", type=Path, help="write the samples (JSON) here")
    parser.add_argument(
        "--router-cache-mib",
        type=int,
        help="the routers' snapshot page cache (default 32: reached after ~160,000 "
        "messages; bench/router_memory.py)",
    )
    args = parser.parse_args(argv)
    from broker.dev.kafka_local import LocalKafka
    from broker.logs import configure_logging

    configure_logging("warning")
    config = ChaosConfig(
        referrals=int(args.rate * args.minutes * 60),
        rate=args.rate,
        router_kills=0,
        receiver_kills=False,
        broker_kill=False,
        tracker_kill=False,
        freeze=False,
        hostile_every=1000,
        soak_sample_s=args.sample_s,
        router_cache_mib=args.router_cache_mib,
    )
    stop_on_sigterm()
    base = Path(tempfile.mkdtemp(prefix="crb-soak-"))
    launcher = LocalKafka(base / "kafka")
    print(f"starting a {args.nodes}-node secured Kafka in {base} ...", file=sys.stderr, flush=True)
    launcher.up(nodes=args.nodes)
    try:
        report: ChaosReport = asyncio.run(run_chaos(config, launcher, base / "run"))
    finally:
        launcher.destroy()
    judged = verdict(report.samples, args.rate)
    if args.samples:
        args.samples.write_text(json.dumps([asdict(s) for s in report.samples]) + "\n")
    if args.plot:
        title = (
            f"soak: {report.sent} referrals at {args.rate:g}/s over {args.minutes:g} min, "
            f"{args.nodes} broker(s); lost {report.lost}, duplicated {report.duplicated}"
        )
        args.plot.write_text(svg(report.samples, title) + "\n")
    print(report.table())
    print(json.dumps(judged, indent=2))
    ok = report.ok and judged["flat"] and judged["lag_bounded"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
