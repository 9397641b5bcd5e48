"""dataset_report.png: one picture of a prepared dataset for a person to look at before training.

Four panels: clip lengths, speaker similarity to the dataset's voice (threshold marked), DNSMOS scores,
minutes kept per source; the title gives the guide's tier by the lower of clips and minutes. Kept =
clips with a transcript row that excluded.csv does not list (what training uses).
"""

from __future__ import annotations

import logging
import textwrap
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

from voicelab.dataset import (
    REPORT_FILE,
    SIGNALS_FILE,
    TRANSCRIPT_FILE,
    clip_key,
    read_exclusions,
    read_report_inputs,
    read_transcript,
    write_report_inputs,
)
from voicelab.fileio import atomic_output
from voicelab.review import LOW_BAK, ClipSignals, SpeakerContext

logger = logging.getLogger(__name__)

FIGURE_SIZE_IN = (12, 8)
DPI = 100  # 1200 x 800 px
LAYOUTS = {"wide": ((2, 2), FIGURE_SIZE_IN, 40, 120), "narrow": ((4, 1), (4, 12.5), 20, 34)}
"""(rows, columns) of the four panels, inches, the longest source name shown and the longest title line:
two by two on a screen; one column 400 px wide for a phone (about its screen's width, so the text keeps
its size)."""
SIMILARITY_BINS = 40
SCORE_BINS = 32
MOS_RANGE = (1.0, 5.0)
MAX_SOURCES_SHOWN = 25  # more sources than this: the 25 largest, the rest summed as "other"


def _sources(dataset_dir: Path) -> dict[str, str]:
    """Clip name -> source file, from the folder's manifest when prepare-audio wrote one."""
    from voicelab.dataset import MANIFEST_FILE, ManifestError, read_manifest

    try:
        records = read_manifest(dataset_dir / MANIFEST_FILE)
    except ManifestError as e:
        logger.warning("dataset report: %s; minutes per source left out", e)
        return {}
    return {clip_key(r.clip): r.source for r in records}


def _minutes_per_source(kept: Sequence[ClipSignals], sources: dict[str, str]) -> list[tuple[str, float]]:
    minutes: dict[str, float] = defaultdict(float)
    for clip in kept:
        minutes[sources.get(clip.filename, "(not in manifest)")] += (clip.duration_s or 0.0) / 60
    ranked = sorted(minutes.items(), key=lambda kv: -kv[1])
    if len(ranked) > MAX_SOURCES_SHOWN:
        rest = sum(m for _, m in ranked[MAX_SOURCES_SHOWN - 1 :])
        ranked = [*ranked[: MAX_SOURCES_SHOWN - 1], (f"{len(ranked) - MAX_SOURCES_SHOWN + 1} others", rest)]
    return ranked


def write_dataset_report(
    path: Path,
    clips: Sequence[ClipSignals],
    speakers: SpeakerContext,
    *,
    excluded: dict[str, str] | None = None,
) -> Path:
    """Draw the report for ``clips`` (the review's inputs) into ``path`` (PNG, written atomically), and
    keep beside it the speaker comparison it shows, so it can be redrawn when the exclusions change."""
    with atomic_output(path) as tmp:
        draw_report(tmp, path.parent, clips, speakers, excluded=excluded)
    write_report_inputs(path.parent, speaker_inputs(speakers))
    return path


