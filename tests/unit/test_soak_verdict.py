"""The soak's verdict and plot from samples (pure: no Kafka)."""

from __future__ import annotations

import pytest

from bench.chaos import Sample
from bench.soak import FD_GROWTH_MAX, svg, verdict


def _samples(rss: list[float], fds: list[int], lag: list[int]) -> list[Sample]:
    return [
        Sample(
            at_s=10.0 * i,
            rss_mib={"router-a": r, "tracker": 80.0},
            fds={"router-a": f, "tracker": 20},
            lag={"routers": g, "inbox-de.hotline": 1},
            sent=100 * i,
            received=100 * i,
        )
        for i, (r, f, g) in enumerate(zip(rss, fds, lag, strict=True))
    ]


def test_flat_memory_and_bounded_lag_pass() -> None:
    n = 40
    judged = verdict(_samples([100.0] * n, [30] * n, [5] * n), rate=20)
    assert judged["flat"] is True
    assert judged["lag_bounded"] is True
    assert judged["services"]["router-a"]["rss_growth"] == 0.0
    assert judged["end_lag_s"] == 0.2


def test_growing_memory_is_not_flat() -> None:
    n = 40
    rss = [100.0 + 3 * i for i in range(n)]  # a leak: +3 MiB every sample
    judged = verdict(_samples(rss, [30] * n, [5] * n), rate=20)
    assert judged["flat"] is False
    assert judged["worst_rss_growth"] > 0.5


def test_leaking_descriptors_are_not_flat() -> None:
    n = 40
    judged = verdict(_samples([100.0] * n, [30 + i for i in range(n)], [5] * n), rate=20)
    assert judged["worst_fd_change"] > FD_GROWTH_MAX
    assert judged["flat"] is False


def test_a_lag_left_at_the_end_is_not_bounded() -> None:
    n = 40
    judged = verdict(_samples([100.0] * n, [30] * n, [5] * (n - 1) + [5_000]), rate=20)
    assert judged["lag_bounded"] is False
    assert judged["end_lag_s"] == 250.0


def test_too_few_samples_are_refused() -> None:
    with pytest.raises(ValueError, match="too few"):
        verdict(_samples([1.0] * 5, [1] * 5, [0] * 5), rate=1)


def test_the_plot_is_an_svg_with_a_line_per_kind() -> None:
    n = 12
    text = svg(_samples([100.0] * n, [30] * n, [5] * n), "soak")
    assert text.startswith("<svg")
    assert text.endswith("</svg>")
    assert text.count("<polyline") == 4  # router, tracker; routers lag, receivers lag
