"""Risk review: known numbers in, the right flags and order out."""

from __future__ import annotations

import csv

import pytest

from voicelab import review as rv
from voicelab.dataset import REVIEW_HEADER, PreparedDataset
from voicelab.review import ClipSignals

NORMAL_TEXT = "this is a perfectly ordinary sentence of speech"  # 47 chars
NORMAL_S = 3.5  # ~13.4 chars/s: typical conversational English


def clip(name="c", text=NORMAL_TEXT, duration=NORMAL_S, logprob=-0.3, no_speech=0.05, ratio=None):
    return ClipSignals(name, text, duration, logprob, no_speech, ratio)


def reasons(item):
    return " | ".join(f.reason for f in item.flags)


def test_an_ordinary_clip_is_not_flagged():
    assert rv.assess(clip(), median_cps=13.0).flags == []
    assert rv.review([clip(f"c{i}") for i in range(6)]) == []


def test_low_logprob_is_flagged_with_its_number():
    item = rv.assess(clip(logprob=-1.5), None)
    assert "low avg log-prob -1.50 < -1.0" in reasons(item)
    assert item.risk == pytest.approx(1.5)  # 1 + 50% past the threshold


def test_high_no_speech_probability_is_flagged():
    item = rv.assess(clip(no_speech=0.9), None)
    assert "high no-speech prob 0.90 > 0.6" in reasons(item)
    assert item.risk == pytest.approx(1.75)


def test_repetition_is_flagged_from_whisper_number_or_from_the_text():
    assert "compression ratio 3.00" in reasons(rv.assess(clip(ratio=3.0), None))
    looping = "thank you " * 40
    item = rv.assess(clip(text=looping, duration=30.0, logprob=None, no_speech=None), None)
    assert item.compression_ratio == pytest.approx(rv.compression_ratio(looping))
    assert "repetitive text" in reasons(item)


@pytest.mark.parametrize(
    "text",
    ["Thanks for watching!", "Please SUBSCRIBE to my channel.", "Subtitles by the Amara.org community"],
)
def test_known_hallucination_phrases_are_flagged(text):
    assert "known hallucination phrase" in reasons(rv.assess(clip(text=text, duration=2.0), None))


def test_phrases_match_whole_words_only():
    assert rv.find_hallucination_phrases("the subscribers wanted wwwhat") == []


def test_text_too_long_or_too_short_for_the_audio():
    long_item = rv.assess(clip(text="x" * 300, duration=3.0), None)  # 100 chars/s
    assert "text too long for the audio: 100.0 chars/s" in reasons(long_item)
    short_item = rv.assess(clip(text="Yes.", duration=10.0), None)  # 0.4 chars/s
    assert "text too short for the audio: 0.4 chars/s" in reasons(short_item)


def test_speaking_rate_outliers_are_judged_against_the_dataset_median():
    typical = [clip(f"n{i}", duration=NORMAL_S) for i in range(5)]
    fast = clip("fast", text=NORMAL_TEXT * 2, duration=NORMAL_S * 1.15)  # 1.74x the median, still plausible
    slow = clip("slow", duration=NORMAL_S * 2)  # half the median rate
    flagged = {i.signals.key: i for i in rv.review([*typical, fast, slow])}
    assert set(flagged) == {"fast", "slow"}
    assert "x the median 13.4" in reasons(flagged["fast"])
    assert "0.50x the median" in reasons(flagged["slow"])


def test_no_median_verdict_with_too_few_clips():
    few = [clip("a"), clip("b", duration=NORMAL_S * 2)]
    assert rv.median_chars_per_second(few) is None
    assert rv.review(few) == []


def test_riskiest_first_and_reasons_accumulate():
    items = rv.review(
        [
            clip("mild", logprob=-1.1),
            clip("bad", text="Thanks for watching!", duration=8.0, logprob=-2.0, no_speech=0.95),
            clip("fine"),
        ]
    )
    assert [i.signals.key for i in items] == ["bad", "mild"]
    assert len(items[0].flags) == 4  # log-prob, no-speech, phrase, too short