def draw_report(
    out,
    dataset_dir: Path,
    clips: Sequence[ClipSignals],
    speakers: SpeakerContext,
    *,
    excluded: dict[str, str] | None = None,
    layout: str = "wide",
) -> None:
    """The report as a PNG into ``out`` (a path or a binary file); ``layout``: a key of ``LAYOUTS``."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    from voicelab.prepare import dataset_level, level_basis

    excluded = excluded or {}
    kept = [c for c in clips if c.text and c.filename not in excluded]
    kept_min = sum(c.duration_s or 0.0 for c in kept) / 60
    tier = dataset_level(len(kept), kept_min)[2]
    (rows, columns), size, longest_name, line = LAYOUTS[layout]
    fig, grid = plt.subplots(rows, columns, figsize=size)
    axes = grid.reshape(2, 2)  # the same four panels in reading order, whatever the layout
    title = f"{dataset_dir.name}: {len(kept)} clips kept ({len(excluded)} excluded) -> guide's tier: {tier}"
    fig.suptitle(
        textwrap.fill(title, line) + "\n" + textwrap.fill(f"({level_basis(len(kept), kept_min)})", line)
    )
    ax = axes[0][0]
    ax.hist([c.duration_s for c in clips if c.duration_s], bins=range(0, 31), color="tab:blue")
    ax.set(title="Clip length", xlabel="seconds", ylabel="clips")

    ax = axes[0][1]
    sims = list(speakers.similarity.values())
    if sims:
        ax.hist(sims, bins=SIMILARITY_BINS, color="tab:green")
        ax.axvline(
            speakers.threshold, color="tab:red", linestyle="--", label=f"threshold {speakers.threshold:.2f}"
        )
        if speakers.outlier_below is not None and speakers.outlier_below > speakers.threshold:
            ax.axvline(speakers.outlier_below, color="tab:orange", linestyle=":", label="unlike the rest")
        ax.legend()
    against = "reference clips" if speakers.by_reference else "dominant voice"
    ax.set(
        title=textwrap.fill(f"Speaker similarity to the {against}", line),
        xlabel="cosine similarity",
        ylabel="clips",
    )

    ax = axes[1][0]
    for name, values in (
        ("SIG", [c.dnsmos_sig for c in clips]),
        ("BAK", [c.dnsmos_bak for c in clips]),
        ("OVRL", [c.dnsmos_ovrl for c in clips]),
    ):
        values = [v for v in values if v is not None]
        if values:
            ax.hist(values, bins=SCORE_BINS, range=MOS_RANGE, alpha=0.5, label=name)
    ax.axvline(LOW_BAK, color="tab:red", linestyle="--", label=f"BAK flag < {LOW_BAK:g}")
    ax.legend()
    ax.set(title="DNSMOS (1 bad - 5 excellent)", xlabel="score", ylabel="clips")

    ax = axes[1][1]
    per_source = _minutes_per_source(kept, _sources(dataset_dir))
    if per_source:
        names, mins = zip(*reversed(per_source), strict=True)
        ax.barh(range(len(names)), mins, color="tab:purple")
        shown = [n if len(n) <= longest_name else "..." + n[3 - longest_name :] for n in names]
        ax.set_yticks(range(len(names)), shown, fontsize=8)
    ax.set(title="Minutes kept per source", xlabel="minutes")
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=DPI, metadata={"Title": title})  # the headline, for tools to read
    plt.close(fig)


def speaker_inputs(speakers: SpeakerContext) -> dict:
    """The speaker comparison as JSON (``dataset_report.json``): what a redraw cannot recompute from the
    folder's files alone (the threshold and reference clips transcribe was given)."""
    return asdict(speakers)


def _clips_now(rows: dict[str, str], signals: dict[str, ClipSignals]) -> list[ClipSignals]:
    """Each clip's measures with its text as the transcript has it now (a person may have edited it)."""
    clips = [
        replace(signals[k], text=t) if k in signals else ClipSignals(k, t, None) for k, t in rows.items()
    ]
    return clips + [rec for k, rec in signals.items() if k not in rows]


def redraw_report(dataset_dir: Path, *, layout: str = "wide", out=None) -> bool:
    """Draw the report again from the folder's files: the clips' measures and texts, the exclusions as
    they are now, the speaker comparison transcribe kept. Into ``dataset_report.png`` (atomically), or
    ``out``. False when transcribe kept no speaker comparison (a report drawn before it did)."""
    from voicelab.transcribe import read_signals

    inputs = read_report_inputs(dataset_dir)
    if inputs is None:
        return False
    speakers = SpeakerContext(**inputs)
    rows = dict(read_transcript(dataset_dir / TRANSCRIPT_FILE))
    clips = _clips_now(rows, read_signals(dataset_dir / SIGNALS_FILE))
    excluded = read_exclusions(dataset_dir)
    if out is not None:
        draw_report(out, dataset_dir, clips, speakers, excluded=excluded, layout=layout)
        return True
    with atomic_output(dataset_dir / REPORT_FILE) as tmp:
        draw_report(tmp, dataset_dir, clips, speakers, excluded=excluded, layout=layout)
    return True
