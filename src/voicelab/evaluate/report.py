"""``summary.md`` and the ``--compare`` table (markdown), and the files of an evaluation.

The files' names and the JSON layout on disk are ``voicelab.voice.VoiceFolder``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from voicelab import orpheus
from voicelab.evaluate.metrics import finite_or_none
from voicelab.evaluate.recording import Sample
from voicelab.evaluate.tag_check import render_tags
from voicelab.voice import VoiceFolder


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def render_summary(report: dict[str, Any]) -> str:
    """``summary.md``: one verdict line per check, then what the numbers mean."""
    s = report["summary"]
    lines = [
        f"# Evaluation of {report['voice']}",
        "",
        f"{report['created_at']}; engine {report['settings']['engine']}; base model {report['models']['base_model']}; "
        f"reference: {len(report['reference']['clips'])} {report['reference']['source']} clips; "
        f"{s['samples']} texts spoken.",
        "",
        "| check | value | threshold | verdict |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {c['check']} | {_fmt(c['value'])} | {c['threshold']} | {c['verdict']} |" for c in report["checks"]
    ]
    lines += [
        "",
        f"Speaker similarity: voice {_fmt(s['speaker_similarity'])}, base model {_fmt(s['base_speaker_similarity'])}, "
        f"reference clips among themselves {_fmt(report['reference'].get('self_similarity'))}.",
        f"Speech rate {_fmt(s['speech_rate'])} words/s (dataset {_fmt(s['dataset_speech_rate'])}); "
        f"DNSMOS sig {_fmt(s['dnsmos_sig'])}, bak {_fmt(s['dnsmos_bak'])} "
        f"(reference clips: ovrl {_fmt((report['reference'].get('dnsmos') or {}).get('ovrl'))}).",
        f"Closest training clip to a novel sentence: {s['closest_training_clip'] or 'n/a'} "
        f"(code overlap {_fmt(s['max_code_overlap'])}).",
    ]
    lines += render_tags(report.get("tags"))
    failed = [c for c in report["checks"] if c["verdict"] == "FAIL"]
    if failed:
        lines += ["", "What to try:"] + [f"- {c['check']}: {c['advice']}" for c in failed]
    return "\n".join(lines) + "\n"


def sample_record(sample: Sample, file: str | None) -> dict[str, Any]:
    return {
        "id": sample.id,
        "kind": sample.kind,
        "model": sample.model,
        "text": sample.text,
        "reference_clip": sample.reference_key,
        "file": file,
        "frames": len(sample.frames),
        "pieces": sample.pieces,
        "generated_tokens": sample.generated_tokens,
        "hit_max_tokens": sample.hit_max_tokens,
        "error": sample.error,
        **sample.metrics,
    }


def write_outputs(
    voice: VoiceFolder, eval_dir: Path, report: dict[str, Any], samples: Sequence[Sample]
) -> Path:
    """The evaluation's files under ``eval_dir`` (``VoiceFolder.write_evaluation``: the numbers, the
    summary, each sample's audio; old samples replaced); returns the numbers' path."""
    audio, records = {}, []
    for sample in samples:
        file = None
        if len(sample.audio):
            file = voice.sample_file(sample.model, sample.id)
            audio[file] = sample.audio
        records.append(sample_record(sample, file))
    report = finite_or_none({**report, "samples": records})
    return voice.write_evaluation(eval_dir, report, render_summary(report), audio, orpheus.SAMPLE_RATE)


def compare_table(reports: Sequence[dict[str, Any]]) -> str:
    """Markdown table of the headline numbers and verdicts of several evaluations side by side."""
    labels = [r["voice"] for r in reports]
    lines = ["| | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    keys = [
        "speaker_similarity",
        "base_speaker_similarity",
        "similarity_gain",
        "wer",
        "cer",
        "dnsmos_ovrl",
        "speech_rate",
        "speech_rate_ratio",
        "hit_max_tokens",
        "too_long",
        "long_silences",
        "max_code_overlap",
        "eval_loss",
    ]
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(_fmt(r["summary"].get(key)) for r in reports) + " |")
    for i, check in enumerate(reports[0]["checks"]):
        lines.append(f"| {check['check']} | " + " | ".join(r["checks"][i]["verdict"] for r in reports) + " |")
    return "\n".join(lines) + "\n"
