"""dataset_report.png: one picture of a prepared dataset for a person to look at before training.

Five panels: clip lengths, speaker similarity to the dataset's voice (threshold marked), DNSMOS scores,
minutes kept per source (with the minutes of other voices and music prepare-audio dropped, when it kept
one voice), and the expressive tags (clips per Orpheus tag against the ~100 examples a tag
needs, unknown annotations named); the title gives the guide's tier by the lower of clips and minutes. Kept =
clips with a transcript row that excluded.csv does not list (what training uses).

The speaker comparison it shows (threshold and reference given to transcribe) is kept beside it, so the
studio can draw it again when exclusions change, and in one column for a phone (``LAYOUTS``).
"""

from __future__ import annotations

import logging
import textwrap
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path

from voicelab.dataset import (
    ORPHEUS_TAGS,
    TAG_EXAMPLES_NEEDED,
    ClipSignals,
    ManifestError,
    PreparedDataset,
    SourceMinutes,
    count_tags,
    tag_spelling,
)
from voicelab.review import LOW_BAK, SpeakerContext

logger = logging.getLogger(__name__)

FIGURE_SIZE_IN = (17, 8)
DPI = 100  # 1700 x 800 px
WIDE = [["lengths", "speaker", "tags"], ["dnsmos", "sources", "tags"]]
NARROW = [["lengths"], ["speaker"], ["dnsmos"], ["sources"], ["tags"]]
LAYOUTS = {"wide": (WIDE, FIGURE_SIZE_IN, 40, 120), "narrow": (NARROW, (4, 15.5), 20, 30)}
"""The panels' places (a matplotlib mosaic), inches, the longest source name shown and the longest title
line: two rows beside the tags on a screen; one column 400 px wide for a phone (about its screen's width,
so the text keeps its size; five panels of ~3 in each)."""
MAX_UNKNOWN_SHOWN = 4  # unknown annotations named in the tags panel's title (most frequent first)
TAG_AXIS_HEADROOM = 1.2  # the tags' x axis reaches past the guidance line and the longest bar
SIMILARITY_BINS = 40
SCORE_BINS = 32
_DRAWING = threading.Lock()
"""Held while pyplot draws (``draw_report``)."""
MOS_RANGE = (1.0, 5.0)
MAX_SOURCES_SHOWN = 25  # more sources than this: the 25 largest, the rest summed as "other"


def _sources(ds: PreparedDataset) -> dict[str, str]:
    """Clip key -> source file, from the folder's manifest when prepare-audio wrote one."""
    try:
        return ds.clip_sources()
    except ManifestError as e:
        logger.warning("dataset report: %s; minutes per source left out", e)
        return {}


def _minutes_per_source(kept: Sequence[ClipSignals], sources: dict[str, str]) -> list[tuple[str, float]]:
    minutes: dict[str, float] = defaultdict(float)
    for clip in kept:
        minutes[sources.get(clip.key, "(not in manifest)")] += (clip.duration_s or 0.0) / 60
    ranked = sorted(minutes.items(), key=lambda kv: -kv[1])
    if len(ranked) > MAX_SOURCES_SHOWN:
        rest = sum(m for _, m in ranked[MAX_SOURCES_SHOWN - 1 :])
        ranked = [*ranked[: MAX_SOURCES_SHOWN - 1], (f"{len(ranked) - MAX_SOURCES_SHOWN + 1} others", rest)]
    return ranked


def _dropped_bars(
    ax, names: Sequence[str], kept: Sequence[float], voices: Mapping[str, SourceMinutes]
) -> None:
    """Beside each source's kept minutes, the minutes prepare-audio dropped as other voices and as music
    (written when it kept one voice)."""
    if not voices:
        return
    other = [voices[n].other_voices_min if n in voices else 0.0 for n in names]
    music = [voices[n].music_min if n in voices else 0.0 for n in names]
    rows = range(len(names))
    ax.barh(rows, other, left=kept, color="tab:gray", label="other voices (dropped)")
    ax.barh(
        rows,
        music,
        left=[k + o for k, o in zip(kept, other, strict=True)],
        color="tab:orange",
        label="music (dropped)",
    )
    ax.legend(fontsize=8)


