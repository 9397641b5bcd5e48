"""Dataset quality in the transcribe step: another speaker, noise and music found, reported, excluded.

Real audio measures (Resemblyzer, DNSMOS) on espeak-ng speech. Whisper is replaced by a transcriber that
returns each clip's true sentence where the ranking is under test (a random tiny Whisper's invented text
would add its own flags), and is the real tiny Whisper where the command is run end to end.
"""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
import soundfile as sf

from voicelab import dataset, dataset_review, quality, testing
from voicelab import transcribe as tr
from voicelab.audio import read_audio
from voicelab.cli import transcribe as transcribe_cli
from voicelab.testing.texts import SENTENCES

pytestmark = pytest.mark.usefixtures("restore_torch_threads")

MAIN_VOICE = "en-us"
OTHER_VOICE = "en-us+f3"  # espeak-ng's female variant: a different speaker, same language
OTHER_EVERY = 5  # clips 4, 9, 14 are the other voice: 12 to 3, the 4:1 mix


class KnownText:
    """Stands in for Whisper: each clip's true sentence, looked up by its length at 16 kHz."""

    batch_size = 4

    def __init__(self, texts_by_length: dict[int, str]):
        self.texts = texts_by_length

    def transcribe_batch(self, audios):
        return [tr.ClipResult(self.texts[len(a)], -0.2, 0.01, 1.2) for a in audios]


def _make_dataset(folder, voices_texts):
    folder.mkdir(parents=True, exist_ok=True)
    texts = {}
    for i, (voice, text) in enumerate(voices_texts):
        path = testing.speak([0.2, text, 0.2], folder / f"clip_{i:03d}.wav", voice=voice)
        texts[len(read_audio(path, tr.WHISPER_SAMPLE_RATE)[0])] = text
    return texts


def _mixed(speech_dir, other_voice):
    folder = speech_dir / f"mixed_{other_voice.replace('+', '_')}"
    voices = [
        other_voice if i % OTHER_EVERY == OTHER_EVERY - 1 else MAIN_VOICE for i in range(len(SENTENCES))
    ]
    texts = _make_dataset(folder, list(zip(voices, SENTENCES, strict=True)))
    others = {f"clip_{i:03d}" for i, v in enumerate(voices) if v == other_voice}
    return folder, texts, others


@pytest.fixture(scope="module")
def mixed_dataset(speech_dir):
    return _mixed(speech_dir, OTHER_VOICE)


@pytest.fixture(scope="module")
def measured_dataset(mixed_dataset, tmp_path_factory):
    """The mixed dataset after one transcribe with the audio measures (no report): a later run finds every
    clip transcribed and measured, so it only reviews. The tests that judge the review start from it
    rather than measuring the same fifteen clips again."""
    src, texts, others = mixed_dataset
    folder = tmp_path_factory.mktemp("measured") / "prepared"
    shutil.copytree(src, folder)
    summary = _run(folder, texts, report=False)
    assert summary.measured == len(SENTENCES)
    return folder, texts, others


def _copy(src, tmp_path):
    folder = tmp_path / "prepared"
    shutil.copytree(src, folder)
    return folder


