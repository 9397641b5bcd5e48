"""dataset_report.png: one picture of a prepared dataset for a person to look at before training.

Five panels: clip lengths, speaker similarity to the dataset's voice (threshold marked), DNSMOS scores,
minutes kept per source (with the minutes of other voices and music prepare-audio dropped, when it kept
one voice), and the expressive tags (clips per Orpheus tag against the ~100 examples a tag
needs, unknown annotations named); the title gives the guide's tier by the lower of clips and minutes. Kept =
clips with a transcript row that excluded.csv does not list (what training uses).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
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
PANELS = [["lengths", "speaker", "tags"], ["dnsmos", "sources", "tags"]]
MAX_UNKNOWN_SHOWN = 4  # unknown annotations named in the tags panel's title (most frequent first)
TAG_AXIS_HEADROOM = 1.2  # the tags' x axis reaches past the guidance line and the longest bar
SIMILARITY_BINS = 40
SCORE_BINS = 32
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


def _draw_tags(ax, kept: Sequence[ClipSignals]) -> None:
    """Clips (and occurrences) per Orpheus tag in the kept texts, the guidance line, the unknown ones."""
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
        + (f"\nunknown, removed in training: {unknown}" if unknown else ""),
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
    atomically); returns its path."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    from voicelab.dataset_tiers import dataset_level, level_basis

    excluded = excluded or {}
    kept = [c for c in clips if c.text and c.key not in excluded]
    kept_min = sum(c.duration_s or 0.0 for c in kept) / 60
    tier = dataset_level(len(kept), kept_min)[2]
    fig, panels = plt.subplot_mosaic(PANELS, figsize=FIGURE_SIZE_IN)
    axes = [[panels["lengths"], panels["speaker"]], [panels["dnsmos"], panels["sources"]]]
    fig.suptitle(
        f"{ds.name}: {len(kept)} clips kept ({len(excluded)} excluded) -> guide's tier: {tier}\n"
        f"({level_basis(len(kept), kept_min)})"
    )
    _lengths(axes[0][0], clips)
    _similarity(axes[0][1], speakers)
    _dnsmos(axes[1][0], clips)
    _per_source(axes[1][1], _minutes_per_source(kept, _sources(ds)), ds.read_source_voices())
    _draw_tags(panels["tags"], kept)
    fig.tight_layout()
    try:
        return ds.write_report(lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    finally:
        plt.close(fig)


def _lengths(ax, clips: Sequence[ClipSignals]) -> None:
    ax.hist([c.duration_s for c in clips if c.duration_s], bins=range(0, 31), color="tab:blue")
    ax.set(title="Clip length", xlabel="seconds", ylabel="clips")


def _similarity(ax, speakers: SpeakerContext) -> None:
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
    ax.set(title=f"Speaker similarity to the {against}", xlabel="cosine similarity", ylabel="clips")


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


def _per_source(ax, per_source: list[tuple[str, float]], dropped: Mapping[str, SourceMinutes]) -> None:
    if per_source:
        names, mins = zip(*reversed(per_source), strict=True)
        rows = range(len(names))
        ax.barh(rows, mins, color="tab:purple", label="kept")
        _dropped_bars(ax, names, mins, dropped)
        ax.set_yticks(rows, [n if len(n) <= 40 else "..." + n[-37:] for n in names], fontsize=8)
    ax.set(title="Minutes kept per source", xlabel="minutes")
