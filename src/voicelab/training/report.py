"""Loss log (CSV) and loss-curve PNG written next to a trained voice."""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from voicelab.fileio import atomic_output

logger = logging.getLogger(__name__)

LOSS_LOG_FILE = "loss_log.csv"
LOSS_PLOT_FILE = "loss_curve.png"
LOSS_LOG_FIELDS = ("step", "epoch", "loss", "learning_rate", "grad_norm")
PLOT_SIZE_INCHES = (8, 4.5)
PLOT_DPI = 100


@dataclass(frozen=True)
class LossPoint:
    step: int
    epoch: float
    loss: float
    learning_rate: float | None = None
    grad_norm: float | None = None


def loss_points(log_history: Sequence[dict]) -> list[LossPoint]:
    """The training-loss entries of a Trainer ``state.log_history`` (final summaries are left out)."""
    points = []
    for entry in log_history:
        if "loss" not in entry or "step" not in entry:
            continue
        points.append(
            LossPoint(
                step=int(entry["step"]),
                epoch=float(entry.get("epoch", 0.0)),
                loss=float(entry["loss"]),
                learning_rate=_optional_float(entry.get("learning_rate")),
                grad_norm=_optional_float(entry.get("grad_norm")),
            )
        )
    return points


def _optional_float(value) -> float | None:
    return None if value is None else float(value)


def write_loss_log(path: Path, points: Sequence[LossPoint]) -> Path:
    with atomic_output(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(LOSS_LOG_FIELDS)
        for p in points:
            writer.writerow(
                [p.step, f"{p.epoch:.4f}", f"{p.loss:.6f}", _blank(p.learning_rate), _blank(p.grad_norm)]
            )
    return path


def _blank(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def read_loss_log(path: Path) -> list[LossPoint]:
    with Path(path).open(newline="", encoding="utf-8") as f:
        return [
            LossPoint(
                step=int(row["step"]),
                epoch=float(row["epoch"]),
                loss=float(row["loss"]),
                learning_rate=float(row["learning_rate"]) if row["learning_rate"] else None,
                grad_norm=float(row["grad_norm"]) if row["grad_norm"] else None,
            )
            for row in csv.DictReader(f)
        ]


def plot_loss(path: Path, points: Sequence[LossPoint], title: str) -> Path:
    """Training loss against step, as a PNG (headless matplotlib backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=PLOT_SIZE_INCHES)
    try:
        if points:
            ax.plot(
                [p.step for p in points], [p.loss for p in points], marker="." if len(points) < 50 else None
            )
        else:
            ax.text(0.5, 0.5, "no loss logged (run shorter than --logging-steps)", ha="center", va="center")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=PLOT_DPI, format="png")
    finally:
        plt.close(fig)
    return path