def _review_rows(folder):
    with (folder / "transcript_review.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _run(folder, texts, **quality_kw):
    clips = dataset.find_clips(folder)
    output = folder / "transcript.csv"
    plan = tr.plan_resume(clips, output, overwrite=False)
    return tr.transcribe_clips(
        clips, output, KnownText(texts), plan, progress=False, quality=tr.QualityOptions(**quality_kw)
    )


def delete_line(path, key):
    """What a person does in an editor: delete the line of one clip."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(line for line in lines if not line.startswith(f"{key},")), encoding="utf-8")


def test_other_speaker_ranks_first_and_can_be_excluded(tmp_path, measured_dataset):
    src, texts, others = measured_dataset
    folder = _copy(src, tmp_path)

    summary = _run(folder, texts, exclude_flagged=True)

    rows = _review_rows(folder)
    top = [r["filename"] for r in rows[: len(others)]]
    assert set(top) == others, rows
    flagged = {r["filename"] for r in rows if "other speaker?" in r["reasons"]}
    precision = len(flagged & others) / max(len(flagged), 1)
    recall = len(flagged & others) / len(others)
    print(f"other-speaker flag: precision {precision:.2f}, recall {recall:.2f} ({len(flagged)} flagged)")
    assert recall == 1.0 and precision == 1.0
    first = rows[0]
    assert "vs median 0.9" in first["reasons"] and float(first["speaker_similarity"]) < 0.75
    # excluded.csv names them with the reason; audio and transcript rows stay
    excluded = dataset.read_exclusions(folder)
    assert set(excluded) == others and all("other speaker?" in r for r in excluded.values())
    assert all((folder / f"{name}.wav").exists() for name in others)
    assert summary.excluded_new == len(others) and summary.other_speaker == len(others)
    assert len(dataset.read_transcript_for_resume(folder / "transcript.csv")) == len(SENTENCES)
    # the report is a real PNG
    report = dataset.PreparedDataset(folder).report_path
    assert summary.report_path == report and report.read_bytes().startswith(b"\x89PNG")

    # a person puts two back, one by deleting its line, one with the studio's Restore: a rerun with
    # --exclude-flagged flags them again but leaves them in, and says so
    by_hand, in_studio, still_out = sorted(others)
    delete_line(folder / dataset.EXCLUDED_FILE, by_hand)
    dataset_review.save_clip(folder.parent, folder.name, in_studio, excluded=False)
    again = _run(folder, texts, exclude_flagged=True)
    assert set(dataset.read_exclusions(folder)) == {still_out}
    assert again.excluded_new == 0 and again.kept_restored == 2 and again.other_speaker == len(others)
    decisions = dataset.PreparedDataset(folder).read_decisions()
    assert decisions[by_hand] == decisions[in_studio] == dataset.RESTORED
    assert decisions[still_out] == dataset.EXCLUDED
    # deleting a line of the decisions lets the flag decide again
    delete_line(folder / dataset.DECISIONS_FILE, by_hand)
    _run(folder, texts, exclude_flagged=True)
    assert set(dataset.read_exclusions(folder)) == {still_out, by_hand}


def test_measures_taken_beside_whisper_are_the_per_clip_numbers(measured_dataset):
    """The measures run on worker threads, a batch's speaker prints together, while Whisper runs: the
    stored numbers are those of measuring each clip alone (the prints to their 4 stored decimals). Checked
    on a clip of each voice from the first, a middle and the last batch."""
    from voicelab.transcribe.signals import measure_quality

    folder, _texts, others = measured_dataset
    stored = dataset.PreparedDataset(folder).read_signals()
    batch = KnownText.batch_size
    keys = {f"clip_{i:03d}" for i in (0, batch + 1, len(SENTENCES) - 1)} | {min(others)}
    for key in sorted(keys):
        alone = measure_quality([read_audio(folder / f"{key}.wav", tr.WHISPER_SAMPLE_RATE)[0]])[0]
        rec = stored[key]
        assert (rec.speech_s, rec.dnsmos_sig, rec.dnsmos_bak, rec.dnsmos_ovrl) == (
            alone["speech_s"],
            alone["dnsmos_sig"],
            alone["dnsmos_bak"],
            alone["dnsmos_ovrl"],
        )
        np.testing.assert_allclose(rec.embedding, alone["embedding"], atol=1.01e-4)


def test_the_measures_run_while_whisper_transcribes(tmp_path, mixed_dataset, monkeypatch):
    """Whisper's first batch waits for a measure to start: it starts only if the measures run beside it,
    on another thread (a run that measured after Whisper would never let it go on)."""
    import threading

    from voicelab.transcribe import signals

    src, texts, _others = mixed_dataset
    folder = tmp_path / "prepared"
    folder.mkdir()
    for clip in dataset.find_clips(src)[: 2 * KnownText.batch_size]:  # two batches: Whisper's and the next
        shutil.copy2(clip, folder)
    started, threads = threading.Event(), set()
    real = signals.measure_quality

    def measuring(audios, device="cpu"):
        threads.add(threading.current_thread().name)
        started.set()
        return real(audios, device)

    monkeypatch.setattr(signals, "measure_quality", measuring)
    seen = []

    class WaitsForTheMeasures(KnownText):
        def transcribe_batch(self, audios):
            seen.append(started.wait(timeout=120))  # a guard against hanging, not a time limit
            return super().transcribe_batch(audios)

    clips = dataset.find_clips(folder)
    plan = tr.plan_resume(clips, folder / "transcript.csv", overwrite=False)
    summary = tr.transcribe_clips(
        clips,
        folder / "transcript.csv",
        WaitsForTheMeasures(texts),
        plan,
        progress=False,
        quality=tr.QualityOptions(report=False),
    )
    assert seen and all(seen) and summary.measured == len(clips)
    assert threading.main_thread().name not in threads


def test_a_person_s_exclusions_are_kept_and_reference_clips_change_the_target(tmp_path, measured_dataset):
    src, texts, others = measured_dataset
    folder = _copy(src, tmp_path)
    dataset.write_exclusions(folder, {"clip_000": "mumbled"})
    ref = sorted(others)[:1]
    _run(folder, texts, exclude_flagged=True, reference=tr.resolve_reference(ref, folder))
    excluded = dataset.read_exclusions(folder)
    assert excluded["clip_000"] == "mumbled"  # never overwritten
    # against the other voice as reference, the main voice's clips are the odd ones out
    rows = _review_rows(folder)
    flagged = {r["filename"] for r in rows if "other speaker?" in r["reasons"]}
    assert flagged and not flagged & others
    assert "vs the reference clips" in rows[0]["reasons"]


def test_the_review_measures_to_the_voice_prepare_audio_kept(tmp_path):
    """prepare-audio saved the voice it kept: without --reference, transcribe's review measures every clip
    to that voice, not to the dominant one. Twelve clips of one voice and three of another, whose print
    prepare-audio kept: the twelve are the other speakers. (The prints are constructed: what is under
    test is which voice the review measures to; test_other_speaker_ranks_first_... measures real audio.)"""
    from voicelab.transcribe.review_inputs import finish_review

    rng = np.random.default_rng(0)
    kept, dominant = (quality.unit_rows(rng.normal(size=quality.EMBEDDING_DIM)) for _ in range(2))
    near = lambda v: quality.unit_rows(v + 0.02 * rng.normal(size=v.shape)).tolist()  # noqa: E731
    signals = {
        f"clip_{i:03d}": dataset.ClipSignals(
            f"clip_{i:03d}", SENTENCES[i], 4.0, embedding=near(kept if i % OTHER_EVERY == 0 else dominant)
        )
        for i in range(len(SENTENCES))
    }
    ds = dataset.PreparedDataset(tmp_path)
    rows = {k: s.text for k, s in signals.items()}
    assert (
        finish_review(ds, [], rows, signals, read_audio, None).other_speaker == len(SENTENCES) // OTHER_EVERY
    )
    ds.write_voice_print(kept, 1.0)
    outcome = finish_review(ds, [], rows, signals, read_audio, tr.QualityOptions(report=False))
    assert outcome.other_speaker == len(SENTENCES) - len(SENTENCES) // OTHER_EVERY
    assert "vs the voice prepare-audio kept" in _review_rows(tmp_path)[0]["reasons"]
    ds.voice_print_path.write_text("{not json", encoding="utf-8")  # unreadable: the dominant voice again
    outcome = finish_review(ds, [], rows, signals, read_audio, tr.QualityOptions(report=False))
    assert outcome.other_speaker == len(SENTENCES) // OTHER_EVERY


def test_noise_and_a_music_bed_lower_dnsmos_and_are_flagged(tmp_path, speech_dir):
    folder = tmp_path / "prepared"
    texts = _make_dataset(folder, [(MAIN_VOICE, s) for s in SENTENCES[:3]])
    clean_path = folder / "clip_000.wav"
    clean, rate = sf.read(clean_path, dtype="float32")
    rng = np.random.default_rng(0)
    t = np.arange(len(clean)) / rate
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6, 440.0, 554.4)) / 5
    pulsing = chord * (0.5 + 0.5 * np.sin(2 * np.pi * 2.0 * t))  # a beat, like a music bed
    copies = {
        "noisy": clean + 0.1 * rng.standard_normal(len(clean)),
        "music": clean + 0.2 * pulsing,
    }
    for extra_ms, (name, audio) in enumerate(copies.items(), 1):
        # a few ms more of the same, so each copy has a length of its own for the text lookup
        audio = np.concatenate([audio, audio[-round(extra_ms * 0.005 * rate) :]])
        sf.write(folder / f"{name}.wav", np.clip(audio, -1, 1).astype(np.float32), rate)
        texts[len(read_audio(folder / f"{name}.wav", tr.WHISPER_SAMPLE_RATE)[0])] = SENTENCES[0]

    _run(folder, texts)

    signals = dataset.PreparedDataset(folder).read_signals()
    clean_s, noisy_s, music_s = signals["clip_000"], signals["noisy"], signals["music"]
    print(
        f"DNSMOS OVRL/BAK clean {clean_s.dnsmos_ovrl:.2f}/{clean_s.dnsmos_bak:.2f}, noisy "
        f"{noisy_s.dnsmos_ovrl:.2f}/{noisy_s.dnsmos_bak:.2f}, music bed {music_s.dnsmos_ovrl:.2f}/{music_s.dnsmos_bak:.2f}"
    )
    for worse in (noisy_s, music_s):
        assert worse.dnsmos_ovrl < clean_s.dnsmos_ovrl and worse.dnsmos_bak < clean_s.dnsmos_bak - 1
    reasons = {r["filename"]: r["reasons"] for r in _review_rows(folder)}
    assert "background noise/music: BAK" in reasons["noisy"]
    assert "background noise/music: BAK" in reasons["music"]
    assert "clip_000" not in reasons
    assert list(reasons)[:2] == ["noisy", "music"] or list(reasons)[:2] == ["music", "noisy"]


def test_reruns_reuse_stored_measures_and_catch_up_older_runs(
    tmp_path, speech_dir, tiny_whisper_path, fast_transcribe_flags, monkeypatch, capsys
):
    folder = tmp_path / "prepared"
    _make_dataset(folder, [(MAIN_VOICE, s) for s in SENTENCES[:3]])
    args = [str(folder), "--model", str(tiny_whisper_path), "--device", "cpu", *fast_transcribe_flags]
    assert transcribe_cli.main(args) == 0
    out = capsys.readouterr().out
    assert "audio measures (speaker, DNSMOS, speech time) for 3 clips" in out
    assert f"dataset report: {dataset.PreparedDataset(folder).report_path}" in out
    signals = dataset.PreparedDataset(folder).read_signals()
    assert all(s.has_quality and s.dnsmos_bak is not None and s.speech_s for s in signals.values())

    embedded = []
    real = quality.speaker_embeddings
    monkeypatch.setattr(
        quality,
        "speaker_embeddings",
        lambda audios, *a, **k: embedded.append(len(audios)) or real(audios, *a, **k),
    )
    assert transcribe_cli.main(args) == 0
    assert embedded == []  # nothing new: no second embedding pass

    # a signals file from before the audio measures: only the measures are taken, Whisper is not loaded
    import whisper

    old = {key: dataset.ClipSignals(s.key, s.text, s.duration_s) for key, s in signals.items()}
    dataset.PreparedDataset(folder).write_signals(old)
    monkeypatch.setattr(whisper, "load_model", lambda *a, **k: pytest.fail("Whisper loaded for a catch-up"))
    assert transcribe_cli.main(args) == 0
    assert embedded == [3]
    again = dataset.PreparedDataset(folder).read_signals()
    assert all(again[n].has_quality and again[n].text == signals[n].text for n in signals)
    np.testing.assert_allclose(again["clip_000"].embedding, signals["clip_000"].embedding, atol=1e-3)


def test_reference_that_does_not_exist_is_a_usage_error(tmp_path, speech_dir, capsys):
    folder = tmp_path / "prepared"
    _make_dataset(folder, [(MAIN_VOICE, SENTENCES[0])])
    assert transcribe_cli.main([str(folder), "--model", "tiny", "--reference", "nope"]) == 2
    assert "--reference nope" in capsys.readouterr().err
    assert transcribe_cli.main([str(folder), "--model", "tiny", "--reference", "../../etc/passwd"]) == 2
