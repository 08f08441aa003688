"""The comparison's plots, drawn on the server as SVG text.

pyplot is never imported: a bare ``Figure`` needs no GUI backend and keeps no global list
of open figures in a long-running web process. Glyphs are written as paths (matplotlib's
own DejaVu Sans), so the SVG needs no font, and the output is byte-for-byte repeatable: a
fixed hash salt for element ids and no date in the metadata.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from inference.pilot.measures import MEASURES

Summary = Mapping[str, Any]

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
WIDTH_IN, HEIGHT_IN = 6.4, 3.8  # 640 x 380 px at 100 dpi

# rcParams are process-wide; the lock keeps two threads from swapping each other's salt.
_SAVE_LOCK = threading.Lock()
_STYLE = {
    "svg.fonttype": "path",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
}


def _colour(index: int) -> str:
    return COLOURS[index % len(COLOURS)]


def _figure(ncols: int = 1) -> tuple[Figure, Any]:
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), layout="constrained")
        axes = figure.subplots(1, ncols, squeeze=False)[0]
    return figure, axes


def _svg(figure: Figure, salt: str) -> str:
    buffer = io.StringIO()
    with _SAVE_LOCK, matplotlib.rc_context({**_STYLE, "svg.hashsalt": salt}):
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return buffer.getvalue()


def _empty(axes: Any, message: str) -> None:
    axes.set_axis_off()
    axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes)


def _label(measure: str) -> str:
    return MEASURES[measure].label if measure in MEASURES else measure


def quality_vs_cost(runs_summary: Sequence[tuple[str, Summary]], measure: str = "answer_f1") -> str:
    """One point per run: cost per 1,000 questions across, the quality measure up.

    ``runs_summary`` is (run name, ``measures.score()`` output) pairs. Runs without a cost
    or without the measure are named under the plot instead of drawn.
    """
    with matplotlib.rc_context(_STYLE):
        figure, (axes,) = _figure()
        drawn, missing, currencies, highest = 0, [], set(), 0.0
        for index, (name, summary) in enumerate(runs_summary):
            cost, quality = summary.get("cost_per_1000_questions"), summary.get(measure)
            if cost is None or quality is None:
                missing.append(name)
                continue
            currency = summary.get("currency") or ""
            currencies.add(currency)
            axes.scatter([cost], [quality], s=60, color=_colour(index), zorder=3)
            axes.annotate(
                f"{name}\n{cost:.2f} {currency}".strip(),
                (cost, quality),
                xytext=(6, 4),
                textcoords="offset points",
                fontsize=8,
            )
            drawn += 1
            highest = max(highest, cost)
        if not drawn:
            _empty(axes, "No run has both a cost model and this measure.")
        else:
            unit = " / ".join(sorted(c for c in currencies if c)) or "currency"
            # Different currencies are not converted: say so rather than imply they compare.
            note = " (different currencies, not converted)" if len(currencies) > 1 else ""
            axes.set_xlabel(f"Cost per 1,000 questions ({unit}){note}")
            axes.set_ylabel(_label(measure))
            # Room on the right for the last point's label.
            axes.set_xlim(0, highest * 1.3 if highest > 0 else 1)
            if MEASURES.get(measure) and MEASURES[measure].unit == "":
                axes.set_ylim(0, 1.05)
        axes.set_title(f"{_label(measure)} against cost")
        if missing:
            figure.supxlabel("Not drawn (no cost or no value): " + ", ".join(missing), fontsize=8)
    return _svg(figure, "pilot-quality-vs-cost")


def latency_distribution(runs: Sequence[tuple[str, Sequence[Mapping[str, Any]]]]) -> str:
    """Box plots of time to first token and total time, in seconds, one box per run.

    ``runs`` is (run name, records) pairs. Boxes span the middle half of the questions,
    whiskers reach 1.5 times that span, dots are the questions beyond.
    """
    with matplotlib.rc_context(_STYLE):
        figure, axes = _figure(ncols=2)
        names = [name for name, _ in runs]
        for panel, (key, title) in zip(
            axes, (("ttft_ms", "Time to first token"), ("total_ms", "Total time")), strict=True
        ):
            series = [
                [r[key] / 1000 for r in records if r.get(key) is not None] for _, records in runs
            ]
            shown = [i for i, values in enumerate(series) if values]
            if not shown:
                _empty(panel, "No timings")
                continue
            boxes = panel.boxplot(
                [series[i] for i in shown],
                positions=[len(runs) - i for i in shown],
                orientation="horizontal",
                widths=0.6,
                patch_artist=True,
                medianprops={"color": "black"},
                flierprops={"markersize": 3},
            )
            for box, i in zip(boxes["boxes"], shown, strict=True):
                box.set_facecolor(_colour(i))
                box.set_alpha(0.8)
            panel.set_yticks(
                [len(runs) - i for i in range(len(runs))],
                [name if series[i] else f"{name} (no timings)" for i, name in enumerate(names)],
            )
            panel.set_ylim(0.4, len(runs) + 0.6)
            panel.set_xlabel("seconds")
            panel.set_title(title)
            panel.set_xlim(left=0)
        if len(axes) > 1 and axes[1].get_visible():
            axes[1].tick_params(labelleft=False)  # the run names are on the left panel
    return _svg(figure, "pilot-latency")


def per_language_bars(
    runs_summary: Sequence[tuple[str, Summary]], measure: str = "answer_f1"
) -> str:
    """Grouped bars: the measure per question language, one bar per run.

    ``runs_summary`` is (run name, ``measures.score()`` output) pairs; their
    ``by_language`` entries are used. A run without a value in a language has no bar there.
    """
    with matplotlib.rc_context(_STYLE):
        figure, (axes,) = _figure()
        languages = sorted({lang for _, s in runs_summary for lang in s.get("by_language", {})})
        width = 0.8 / max(len(runs_summary), 1)
        drawn = False
        for index, (name, summary) in enumerate(runs_summary):
            groups = summary.get("by_language", {})
            xs, heights = [], []
            for position, language in enumerate(languages):
                value = groups.get(language, {}).get(measure)
                if value is not None:
                    xs.append(position - 0.4 + width * (index + 0.5))
                    heights.append(value)
            axes.bar(xs, heights, width=width * 0.95, color=_colour(index), label=name)
            drawn = drawn or bool(xs)
        if not drawn:
            _empty(axes, "No values per language")
        else:
            counts = {
                lang: max(
                    s.get("by_language", {}).get(lang, {}).get("questions", 0)
                    for _, s in runs_summary
                )
                for lang in languages
            }
            axes.set_xticks(
                range(len(languages)), [f"{lang}\n({counts[lang]} q.)" for lang in languages]
            )
            axes.set_ylabel(_label(measure))
            if MEASURES.get(measure) and MEASURES[measure].unit == "":
                axes.set_ylim(0, 1.05)
            axes.grid(axis="x", visible=False)
            axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
        axes.set_title(f"{_label(measure)} by question language")
    return _svg(figure, "pilot-languages")
