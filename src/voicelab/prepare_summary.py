"""prepare-audio's end-of-run report: what was made, what was left out and why, where the dataset stands."""

from __future__ import annotations

import math

import numpy as np

from voicelab import segment
from voicelab.dataset import MANIFEST_FILE, SOURCE_VOICES_FILE, SOURCES_LEFT_OUT_FILE, VOICE_PRINT_FILE
from voicelab.dataset_tiers import DATASET_LEVELS, LEVEL_MINUTES, dataset_level, level_basis
from voicelab.prepare import MUSIC_BED_KEEP, PrepareReport

ADAPTIVE_SHOWN = 5  # how many adaptively cut sources the summary names before "..."


def duration_histogram(durations: list[float], low: float, high: float, width: int = 30) -> list[str]:
    """Text histogram of clip durations in 1 s bins from ``floor(low)`` to ``ceil(high)``."""
    edges = list(range(math.floor(low), math.ceil(high) + 1))
    if len(edges) < 2 or not durations:
        return []
    counts, _ = np.histogram(np.clip(durations, edges[0], edges[-1]), bins=edges)
    biggest = max(int(counts.max()), 1)
    labels = [f"{lo}-{lo + 1} s" for lo in edges[:-1]]
    label_width = max(len(label) for label in labels)
    lines = []
    for label, count in zip(labels, counts, strict=True):
        bar = "#" * math.ceil(width * int(count) / biggest) if count else ""
        lines.append(f"  {label:>{label_width}} | {bar:<{width}} {int(count)}")
    return lines


def format_summary(report: PrepareReport) -> str:
    """The end-of-run report a user reads: what was made, what was left out and why, where the dataset stands."""
    return "\n".join(
        [*_made(report), *_voice_lines(report), *_cuts(report), *_left_out(report), *_standing(report)]
    )


def _made(report: PrepareReport) -> list[str]:
    s, new, done = report.settings, report.new_records, report.done
    input_min = sum(r.duration_s for r in done) / 60
    lines = [
        f"Prepared {len(done)} file(s), {len(report.failed)} failed, {len(report.skipped)} already done "
        f"(skipped) -> {report.output}",
        f"  clips written: {len(new)} ({sum(r.duration_s for r in new) / 60:.1f} min) "
        f"from {input_min:.1f} min of audio",
    ]
    if done:
        silence = sum(r.silence_s for r in done) / 60
        short = sum(r.short_speech_s for r in done) / 60
        lines.append(
            f"  left out: {silence:.1f} min silence and pauses (under {s.silence_threshold:g} dBFS), "
            f"{short:.1f} min speech too short for a {s.min_duration:g}-{s.max_duration:g} s clip"
        )
    limited = sum(r.peak_limited for r in new)
    if limited:
        lines.append(
            f"  {limited} clip(s) peak-limited: quieter than {s.target_loudness:g} dBFS RMS so that no sample "
            f"clips (peak_limited=yes in {MANIFEST_FILE})"
        )
    return lines


MAX_SOURCES_LISTED = 20  # per-source lines in the summary; source_voices.csv has them all


def _voice_lines(report: PrepareReport) -> list[str]:
    """Which voice was kept, the others found, and per source where its minutes went."""
    s = report.settings
    lines = []
    if s.separate_vocals and report.done:
        lines.append(
            f"  vocals separated (demucs {s.demucs_model}) in {len(report.done)} file(s): the cuts, voices and "
            "music below were measured on the vocals stem, and the clips are cut from it"
        )
    if report.reference is not None:
        lines.append(
            f"  voice kept: the reference's ({len(report.reference.sources)} file(s), "
            f"{report.reference.seconds:.1f} s of speech), similarity >= {s.speaker_threshold:g}"
        )
    elif report.voices_found:
        kept, *others = report.voices_found
        found = ", ".join(f"{v.seconds / 60:.1f} min" for v in others) or "none"
        lines.append(
            f"  voice kept (--speaker auto): the one that speaks most, {kept.seconds / 60:.1f} min; "
            f"other voices found: {len(others)} ({found})"
        )
    elif report.voice_from_earlier_run is not None:
        lines.append(
            f"  voice kept (--speaker auto): the one an earlier run picked ({report.voice_from_earlier_run:.1f} "
            f"min then; {VOICE_PRINT_FILE}; --overwrite picks again)"
        )
    elif s.speaker_auto:
        lines.append("  --speaker auto: no voice found to keep (no stretch of speech long enough to judge)")
    selected = [r for r in report.done if r.selected]
    if not selected:
        return lines
    music_what = "music alone" if s.music_bed == MUSIC_BED_KEEP else "music, and speech over music"
    lines.append(
        f"  per source: min kept / other voices dropped / {music_what} dropped / too short to tell whose "
        f"(all in {SOURCE_VOICES_FILE})"
    )
    for r in selected[:MAX_SOURCES_LISTED]:
        lines.append(
            f"    {r.source}: {r.clip_s / 60:.1f} / {r.other_voice_s / 60:.1f} / {r.music_s / 60:.1f} / "
            f"{r.unjudged_s / 60:.1f}"
        )
    if len(selected) > MAX_SOURCES_LISTED:
        lines.append(f"    ... {len(selected) - MAX_SOURCES_LISTED} more")
    never = [r.source for r in selected if r.character_s == 0]
    if never:
        lines.append(
            f"  the character never speaks in {len(never)} file(s) (in {SOURCES_LEFT_OUT_FILE}): "
            + ", ".join(never)
        )
    lines.extend(_reference_hint(report, selected))
    kept_bed = sum(r.music == "bed" for r in report.new_records)
    if kept_bed:
        lines.append(f"  {kept_bed} clip(s) over a music bed, kept (music=bed in {MANIFEST_FILE})")
    return lines


