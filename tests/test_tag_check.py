"""The tags check's measure, sanity-tested on constructed audio: espeak speech said plain, with a
laugh-like burst where the tag is, with the burst somewhere else, and with the word "laugh" spoken."""

from __future__ import annotations

import numpy as np
import pytest

from voicelab import testing
from voicelab.audio import read_audio
from voicelab.evaluate import tag_check
from voicelab.testing import vocal
from voicelab.vocal_events import measure_windows

SR = 16_000


@pytest.fixture(scope="module")
def halves(speech_dir):
    """The check's first sentence, its two halves spoken apart, and spoken with the word "laugh"."""
    first, second = tag_check.TAG_SENTENCES[0]

    def say(name: str, text: str) -> np.ndarray:
        return read_audio(testing.speak([text], speech_dir / f"tc_{name}.wav"), SR)[0]

    return {
        "first": say("first", first),
        "second": say("second", second),
        "word": say("word", f"{first} laugh {second}"),
    }


def heard(audio: np.ndarray, transcript: str) -> dict:
    """What judging gets for one audio: the transcript is given here (Whisper's in a real run)."""
    return {"transcript": transcript, "measures": measure_windows(audio, SR)}


def judge(tagged_audio, plain_audio, tagged_words: str, plain_words: str) -> dict:
    t = tag_check.trial("laugh", 0)
    return tag_check.judge(
        "laugh", t.position, heard(tagged_audio, tagged_words), heard(plain_audio, plain_words)
    )


def test_a_burst_where_the_tag_is_is_rendered_and_nothing_is_ignored(halves):
    plain_text = tag_check.plain_text(0)
    plain = vocal.join([halves["first"], halves["second"]], SR)
    burst = vocal.laugh_burst(SR)
    laughing = vocal.join([halves["first"], burst, halves["second"]], SR)
    result = judge(laughing, plain, plain_text, plain_text)
    assert result["verdict"] == tag_check.RENDERED
    burst_start = len(halves["first"]) / SR + 0.2  # join's gap
    centre = (result["event"]["start_s"] + result["event"]["end_s"]) / 2
    assert burst_start < centre < burst_start + len(burst) / SR
    assert judge(plain, plain, plain_text, plain_text)["verdict"] == tag_check.IGNORED


def test_a_burst_elsewhere_is_not_the_tag(halves):
    plain_text = tag_check.plain_text(0)
    plain = vocal.join([halves["first"], halves["second"]], SR)
    late = vocal.join(
        [halves["first"], halves["second"], np.zeros(SR, np.float32), vocal.laugh_burst(SR)], SR
    )
    assert judge(late, plain, plain_text, plain_text)["verdict"] == tag_check.IGNORED
    # the voice makes that sound there without the tag too: not the tag's doing
    laughing = vocal.join([halves["first"], vocal.laugh_burst(SR), halves["second"]], SR)
    result = judge(laughing, laughing, plain_text, plain_text)
    assert result["verdict"] == tag_check.IGNORED and result["plain_has_event"]


def test_the_word_spoken_is_read_aloud_not_rendered(halves):
    plain_text = tag_check.plain_text(0)
    plain = vocal.join([halves["first"], halves["second"]], SR)
    first, second = tag_check.TAG_SENTENCES[0]
    result = judge(halves["word"], plain, f"{first} laugh {second}", plain_text)
    assert result["verdict"] == tag_check.READ_ALOUD
    assert result["event"] is None  # the spoken word is speech, not a non-speech sound
    # the audio alone says nothing happened there: a transcript without the word makes it "ignored"
    assert judge(halves["word"], plain, plain_text, plain_text)["verdict"] == tag_check.IGNORED


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        (["rendered", "ignored"], "rendered"),
        (["rendered", "ignored", "ignored"], "ignored"),
        (["rendered", "read aloud", "rendered"], "read aloud"),
        (["n/a", "rendered"], "rendered"),
        (["n/a"], "n/a"),
    ],
)
def test_a_tag_verdict_over_its_sentences(verdicts, expected):
    assert tag_check.tag_verdict(verdicts) == expected


def test_trained_tags_come_first_then_the_base_set():
    trained = {"sigh": {"clips": 120, "occurrences": 130}, "laugh": {"clips": 4, "occurrences": 4}}
    checked = tag_check.tags_to_check(trained)
    assert checked[:2] == [("laugh", "trained"), ("sigh", "trained")]
    assert [t for t, s in checked[2:]] == ["chuckle", "cough", "sniffle", "groan", "yawn", "gasp"]
    assert {s for _, s in checked[2:]} == {"base"}
    assert tag_check.tags_to_check(trained, only=("gasp", "sigh")) == [("sigh", "trained"), ("gasp", "base")]


def test_each_sentence_says_no_tag_word():
    from voicelab.dataset import spoken_tags

    for i in range(len(tag_check.TAG_SENTENCES)):
        assert spoken_tags(tag_check.plain_text(i)) == ()
        assert tag_check.trial("sigh", i).tagged.count("<sigh>") == 1