def _draw_tags(ax, kept: Sequence[ClipSignals], line: int) -> None:
    """Clips (and occurrences) per Orpheus tag in the kept texts, the guidance line, the unknown ones
    (wrapped at ``line`` characters)."""
    census = count_tags(c.text for c in kept)
    counts = [census.tags.get(t) for t in ORPHEUS_TAGS]
    clips = [c.clips if c else 0 for c in counts]
    rows = range(len(ORPHEUS_TAGS))
    ax.barh(rows, clips, color=["tab:green" if n >= TAG_EXAMPLES_NEEDED else "tab:orange" for n in clips])
    ax.set_yticks(rows, [tag_spelling(t) for t in ORPHEUS_TAGS])
    ax.invert_yaxis()
    for row, count in zip(rows, counts, strict=True):
        if count:
            ax.annotate(
                f" {count.clips} clips ({count.occurrences}x)", (count.clips, row), va="center", fontsize=8
            )
    ax.axvline(
        TAG_EXAMPLES_NEEDED, color="tab:red", linestyle="--", label=f"~{TAG_EXAMPLES_NEEDED} to learn a tag"
    )
    ax.set_xlim(0, TAG_AXIS_HEADROOM * max([TAG_EXAMPLES_NEEDED, *clips]))
    ax.legend(loc="lower right")
    frequent = sorted(census.unknown.items(), key=lambda kv: -kv[1].clips)[:MAX_UNKNOWN_SHOWN]
    unknown = ", ".join(f"{s} ({c.clips})" for s, c in frequent)
    ax.set(
        title="Expressive tags (clips kept)"
        + ("\n" + textwrap.fill(f"unknown, removed in training: {unknown}", line) if unknown else ""),
        xlabel="clips",
    )


def write_dataset_report(
    ds: PreparedDataset,
    clips: Sequence[ClipSignals],
    speakers: SpeakerContext,
    *,
    excluded: dict[str, str] | None = None,
) -> Path:
    """Draw the report for ``clips`` (the review's inputs) into the dataset's report picture (PNG, written
    atomically), and keep the speaker comparison it shows for a later redraw; returns its path."""
    path = ds.write_report(lambda tmp: draw_report(tmp, ds, clips, speakers, excluded=excluded))
    ds.write_report_inputs(asdict(speakers))
    return path


def draw_report(
    out,
    ds: PreparedDataset,
    clips: Sequence[ClipSignals],
    speakers: SpeakerContext,
    *,
    excluded: dict[str, str] | None = None,
    layout: str = "wide",
) -> None:
    """``_draw_report``, one drawing at a time in the process: matplotlib's pyplot is not thread-safe, and
    the studio redraws for requests in threads."""
    with _DRAWING:
        _draw_report(out, ds, clips, speakers, excluded=excluded, layout=layout)