REFERENCE_HINT_SHARE = 0.10
"""Share of the judged speech under which the summary asks whether ``--reference`` is the right voice: a
reference of someone who is not in the recordings still finds a few stretches just over the threshold."""


def _reference_hint(report: PrepareReport, selected: list) -> list[str]:
    """A line when the reference's voice is a small share of the speech judged: the wrong file, perhaps."""
    character = sum(r.character_s for r in selected)
    judged = character + sum(r.other_voice_s for r in selected)
    if report.reference is None or not judged or character / judged >= REFERENCE_HINT_SHARE:
        return []
    return [
        f"  the reference's voice is {character / judged:.0%} of the speech judged ({character / 60:.1f} of "
        f"{judged / 60:.1f} min): if the character speaks more than that, check that --reference is a clean "
        "recording of the character alone"
    ]


def _cuts(report: PrepareReport) -> list[str]:
    s, done, lines = report.settings, report.done, []
    inside = [r for r in report.new_records if segment.CUT_FORCED in (r.start_cut, r.end_cut)]
    if inside:
        lines.append(
            f"  {len(inside)} clip(s) cut inside speech with no pause to cut at (cut=forced in {MANIFEST_FILE}): "
            "listen to them, or raise --silence-threshold (e.g. -35) so the gaps between words count as silence"
        )
    adaptive = [r for r in done if r.cut_method == segment.METHOD_ADAPTIVE]
    if adaptive:
        shown = ", ".join(f"{r.source} ({r.threshold_db:g} dBFS)" for r in adaptive[:ADAPTIVE_SHOWN])
        more = f", ... ({len(adaptive)} in all)" if len(adaptive) > ADAPTIVE_SHOWN else ""
        lines.append(
            f"  cuts: {len(done) - len(adaptive)} file(s) at the fixed {s.silence_threshold:g} dBFS threshold, "
            f"{len(adaptive)} quiet one(s) at an adaptive threshold {segment.ADAPTIVE_DEPTH_DB:g} dB under their "
            f"own speech level, where {s.silence_threshold:g} dBFS would cut inside words "
            f"(cut_method in {MANIFEST_FILE}): {shown}{more}"
        )
    elif done:
        lines.append(
            f"  cuts: every file at the fixed {s.silence_threshold:g} dBFS threshold (cut_method=fixed)"
        )
    return lines


def _left_out(report: PrepareReport) -> list[str]:
    lines = []
    if report.remembered:
        lines.append(
            f"  {len(report.remembered)} file(s) left out by an earlier run and unchanged since, not tried again "
            f"(why: {SOURCES_LEFT_OUT_FILE}; fix or replace them, or rerun with --retry-failed): "
            + ", ".join(note.source for note in report.remembered)
        )
    silent = [r.source for r in report.done if not r.records]
    if silent:
        lines.append(f"  no clips from {len(silent)} file(s): {', '.join(silent)}")
    if report.failed:
        lines.append(f"  failed ({len(report.failed)}), left out:")
        lines.extend(f"    {r.error}" for r in report.failed)
    return lines


def _standing(report: PrepareReport) -> list[str]:
    """The whole dataset's clip lengths and its row of the guide's table (and what the next row needs)."""
    s, dataset, lines = report.settings, report.dataset, []
    if dataset:
        durations = [r.duration_s for r in dataset]
        lines.append(f"Clip durations, whole dataset ({len(dataset)} clips):")
        lines.extend(duration_histogram(durations, s.min_duration, s.max_duration))
    total_min = sum(r.duration_s for r in dataset) / 60
    _clips, _minutes, quality, notes = dataset_level(len(dataset), total_min)
    lines.append(
        f"Dataset: {len(dataset)} clips, {total_min:.1f} min -> guide's Dataset Size vs Quality table: "
        f"{quality} ({notes}; {level_basis(len(dataset), total_min)})"
    )
    rank = [lvl[3] for lvl in DATASET_LEVELS].index(quality)
    if rank > 0:
        nxt, need_min = DATASET_LEVELS[rank - 1], LEVEL_MINUTES[rank - 1]
        lines.append(f"  next level: {nxt[3]} from {nxt[0]} clips and {need_min:g} min")
    return lines
