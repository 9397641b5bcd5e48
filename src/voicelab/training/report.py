"""The loss curve of a training run: the Trainer's log as ``LossPoint`` rows, and their picture.

The files (``loss_log.csv``, ``loss_curve.png``) are the voice folder's: ``voicelab.voice.VoiceFolder``
names and writes them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from voicelab.voice import LossPoint

logger = logging.getLogger(__name__)

PLOT_SIZE_INCHES = (8, 4.5)
PLOT_DPI = 100
PUBLISHED_COLOR = "tab:red"
MARKERS_BELOW = 50
"""Curves with fewer points than this get a dot per point (a short run is otherwise hard to read)."""


def loss_points(log_history: Sequence[dict]) -> list[LossPoint]:
    """The loss entries of a Trainer ``state.log_history``, one point per step: the training loss, and the
    held-out clips' ``eval_loss`` logged at the same step (final summaries are left out)."""
    by_step: dict[int, LossPoint] = {}
    for entry in log_history:
        if "step" not in entry or not ("loss" in entry or "eval_loss" in entry):
            continue
        step = int(entry["step"])
        point = by_step.get(step) or LossPoint(step, float(entry.get("epoch", 0.0)), None)
        if "loss" in entry:
            point = replace(
                point,
                loss=float(entry["loss"]),
                learning_rate=_optional_float(entry.get("learning_rate")),
                grad_norm=_optional_float(entry.get("grad_norm")),
            )
        if "eval_loss" in entry:
            point = replace(point, eval_loss=float(entry["eval_loss"]))
        by_step[step] = point
    return [by_step[step] for step in sorted(by_step)]


def _optional_float(value) -> float | None:
    return None if value is None else float(value)


def plot_loss(
    path: Path, points: Sequence[LossPoint], title: str, *, published_step: int | None = None
) -> Path:
    """Training loss (and the held-out clips' eval loss, when logged) against step, as a PNG written to
    ``path`` (headless matplotlib backend; ``VoiceFolder.write_loss_curve`` makes the write atomic).
    ``published_step``: the checkpoint that became the voice, marked by a vertical line (and a ring on its
    eval loss) when there is an eval curve to choose on."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=PLOT_SIZE_INCHES)
    try:
        curves = [
            (label, [(p.step, getattr(p, key)) for p in points if getattr(p, key) is not None])
            for label, key in (("training loss", "loss"), ("eval loss (held-out clips)", "eval_loss"))
        ]
        curves = [(label, xy) for label, xy in curves if xy]
        for label, xy in curves:
            marker = "." if len(xy) < MARKERS_BELOW else None
            ax.plot([x for x, _ in xy], [y for _, y in xy], marker=marker, label=label)
        if published_step is not None and len(curves) > 1:
            _mark_published(ax, points, published_step)
        if len(curves) > 1:
            ax.legend()
        if not curves:
            ax.text(0.5, 0.5, "no loss logged (run shorter than --logging-steps)", ha="center", va="center")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=PLOT_DPI, format="png")
    finally:
        plt.close(fig)
    return path


def _mark_published(ax, points: Sequence[LossPoint], step: int) -> None:
    """A dashed vertical line at the published checkpoint, a ring on its eval loss, both in the legend."""
    eval_loss = next((p.eval_loss for p in points if p.step == step and p.eval_loss is not None), None)
    label = f"published: step {step}" + (f" (eval loss {eval_loss:.3f})" if eval_loss is not None else "")
    ax.axvline(step, color=PUBLISHED_COLOR, linestyle="--", linewidth=1, label=label)
    if eval_loss is not None:
        ax.plot([step], [eval_loss], "o", markersize=10, markerfacecolor="none", color=PUBLISHED_COLOR)
