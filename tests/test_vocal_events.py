"""The non-speech sound measure: its rule on window measures, a sanity check on constructed audio (espeak
speech with and without a laugh-like burst or a sigh, and with the word "laugh" spoken), and the review
reason it gives transcribe."""

from __future__ import annotations

import numpy as np
import pytest

from voicelab import dataset, testing
from voicelab import transcribe as tr
from voicelab import vocal_events as ve
from voicelab.audio import read_audio, write_wav
from voicelab.testing import vocal

SR = 16_000
GAP_S = 0.2  # vocal.join's default silence between parts


def measures(pattern: str) -> ve.WindowMeasures:
    """One window per character: ``s`` speech, ``n`` loud non-speech sound, ``.`` silence."""
    speech = np.array([0.9 if c == "s" else 0.05 for c in pattern])
    level = np.array([-60.0 if c == "." else -20.0 for c in pattern])
    return ve.WindowMeasures(speech, level)


def windows(seconds: float) -> int:
    return round(seconds / ve.WINDOW_S)


def test_events_are_runs_of_loud_non_speech_with_short_silences_inside():
    burst = "nnn.." * 3  # a laugh: bursts with short silences, 9 sounding windows (0.29 s) + 1 more
    pattern = "s" * 20 + "." * 10 + burst + "n" + "." * 10 + "s" * 20
    (event,) = ve.find_events(measures(pattern))
    start = 30 * ve.WINDOW_S
    assert event.start_s == pytest.approx(start) and event.sounding_s == pytest.approx(10 * ve.WINDOW_S)
    assert event.end_s == pytest.approx(start + (len(burst) + 1) * ve.WINDOW_S)


@pytest.mark.parametrize(
    "pattern",
    [
        "s" * 40,  # speech alone
        "s" * 20 + "nnn" + "s" * 20,  # the VAD's lag at a word edge: too short
        "nnnnn" + "." * (windows(ve.MAX_GAP_S) + 2) + "nnnnn",  # two blips too far apart to be one sound
        "nnnnnsnnnnn",  # speech splits it
    ],
)
def test_what_is_not_an_event(pattern):
    assert ve.find_events(measures(pattern)) == []


def test_a_quiet_sound_is_not_an_event():
    m = measures("s" * 20 + "n" * 20)
    m.level_db[20:] = -20.0 - ve.EVENT_RANGE_DB - 5  # a breath, well under the speech
    assert ve.find_events(m) == []


@pytest.fixture(scope="module")
def spoken(speech_dir):
    def say(text: str) -> np.ndarray:
        name = "".join(c for c in text if c.isalnum())[:24]
        return read_audio(testing.speak([text], speech_dir / f"ve_{name}.wav"), SR)[0]

    return {
        "first": say("I can't believe you did that."),
        "second": say("It's brilliant, honestly."),
        "with the word": say("I can't believe you did that. Laugh. It's brilliant, honestly."),
    }


def test_constructed_audio_laugh_and_sigh_found_at_their_place_speech_and_the_word_not(spoken):
    first, second = spoken["first"], spoken["second"]
    assert ve.sound_events(vocal.join([first, second], SR), SR) == []
    assert ve.sound_events(spoken["with the word"], SR) == []
    for burst in (vocal.laugh_burst(SR), vocal.sigh(SR)):
        events = ve.sound_events(vocal.join([first, burst, second], SR), SR)
        assert len(events) == 1
        centre = (len(first) / SR + GAP_S) + len(burst) / SR / 2
        assert abs(events[0].centre_s - centre) < 0.25
        assert events[0].sounding_s >= ve.MIN_EVENT_SOUND_S


class ScriptedWhisper:
    """Stands in for Whisper (not under test here): a fixed text per clip, in order."""

    batch_size = 4

    def __init__(self, texts):
        self.texts = list(texts)

    def transcribe_batch(self, audios):
        return [tr.ClipResult(self.texts.pop(0), -0.2, 0.01, 1.1) for _ in audios]


def test_review_lists_a_clip_with_a_laugh_but_no_tag(spoken, tmp_path):
    first, second = spoken["first"], spoken["second"]
    laughing = vocal.join([first, vocal.laugh_burst(SR), second], SR)
    folder = tmp_path / "alice"
    folder.mkdir()
    clips = {
        "plain": (vocal.join([first, second], SR), "I can't believe you did that. It's brilliant, honestly."),
        "tagged": (laughing, "I can't believe you did that (laughs) it's brilliant, honestly."),
        "untagged": (laughing, "I can't believe you did that. It's brilliant, honestly."),
    }
    for key, (audio, _) in clips.items():
        write_wav(folder / f"{key}.wav", audio, SR)
    paths = dataset.find_clips(folder)
    output = folder / dataset.TRANSCRIPT_FILE
    plan = tr.plan_resume(paths, output, overwrite=False)
    texts = [clips[p.stem][1] for p in paths]
    quality = tr.QualityOptions(report=True)
    summary = tr.transcribe_clips(
        paths, output, ScriptedWhisper(texts), plan, progress=False, quality=quality
    )
    reasons = {row.key: row.reasons for row in dataset.PreparedDataset(folder).read_review()}
    assert (
        "non-speech sound at 2." in reasons.get("untagged", "")
        and "no tag in the text" in reasons["untagged"]
    )
    assert "non-speech sound" not in reasons.get("tagged", "") + reasons.get("plain", "")
    signals = dataset.PreparedDataset(folder).read_signals()
    assert signals["plain"].nonspeech_s == 0.0 and signals["untagged"].nonspeech_s >= ve.MIN_EVENT_SOUND_S
    assert summary.report_path is not None and summary.report_path.read_bytes().startswith(b"\x89PNG")