def _draw_report(
    out,
    ds: PreparedDataset,
    clips: Sequence[ClipSignals],
    speakers: SpeakerContext,
    *,
    excluded: dict[str, str] | None = None,
    layout: str = "wide",
) -> None:
    """The report as a PNG into ``out`` (a path or a binary file); ``layout``: a key of ``LAYOUTS``. The
    title is also the PNG's ``Title``, for tools (and tests) to read."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    from voicelab.dataset_tiers import dataset_level, level_basis

    excluded = excluded or {}
    kept = [c for c in clips if c.text and c.key not in excluded]
    kept_min = sum(c.duration_s or 0.0 for c in kept) / 60
    tier = dataset_level(len(kept), kept_min)[2]
    mosaic, size, longest_name, line = LAYOUTS[layout]
    fig, panels = plt.subplot_mosaic(mosaic, figsize=size)
    axes = [[panels["lengths"], panels["speaker"]], [panels["dnsmos"], panels["sources"]]]
    title = f"{ds.name}: {len(kept)} clips kept ({len(excluded)} excluded) -> guide's tier: {tier}"
    fig.suptitle(
        textwrap.fill(title, line) + "\n" + textwrap.fill(f"({level_basis(len(kept), kept_min)})", line)
    )
    _lengths(axes[0][0], clips)
    _similarity(axes[0][1], speakers, line)
    _dnsmos(axes[1][0], clips)
    _per_source(axes[1][1], _minutes_per_source(kept, _sources(ds)), ds.read_source_voices(), longest_name)
    _draw_tags(panels["tags"], kept, line)
    fig.tight_layout()
    try:
        fig.savefig(out, format="png", dpi=DPI, metadata={"Title": title})
    finally:
        plt.close(fig)


def redraw_report(ds: PreparedDataset, *, layout: str = "wide", out=None) -> bool:
    """Draw the report again from the folder's files: the clips' measures and texts, the exclusions as
    they are now, the speaker comparison transcribe kept. Into the report picture (atomically), or into
    ``out``. False when there is no speaker comparison kept (a report drawn before it was)."""
    inputs = ds.read_report_inputs()
    if inputs is None:
        return False
    speakers = SpeakerContext.from_dict(inputs)
    clips = _clips_now(ds.read_rows(), ds.read_signals())
    excluded = ds.read_exclusions()
    if out is not None:
        draw_report(out, ds, clips, speakers, excluded=excluded, layout=layout)
    else:
        ds.write_report(lambda tmp: draw_report(tmp, ds, clips, speakers, excluded=excluded, layout=layout))
    return True


def _clips_now(rows: dict[str, str], signals: dict[str, ClipSignals]) -> list[ClipSignals]:
    """Each clip's measures with its text as the transcript has it now (a person may have edited it)."""
    clips = [
        replace(signals[k], text=t) if k in signals else ClipSignals(k, t, None) for k, t in rows.items()
    ]
    return clips + [rec for k, rec in signals.items() if k not in rows]


def _lengths(ax, clips: Sequence[ClipSignals]) -> None:
    ax.hist([c.duration_s for c in clips if c.duration_s], bins=range(0, 31), color="tab:blue")
    ax.set(title="Clip length", xlabel="seconds", ylabel="clips")


def _similarity(ax, speakers: SpeakerContext, line: int) -> None:
    sims = list(speakers.similarity.values())
    if sims:
        ax.hist(sims, bins=SIMILARITY_BINS, color="tab:green")
        ax.axvline(
            speakers.threshold, color="tab:red", linestyle="--", label=f"threshold {speakers.threshold:.2f}"
        )
        if speakers.outlier_below is not None and speakers.outlier_below > speakers.threshold:
            ax.axvline(speakers.outlier_below, color="tab:orange", linestyle=":", label="unlike the rest")
        ax.legend()
    against = speakers.reference or "the dominant voice"
    title = textwrap.fill(f"Speaker similarity to {against}", line)
    ax.set(title=title, xlabel="cosine similarity", ylabel="clips")


def _dnsmos(ax, clips: Sequence[ClipSignals]) -> None:
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


def _per_source(
    ax, per_source: list[tuple[str, float]], dropped: Mapping[str, SourceMinutes], longest_name: int
) -> None:
    if per_source:
        names, mins = zip(*reversed(per_source), strict=True)
        rows = range(len(names))
        ax.barh(rows, mins, color="tab:purple", label="kept")
        _dropped_bars(ax, names, mins, dropped)
        shown = [n if len(n) <= longest_name else "..." + n[3 - longest_name :] for n in names]
        ax.set_yticks(rows, shown, fontsize=8)
    ax.set(title="Minutes kept per source", xlabel="minutes")
