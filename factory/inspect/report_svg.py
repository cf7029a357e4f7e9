"""Inline SVG charts for `factory report`, drawn in Python so the page needs no script and no network.

Every mark carries its number in `data-*` attributes and a `<title>` tooltip, so a person can
hover for exact counts and a test can read back what was drawn. Colours are fixed: kept is
always green and rejected always red, so the eye learns them once for the whole page.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

KEPT = "#2a9d5c"
REJECTED = "#d1495b"
CORRECT = "#3a78c9"  # "passed every step up to correct": a third, neutral colour
# Reasons in the funnel: distinct hues, none of them green, so no reason reads as "kept".
REASON_COLOURS = (
    "#d1495b", "#edae49", "#8e6bbf", "#00798c", "#e07a5f", "#3d5a80",
    "#b56576", "#c9a227", "#6d597a", "#f28482", "#5c7aa8", "#a44a3f",
)
GRID = "#e4e6eb"
AXIS = "#6b7280"
TEXT = "#1f2937"


@dataclass
class FunnelRow:
    step: str
    into: int
    kept: int
    rejected: dict[str, int]  # reason code -> count


def fmt(n: float) -> str:
    """Thousands separators; a person reads 1,234,567 faster than 1234567."""
    return f"{n:,.0f}"


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "–"


def nice_step(span: float, max_bins: int) -> float:
    """The smallest 1, 2 or 5 x 10^k step that covers `span` in at most `max_bins` steps."""
    if span <= 0:
        return 1.0
    raw = span / max_bins
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * power >= raw:
            return m * power
    return 10 * power


def reason_colours(reasons: Sequence[str]) -> dict[str, str]:
    return {r: REASON_COLOURS[i % len(REASON_COLOURS)] for i, r in enumerate(reasons)}


def _svg(chart_id: str, width: int, height: int, body: list[str], label: str) -> str:
    # viewBox + width 100%: the chart scales with its column and text stays proportional.
    return (
        f'<svg id="{escape(chart_id)}" class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(label)}" '
        f'xmlns="http://www.w3.org/2000/svg" style="max-width:{width}px">' + "".join(body) + "</svg>"
    )


def _text(x: float, y: float, s: str, anchor: str = "start", size: int = 12, fill: str = TEXT, weight: str = "normal",
          cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" fill="{fill}" '
            f'font-weight="{weight}"{c}>{escape(s)}</text>')


def _rect(x: float, y: float, w: float, h: float, fill: str, cls: str, title: str, **data: object) -> str:
    attrs = "".join(f' data-{k.replace("_", "-")}="{escape(str(v))}"' for k, v in data.items())
    return (f'<rect class="{cls}" x="{x:.2f}" y="{y:.2f}" width="{w:.2f}" height="{h:.2f}" fill="{fill}"{attrs}>'
            f"<title>{escape(title)}</title></rect>")


def _legend(items: Sequence[tuple[str, str]], x: float, y: float, width: float) -> tuple[list[str], float]:
    """Swatches with labels, wrapped into lines; returns the marks and the y below them."""
    out, cx = [], x
    for colour, label in items:
        w = 20 + 6.6 * len(label)  # rough text width at 12px; enough to keep labels apart
        if cx + w > x + width and cx > x:
            cx, y = x, y + 20
        out.append(f'<rect x="{cx:.1f}" y="{y - 10:.1f}" width="12" height="12" rx="2" fill="{colour}"/>')
        out.append(_text(cx + 17, y, label))
        cx += w + 14
    return out, y + 20


def funnel_chart(chart_id: str, rows: Sequence[FunnelRow], colours: dict[str, str]) -> str:
    """One horizontal bar per step, as long as what came in: kept in green, then each reason."""
    width, label_w, bar_w, row_h = 1000, 130, 560, 30
    top = max((r.into for r in rows), default=0) or 1
    body: list[str] = []
    y = 10
    for r in rows:
        rejected = sum(r.rejected.values())
        body.append(_text(label_w - 10, y + 18, r.step, anchor="end", weight="600"))
        x = label_w
        kept_w = bar_w * r.kept / top
        body.append(_rect(x, y + 4, kept_w, 20, KEPT, "seg kept", f"{r.step}: kept {fmt(r.kept)} of {fmt(r.into)}",
                          step=r.step, count=r.kept))
        x += kept_w
        for reason, count in sorted(r.rejected.items(), key=lambda kv: -kv[1]):
            if not count:
                continue
            # A reason with one sample in a million still gets a visible sliver.
            w = max(bar_w * count / top, 2.0)
            body.append(_rect(x, y + 4, w, 20, colours[reason], "seg rejected",
                              f"{r.step}: {reason} {fmt(count)} ({pct(count, r.into)} of {fmt(r.into)})",
                              step=r.step, reason=reason, count=count))
            x += w
        summary = f"{fmt(r.into)} in · {fmt(r.kept)} kept · {fmt(rejected)} rejected"
        share = f'<tspan fill="{REJECTED}"> ({pct(rejected, r.into)})</tspan>' if rejected else ""
        body.append(_text(label_w + bar_w + 12, y + 18, summary, cls="funnel-numbers")
                    .replace("</text>", share + "</text>"))
        y += row_h
    legend = [(KEPT, "kept")] + [(c, reason) for reason, c in colours.items()]
    marks, y = _legend(legend, label_w, y + 18, width - label_w)
    return _svg(chart_id, width, int(y), body + marks, "funnel: kept and rejected per step")


def histogram_chart(chart_id: str, edges: Sequence[float], kept: Sequence[int], rejected: Sequence[int], x_label: str,
                    notes: Sequence[str] = ()) -> str:
    """Kept and rejected side by side in each bin, each as a share of its own group.

    Shares rather than counts: rejected often outnumbers kept tenfold, and raw counts would flatten
    the kept shape into the axis. The counts are in each bar's tooltip and data attributes.
    """
    width, height, left, right, top, bottom = 560, 300, 52, 12, 34, 58
    plot_w, plot_h = width - left - right, height - top - bottom
    n_kept, n_rej = sum(kept), sum(rejected)
    shares = [[c / n_kept if n_kept else 0 for c in kept], [c / n_rej if n_rej else 0 for c in rejected]]
    peak = max([*shares[0], *shares[1], 0.0]) or 1.0
    y_step = nice_step(peak * 100, 5) / 100
    y_max = math.ceil(peak / y_step) * y_step
    body = _y_grid(left, top, plot_w, plot_h, y_max, y_step, lambda v: f"{v * 100:.0f}%")
    bins = len(edges) - 1
    bin_w = plot_w / max(bins, 1)
    bar_w = max(bin_w * 0.42, 0.8)
    for i in range(bins):
        x0 = left + i * bin_w + bin_w * 0.08
        lo, hi = edges[i], edges[i + 1]
        for k, (series, colour, counts) in enumerate((("kept", KEPT, kept), ("rejected", REJECTED, rejected))):
            if not counts[i]:
                continue
            h = plot_h * shares[k][i] / y_max
            body.append(_rect(x0 + k * bar_w, top + plot_h - h, bar_w, h, colour, f"bar {series}",
                              f"{series}: {fmt(counts[i])} samples in [{fmt(lo)}, {fmt(hi)}) = "
                              f"{pct(counts[i], n_kept if k == 0 else n_rej)}",
                              series=series, count=counts[i], lo=lo, hi=hi))
    tick_every = max(1, math.ceil(bins / 8))
    for i in range(0, bins + 1, tick_every):
        x = left + i * bin_w
        body.append(f'<line x1="{x:.1f}" y1="{top + plot_h}" x2="{x:.1f}" y2="{top + plot_h + 4}" stroke="{AXIS}"/>')
        body.append(_text(x, top + plot_h + 17, _short(edges[i]), anchor="middle", size=11, fill=AXIS))
    body.append(_text(left + plot_w / 2, height - 22, x_label, anchor="middle", size=12, fill=AXIS))
    body.append(_text(14, top + plot_h / 2, "share of group", anchor="middle", size=11, fill=AXIS)
                .replace("<text ", f'<text transform="rotate(-90 14 {top + plot_h / 2:.0f})" ', 1))
    legend = [(KEPT, f"kept (n={fmt(n_kept)})"), (REJECTED, f"rejected (n={fmt(n_rej)})")]
    marks, _ = _legend(legend, left, 16, plot_w)
    for j, note in enumerate(notes):
        body.append(_text(left, height - 6 + j * 14, note, size=11, fill=AXIS))
    return _svg(chart_id, width, height + 14 * max(len(notes) - 1, 0), body + marks, f"histogram of {x_label}")


def rate_chart(chart_id: str, groups: Sequence[dict], has_correct: bool) -> str:
    """Per group: share of its generated samples kept and (if the chain checks answers) share correct."""
    width, label_w, bar_h = 560, 150, 16
    # The numbers must fit right of the bars: large counts take width from the bars, not the page.
    longest = max((len(f"100.0%  ({fmt(g['total'])}/{fmt(g['total'])})") for g in groups), default=0)
    bar_w = max(width - label_w - 8 - 6.8 * longest, 120)
    per_group = bar_h * (2 if has_correct else 1) + 14
    legend = [(KEPT, "kept")] + ([(CORRECT, "passed every step through correct")] if has_correct else [])
    marks, y = _legend(legend, label_w, 16, width - label_w)
    body = marks
    for g in groups:
        body.append(_text(label_w - 10, y + 12, _clip_label(g["name"], 20), anchor="end", weight="600"))
        body.append(f'<rect x="{label_w}" y="{y}" width="{bar_w}" height="{per_group - 14}" fill="#f3f4f6"/>')
        series = [("kept", KEPT, g["kept"])] + ([("correct", CORRECT, g["correct"])] if has_correct else [])
        for k, (name, colour, count) in enumerate(series):
            by = y + k * bar_h
            body.append(_rect(label_w, by + 1, bar_w * count / g["total"] if g["total"] else 0, bar_h - 2, colour,
                              f"rate {name}", f"{g['name']}: {name} {fmt(count)} of {fmt(g['total'])}",
                              group=g["name"], series=name, count=count, total=g["total"]))
            body.append(_text(label_w + bar_w + 8, by + bar_h - 4,
                              f"{pct(count, g['total'])}  ({fmt(count)}/{fmt(g['total'])})",
                              size=12, cls="rate-numbers"))
        y += per_group
    return _svg(chart_id, width, int(y) + 4, body, "pass rate per group")


def count_chart(chart_id: str, values: Sequence[tuple[int, int]], x_label: str) -> str:
    """Vertical bars: how many problems have k kept samples, k = 0, 1, 2, ..."""
    width, height, left, right, top, bottom = 1000, 260, 60, 12, 24, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((c for _, c in values), default=0) or 1
    y_step = nice_step(peak, 5)
    y_max = math.ceil(peak / y_step) * y_step
    body = _y_grid(left, top, plot_w, plot_h, y_max, y_step, fmt)
    # Few values (n=4 samples per problem) would make slabs a page wide: cap the slot, centre the bars.
    slot = min(plot_w / max(len(values), 1), 80)
    start = left + (plot_w - slot * len(values)) / 2
    total = sum(c for _, c in values)
    for i, (k, count) in enumerate(values):
        h = plot_h * count / y_max
        x = start + i * slot + slot * 0.15
        colour = REJECTED if k == 0 else KEPT  # problems with nothing kept are the ones to look at
        body.append(_rect(x, top + plot_h - h, slot * 0.7, h, colour, "bar problems",
                          f"{fmt(count)} problems with {k} kept samples", kept_samples=k, problems=count))
        if len(values) <= 40:
            body.append(_text(x + slot * 0.35, top + plot_h - h - 4, fmt(count), anchor="middle", size=11))
        if len(values) <= 40 or i % math.ceil(len(values) / 40) == 0:
            body.append(_text(x + slot * 0.35, top + plot_h + 16, str(k), anchor="middle", size=11, fill=AXIS))
    body.append(_text(left + plot_w / 2, height - 6, x_label, anchor="middle", fill=AXIS))
    return _svg(chart_id, width, height, body, f"problems by kept samples ({fmt(total)} problems)")


def _y_grid(left: float, top: float, plot_w: float, plot_h: float, y_max: float, y_step: float, label) -> list[str]:
    out, v = [], 0.0
    while v <= y_max + y_step / 1000:
        y = top + plot_h - plot_h * v / y_max
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(_text(left - 6, y + 4, label(v), anchor="end", size=11, fill=AXIS))
        v += y_step
    out.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="{AXIS}"/>')
    return out


def _short(v: float) -> str:
    """Axis labels: 12k rather than 12,000 where space is tight."""
    if abs(v) >= 10_000:
        return f"{v / 1000:.0f}k"
    if abs(v) >= 1000:
        return f"{v / 1000:.1f}k".replace(".0k", "k")
    return f"{v:g}"


def _clip_label(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"
