"""mart_rolling_correlation re-derived row by row, slowly and plainly.

A test oracle, not production code: plain Python over dicts, one pair and one
session at a time, written from the definitions in ``transforms/correlation.py``'s
docstrings (the pair's common span, the paired-window rule, flatness, and the
epoch-anchored window sums). Its floats are added in the order those
definitions fix, so a faithful implementation agrees with it bit for bit:

- a pair (asset, benchmark), asset != benchmark, spans every session from the
  later of the two first returns to the earlier of the two last ones (or the
  dates ``spans`` gives it);
- per sum (x, y, xy, xx, yy over paired sessions; 0 where unpaired), a running
  total that starts at 0.0 at the pair's first session and again at every
  epoch boundary (sessions counted from the first one);
- the sum over the window (t-w, t] is ``C[t] - C[t-w]`` when t-w is in t's
  epoch, else ``C[t] + (P - C[t-w])`` with P the last total of the previous
  epoch (``C[t-w]`` is 0.0 before the pair, P is 0.0 in the pair's first epoch);
- moments ``S_ab - S_a * S_b * (1 / w)``; correlation ``cov / sqrt(vx vy)``
  clipped to [-1, 1], beta ``cov / vy``; null unless all w sessions are
  paired, and null when a series is constant over the window (exactly).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date


def rolling_correlation(
    series: Mapping[str, Mapping[date, float | None]],
    sessions: Sequence[date],
    assets: Sequence[str],
    benchmarks: Sequence[str],
    windows: Sequence[int],
    epoch: int,
    spans: Mapping[tuple[str, str], tuple[date, date]] | None = None,
) -> list[tuple]:
    """Rows (date, asset, benchmark, window, correlation, beta, observations),
    ordered by asset, benchmark, window, date."""
    sessions = sorted(set(sessions))

    def extent(sym: str) -> tuple[int, int] | None:
        have = [i for i, d in enumerate(sessions) if series.get(sym, {}).get(d) is not None]
        return (have[0], have[-1]) if have else None

    pairs: dict[tuple[str, str], tuple[int, int]] = {}
    for a in assets:
        for b in benchmarks:
            ea, eb = extent(a), extent(b)
            if a != b and ea and eb:
                pairs[(a, b)] = (max(ea[0], eb[0]), min(ea[1], eb[1]))
    for key, (first, last) in (spans or {}).items():
        lo = next((i for i, d in enumerate(sessions) if d >= first), len(sessions))
        hi = max((i for i, d in enumerate(sessions) if d <= last), default=-1)
        pairs[key] = (lo, hi)

    rows = []
    for (a, b), (lo, hi) in sorted(pairs.items()):
        idx = list(range(lo, hi + 1))
        if not idx:
            continue
        x = [series.get(a, {}).get(sessions[i]) if a in assets else None for i in idx]
        y = [series.get(b, {}).get(sessions[i]) if b in benchmarks else None for i in idx]
        paired = [u is not None and v is not None for u, v in zip(x, y)]
        terms = [
            (u, v, u * v, u * u, v * v) if p else (0.0, 0.0, 0.0, 0.0, 0.0) for u, v, p in zip(x, y, paired)
        ]
        # Running totals per epoch segment; P: the previous segment's last total.
        cum, prev, seg_start = [], [], []
        for t, i in enumerate(idx):
            if t == 0 or i // epoch != idx[t - 1] // epoch:
                p = cum[t - 1] if t else (0.0,) * 5
                start, total = t, [0.0] * 5
            for k in range(5):
                total[k] = total[k] + terms[t][k]
            cum.append(tuple(total))
            prev.append(p)
            seg_start.append(start)
        for w in sorted(set(windows)):
            for t, i in enumerate(idx):
                n = sum(paired[max(0, t - w + 1) : t + 1])
                corr = beta = None
                if t >= w - 1 and n == w:
                    s = []
                    for k in range(5):
                        back = cum[t - w][k] if t >= w else 0.0
                        if t - seg_start[t] >= w:
                            s.append(cum[t][k] - back)
                        else:
                            s.append(cum[t][k] + (prev[t][k] - back))
                    sx, sy, sxy, sxx, syy = s
                    inv = 1.0 / w
                    cov, vx, vy = sxy - sx * sy * inv, sxx - sx * sx * inv, syy - sy * sy * inv
                    flat_x = len(set(x[t - w + 1 : t + 1])) == 1
                    flat_y = len(set(y[t - w + 1 : t + 1])) == 1
                    if not flat_y:
                        beta = cov / vy
                        if not flat_x:
                            corr = max(-1.0, min(1.0, cov / math.sqrt(vx * vy)))
                rows.append((sessions[i], a, b, w, corr, beta, n))
    return rows
