"""transcribe --tags: which tokens Whisper may then write (both backends, on the decoding itself), and the
transcribe writer putting every text through the tag normaliser."""

from __future__ import annotations

import numpy as np
import pytest

from voicelab import dataset, testing
from voicelab import transcribe as tr
from voicelab import whisper_annotations as wa
from voicelab.cli import transcribe as transcribe_cli

pytestmark = pytest.mark.usefixtures("restore_torch_threads")

OPEN_PAREN = 522  # " (" in the multilingual vocabulary
MUSIC_NOTE = 931  # " ♪": non-speech, and no annotation bracket
MULTILINGUAL_ANNOTATION_IDS = (7, 8, 9, 58, 60, 522, 542, 1853, 4183, 7273, 9383, 15265, 26435, 32302)
ENGLISH_ANNOTATION_IDS = (7, 8, 9, 58, 60, 357, 685, 1267, 1635, 2361, 4008, 11907, 14808, 15306, 16410)
ENGLISH_ANNOTATION_IDS += (19510, 22305, 30109, 47282)


def test_the_allowed_ids_are_the_annotation_brackets_of_whisper_non_speech_set():
    from whisper.tokenizer import get_tokenizer

    for multilingual, expected in ((True, MULTILINGUAL_ANNOTATION_IDS), (False, ENGLISH_ANNOTATION_IDS)):
        tok = get_tokenizer(multilingual, num_languages=99, task="transcribe")
        assert wa.annotation_tokens(tok.non_speech_tokens, tok.decode) == expected
        assert {tok.decode([t]).strip() for t in expected} <= {
            "(",
            ")",
            "[",
            "]",
            "*",
            "((",
            "))",
            ")))",
            "[[",
            "]]",
        }
        allowing = wa.suppress_tokens(tok.non_speech_tokens, tok.decode, annotations=True)
        assert sorted(set(allowing) | set(expected)) == list(tok.non_speech_tokens)
        assert wa.suppress_tokens(tok.non_speech_tokens, tok.decode, annotations=False) == [-1]


@pytest.fixture(scope="module")
def favouring(tmp_path_factory):
    """A tiny Whisper per backend that says " ♪" at every step, or " (" when " ♪" is suppressed, or
    random words when both are."""
    pytest.importorskip("faster_whisper")
    from voicelab.testing.whisper_ct2 import build_tiny_faster_whisper

    root = tmp_path_factory.mktemp("favouring")
    favoured = (MUSIC_NOTE, OPEN_PAREN)
    return {
        "openai-whisper": testing.build_tiny_whisper(root / "tiny.pt", favoured_tokens=favoured),
        "faster-whisper": build_tiny_faster_whisper(root / "ct2", favoured_tokens=favoured),
    }


@pytest.mark.parametrize("backend", tr.BACKENDS)
def test_decoding_writes_annotation_brackets_only_with_annotations_on(backend, favouring):
    noise = (np.random.default_rng(0).standard_normal(tr.WHISPER_SAMPLE_RATE) * 0.1).astype(np.float32)

    def text(annotations: bool) -> str:
        options = tr.DecodeOptions(beam_size=1, temperatures=(0.0,), annotations=annotations)
        transcriber = tr.load_transcriber(
            backend, str(favouring[backend]), device="cpu", options=options, threads=1
        )
        return transcriber.transcribe_batch([noise])[0].text

    off = text(annotations=False)
    assert "(" not in off and "♪" not in off and off  # both suppressed: the random words come through
    assert text(annotations=True).startswith("( ( (")  # " (" allowed, " ♪" still suppressed


def test_both_backends_pass_the_same_suppressed_set(favouring):
    from faster_whisper import WhisperModel

    from voicelab.models.whisper import load_openai_whisper

    openai_model = load_openai_whisper(str(favouring["openai-whisper"]), "cpu")
    ct2_model = WhisperModel(str(favouring["faster-whisper"]), device="cpu")
    on = wa.openai_suppress_tokens(openai_model, annotations=True)
    assert on == wa.faster_suppress_tokens(ct2_model, annotations=True)
    assert not set(on) & set(MULTILINGUAL_ANNOTATION_IDS) and MUSIC_NOTE in on


def test_the_tags_flag_reaches_decoding(speech_dir, tmp_path, favouring, fast_transcribe_flags):
    folder = tmp_path / "prepared"
    testing.speak(["Hello there.", 0.3], folder / "clip_000.wav")
    model = str(favouring["openai-whisper"])
    args = [str(folder), "--model", model, "--device", "cpu", "--no-quality", *fast_transcribe_flags]
    for flags, bracket in (([], False), (["--tags", "--overwrite"], True)):
        assert transcribe_cli.main([*args, *flags]) == 0
        (text,) = dict(dataset.read_transcript(folder / dataset.TRANSCRIPT_FILE)).values()
        assert ("(" in text) == bracket


class ScriptedWhisper:
    """Stands in for Whisper (not under test here): says a fixed text per clip, in order."""

    batch_size = 2

    def __init__(self, texts):
        self.texts = list(texts)

    def transcribe_batch(self, audios):
        return [tr.ClipResult(self.texts.pop(0), -0.2, 0.01, 1.1) for _ in audios]


def test_transcribe_writes_every_text_through_the_normaliser(tmp_path):
    from voicelab.audio import write_wav

    whisper_said = ["Well (laughs) that was it [MUSIC].", "*sighs*  Fine.", "He laughed.", "(inaudible)"]
    folder = tmp_path / "alice"
    folder.mkdir()
    for i in range(len(whisper_said)):
        write_wav(folder / f"c{i}.wav", np.zeros(tr.WHISPER_SAMPLE_RATE // 2 + 800 * i, np.float32), 24_000)
    clips = dataset.find_clips(folder)
    output = folder / dataset.TRANSCRIPT_FILE
    plan = tr.plan_resume(clips, output, overwrite=False)
    summary = tr.transcribe_clips(clips, output, ScriptedWhisper(whisper_said), plan, progress=False)
    rows = dict(dataset.read_transcript(output))
    expected = [dataset.normalize_text(dataset.normalize_tags(t).text) for t in whisper_said]
    assert rows == {f"c{i}": t for i, t in enumerate(expected) if t}
    assert rows["c0"] == "Well <laugh> that was it." and rows["c1"] == "<sigh> Fine."
    signals = dataset.PreparedDataset(folder).read_signals()
    assert {k: r.text for k, r in signals.items() if r.text} == rows  # rows read as Whisper's own
    assert summary.tags.as_dict() == {
        "laugh": {"clips": 1, "occurrences": 1},
        "sigh": {"clips": 1, "occurrences": 1},
    }
    assert summary.unknown_tags == {"[MUSIC]": 1, "(inaudible)": 1}
    report = transcribe_cli.format_summary(summary, folder)
    assert "expressive tags: <laugh> 1 clips (1x), <sigh> 1 clips (1x)" in report
    assert "unknown tag [MUSIC]: the base model would read it aloud" in report
