"""The bar each check is held to, the headline numbers of one evaluation, and a verdict per check."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from voicelab.dataset import REVIEW_FILE
from voicelab.evaluate.metrics import error_rates, mean_of, median_of
from voicelab.evaluate.recording import Sample
from voicelab.evaluate_settings import Thresholds


def summarize(samples: Sequence[Sample], reference: dict[str, Any], th: Thresholds) -> dict[str, Any]:
    """The headline numbers of one evaluation (what ``GET /v1/audio/voices`` shows)."""
    voice = [s for s in samples if s.model == "voice"]
    base = [s for s in samples if s.model == "base"]
    sim = mean_of(s.metrics.get("speaker_similarity") for s in voice)
    base_sim = mean_of(s.metrics.get("speaker_similarity") for s in base)
    heard = [s for s in voice if "wer" in s.metrics]
    wer, cer = (
        error_rates([s.text for s in heard], [s.metrics["transcript"] for s in heard])
        if heard
        else (None, None)
    )
    rate = median_of(s.metrics.get("speech_rate") for s in voice)
    ref_rate = reference.get("speech_rate")
    novel = [s for s in voice if s.metrics.get("code_overlap") is not None]
    closest = max(novel, key=lambda s: s.metrics["code_overlap"], default=None)

    def dns(key: str) -> float | None:
        return mean_of((s.metrics.get("dnsmos") or {}).get(key) for s in voice)

    return {
        "speaker_similarity": sim,
        "base_speaker_similarity": base_sim,
        "similarity_gain": sim - base_sim if sim is not None and base_sim is not None else None,
        "wer": wer,
        "cer": cer,
        "dnsmos_ovrl": dns("ovrl"),
        "dnsmos_sig": dns("sig"),
        "dnsmos_bak": dns("bak"),
        "speech_rate": rate,
        "dataset_speech_rate": ref_rate,
        "speech_rate_ratio": rate / ref_rate if rate is not None and ref_rate else None,
        "samples": len(voice),
        "hit_max_tokens": sum(s.hit_max_tokens for s in voice),
        "too_long": sum((s.metrics.get("duration_ratio") or 0) > th.max_duration_ratio for s in voice),
        "long_silences": sum(s.metrics.get("longest_silence_s", 0) > th.max_silence_s for s in voice),
        "longest_silence_s": max((s.metrics.get("longest_silence_s", 0.0) for s in voice), default=None),
        "max_code_overlap": closest.metrics["code_overlap"] if closest else None,
        "closest_training_clip": closest.metrics["nearest_training_clip"] if closest else None,
        "overfit_sentences": sum(s.metrics["code_overlap"] > th.max_code_overlap for s in novel),
    }


ADVICE = {
    "similarity": "train longer or on more clips of the character; check the dataset is one speaker "
    f"({REVIEW_FILE})",
    "gain": "the adapter barely changed the voice: more epochs, a higher learning rate or rank, more data",
    "intelligibility": "mumbled or wrong words: fewer epochs or a lower learning rate (overtrained), "
    "check the transcripts match the audio, more data",
    "naturalness": "noisy or distorted output: clean the dataset (drop noisy clips), fewer epochs",
    "rate": "speaking too fast or slow: more data with the character's natural pace; check clip trimming",
    "runaway": "the voice rambles past the text: fewer epochs, a lower learning rate; check transcripts "
    "cover each clip's whole speech",
    "silence": "long pauses: trim silences in the dataset (make prepare-audio), fewer epochs",
    "overfitting": "the voice replays a training clip: fewer epochs, a lower learning rate, more data",
    "tags": "a trained tag is read as a word: more clips with that tag (about 100), spelled as the "
    "prompt spells it (<laugh>); check the transcripts put the tag where the sound is",
}

BOUNDED_CHECKS = (
    # (check, summary key, Thresholds field, ">=" or "<=", ADVICE key)
    ("speaker similarity", "speaker_similarity", "min_similarity", ">=", "similarity"),
    ("similarity gain over the base model", "similarity_gain", "min_similarity_gain", ">=", "gain"),
    ("word error rate", "wer", "max_wer", "<=", "intelligibility"),
    ("character error rate", "cer", "max_cer", "<=", "intelligibility"),
    ("DNSMOS overall", "dnsmos_ovrl", "min_dnsmos", ">=", "naturalness"),
)
"""The checks of one number against one bound (n/a when the number could not be measured)."""


def _check(name: str, value, ok: bool | None, threshold: str, advice: str) -> dict[str, Any]:
    verdict = "n/a" if ok is None else ("pass" if ok else "FAIL")
    return {"check": name, "value": value, "threshold": threshold, "verdict": verdict, "advice": advice}


def _bounded(summary: dict[str, Any], th: Thresholds) -> list[dict[str, Any]]:
    checks = []
    for name, key, bound_name, op, advice in BOUNDED_CHECKS:
        value, bound = summary[key], getattr(th, bound_name)
        ok = None if value is None else (value >= bound if op == ">=" else value <= bound)
        checks.append(_check(name, value, ok, f"{op} {bound}", ADVICE[advice]))
    return checks


def verdicts(summary: dict[str, Any], th: Thresholds) -> list[dict[str, Any]]:
    """One verdict per check: "pass", "FAIL", or "n/a" (the number could not be measured)."""
    s = summary
    ratio = s["speech_rate_ratio"]
    rate_ok = None if ratio is None else abs(ratio - 1) <= th.max_rate_deviation
    runaways = s["hit_max_tokens"] + s["too_long"]
    overlap = s["max_code_overlap"]
    read_aloud = s.get("trained_tags_read_aloud")  # None: no tags check, or no trained tag
    return [
        *_bounded(s, th),
        _check("speech rate / dataset's", ratio, rate_ok, f"1 +- {th.max_rate_deviation}", ADVICE["rate"]),
        _check(
            "runaways (max_tokens hit or too long)",
            runaways,
            runaways == 0,
            f"0 (too long: > {th.max_duration_ratio} x the text's time)",
            ADVICE["runaway"],
        ),
        _check(
            "long silences",
            s["long_silences"],
            s["long_silences"] == 0,
            f"none > {th.max_silence_s} s",
            ADVICE["silence"],
        ),
        _check(
            "overfitting (code overlap with a training clip)",
            overlap,
            None if overlap is None else overlap <= th.max_code_overlap,
            f"<= {th.max_code_overlap}",
            ADVICE["overfitting"],
        ),
        _check(
            "trained tags read aloud",
            read_aloud,
            None if read_aloud is None else read_aloud == 0,
            "0",
            ADVICE["tags"],
        ),
    ]