def test_empty_transcript_is_listed():
    item = rv.assess(clip(text="", logprob=None, no_speech=None), None)
    assert "empty transcript" in reasons(item)
    assert item.compression_ratio is None


def test_unknown_numbers_are_not_invented():
    item = rv.assess(ClipSignals("c", NORMAL_TEXT, None), None)
    assert item.flags == [] and item.chars_per_s is None


def test_review_file_has_reasons_and_numbers(tmp_path):
    items = rv.review([clip("bad", logprob=-1.5, no_speech=0.7, ratio=1.1), clip("ok")])
    path = PreparedDataset(tmp_path).write_review(rv.review_rows(items))
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1
    row = rows[0]
    assert row["filename"] == "bad"
    assert row["avg_logprob"] == "-1.500" and row["no_speech_prob"] == "0.700"
    assert row["compression_ratio"] == "1.10" and row["duration_s"] == "3.50" and row["chars_per_s"] == "13.4"
    assert "low avg log-prob" in row["reasons"] and "high no-speech prob" in row["reasons"]
    assert float(row["risk"]) == pytest.approx(items[0].risk, abs=0.01)


def test_empty_review_still_replaces_a_stale_one(tmp_path):
    path = tmp_path / "transcript_review.csv"
    path.write_text("stale\n", encoding="utf-8")
    PreparedDataset(tmp_path).write_review([])
    assert path.read_text(encoding="utf-8").splitlines() == [",".join(REVIEW_HEADER)]


def _at(similarity: float, seed: int):
    """A unit voice print with cosine ``similarity`` to the first axis (the "main voice")."""
    import numpy as np

    side = np.random.default_rng(seed).standard_normal(256)
    side[0] = 0.0
    side /= np.linalg.norm(side)
    v = np.zeros(256)
    v[0] = similarity
    return list(map(float, v + np.sqrt(1 - similarity**2) * side))


MAIN_SIMS = (0.93, 0.94, 0.95, 0.95, 0.96, 0.96, 0.97, 0.94, 0.95, 0.96, 0.95, 0.97)


def test_speaker_flags_other_voices_and_lists_outliers_without_excluding_them():
    vectors = [_at(s, i) for i, s in enumerate(MAIN_SIMS)]
    vectors += [_at(0.4, 100), _at(0.85, 101)]  # another voice; the same voice far off its usual
    clips = [
        ClipSignals(f"c{i:02d}", NORMAL_TEXT, NORMAL_S, -0.3, 0.05, embedding=list(map(float, v)))
        for i, v in enumerate(vectors)
    ]
    ctx = rv.speaker_context(clips)
    sims = ctx.similarity
    assert sims["c12"] < rv.DEFAULT_SPEAKER_THRESHOLD < sims["c13"] < ctx.outlier_below
    items = {i.signals.key: i for i in rv.review(clips, ctx)}
    assert next(iter(items)) == "c12"
    assert reasons(items["c12"]).startswith("other speaker? similarity")
    assert items["c12"].quality_reasons  # what --exclude-flagged copies to excluded.csv
    assert "voice unlike the other clips?" in reasons(items["c13"])
    assert items["c13"].quality_reasons == []  # listed for a listen, never excluded on its own
    assert not set(items) - {"c12", "c13"}


def test_reference_similarity_and_threshold_come_from_the_context():
    clips = [
        ClipSignals(f"c{i:02d}", NORMAL_TEXT, NORMAL_S, embedding=_at(s, i)) for i, s in enumerate(MAIN_SIMS)
    ]
    strict = rv.speaker_context(clips, threshold=0.999)
    assert all("other speaker?" in reasons(i) for i in rv.review(clips, strict))
    by_ref = rv.speaker_context(clips, reference=[_at(0.3, 200)])  # a reference clip of another voice
    flagged = rv.review(clips, by_ref)
    assert len(flagged) == len(clips) and "vs the reference clips" in reasons(flagged[0])
