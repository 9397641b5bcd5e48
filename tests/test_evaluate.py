"""make evaluate: metric sanity on real (espeak-ng) speech, the measures' arithmetic, and the whole step
on tiny models through the embedded engine and the stand-in vLLM."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf

from test_server_api import FakeEngine, ScriptedSynthesizer
from test_train_lora import common_args, train_memoriser, write_transcript
from voicelab import evaluate as ev
from voicelab import orpheus, testing
from voicelab.audio import read_audio
from voicelab.cli import evaluate_voice, train_lora
from voicelab.testing.server import local_client
from voicelab.voice import EVAL_DIR, EVAL_FILE, EVAL_SUMMARY_FILE, VoiceFolder, VoiceMetadata

SR = orpheus.SAMPLE_RATE
DATASET = (
    "Hello there, my friend.",
    "How are you doing today?",
    "The sun is very bright this morning.",
    "I would like a cup of green tea.",
    "We walked home along the river.",
    "It was nice to meet you at last.",
)
FEW = ["--sentences", "1", "--max-heldout", "1", "--max-tokens", "70", "--no-progress", "--device", "cpu"]
FEW += [
    "--tag-sentences",
    "1",
    "--tags",
    "laugh",
]  # the tags check: one tag, one sentence (and its plain twin)
"""One novel sentence, one held-out text, pieces of at most 10 frames: the plumbing, CPU-cheap."""


# --- pure measures ----------------------------------------------------------------------------------
def test_error_rates_normalise_case_and_punctuation_then_agree_with_jiwer():
    wer, cer = ev.error_rates(["Hello, world! How are you?"], ["hello word how are you"])
    assert wer == pytest.approx(0.2)
    assert cer == pytest.approx(jiwer.cer("hello world how are you", "hello word how are you"))
    assert ev.error_rates(["Well... it's fine."], ["well it's fine"]) == (0.0, 0.0)
    with pytest.raises(ValueError, match="non-empty"):
        ev.error_rates(["!!!"], ["x"])


def test_code_overlap_finds_copies_in_either_direction():
    rng = np.random.default_rng(0)
    clip = rng.integers(0, orpheus.CODEBOOK_SIZE, size=(12, orpheus.CODES_PER_FRAME))
    other = rng.integers(0, orpheus.CODEBOOK_SIZE, size=(30, orpheus.CODES_PER_FRAME))
    assert ev.code_overlap(clip, clip) == 1.0
    assert ev.code_overlap(other, clip) == 0.0
    replay_then_more = np.concatenate([clip, other])  # the clip replayed, then other audio
    assert ev.code_overlap(replay_then_more, clip) == 1.0
    unrelated = rng.integers(0, orpheus.CODEBOOK_SIZE, size=(8, orpheus.CODES_PER_FRAME))
    assert ev.nearest_clip(replay_then_more, {"a": unrelated, "b": clip}) == ("b", 1.0)
    assert ev.code_overlap(clip[:1], clip) == 0.0  # one frame is no run of two


def test_longest_silence_ignores_the_edges():
    tone = np.sin(2 * np.pi * 220 * np.arange(SR // 2) / SR).astype(np.float32)
    gap = np.zeros(int(1.2 * SR), np.float32)
    assert ev.longest_silence(np.concatenate([gap, tone, gap, tone, gap])) == pytest.approx(1.2, abs=0.03)
    assert ev.longest_silence(tone) == 0.0


def summary(**values):
    base = {
        "speaker_similarity": 0.85,
        "similarity_gain": 0.2,
        "wer": 0.05,
        "cer": 0.02,
        "dnsmos_ovrl": 3.2,
        "speech_rate_ratio": 1.1,
        "hit_max_tokens": 0,
        "too_long": 0,
        "long_silences": 0,
        "max_code_overlap": 0.1,
        "trained_tags_read_aloud": 0,
    }
    return {**base, **values}


def test_verdicts_follow_the_thresholds_and_their_overrides():
    checks = ev.verdicts(summary(), ev.Thresholds())
    assert [c["verdict"] for c in checks] == ["pass"] * len(checks)
    failing = {
        c["check"]: c["verdict"]
        for c in ev.verdicts(summary(wer=0.3, similarity_gain=-0.01), ev.Thresholds())
    }
    assert failing["word error rate"] == "FAIL" and failing["similarity gain over the base model"] == "FAIL"
    read = {
        c["check"]: c["verdict"] for c in ev.verdicts(summary(trained_tags_read_aloud=1), ev.Thresholds())
    }
    assert read["trained tags read aloud"] == "FAIL"
    lenient = {c["check"]: c["verdict"] for c in ev.verdicts(summary(wer=0.3), ev.Thresholds(max_wer=0.5))}
    assert lenient["word error rate"] == "pass"
    unmeasured = {c["check"]: c["verdict"] for c in ev.verdicts(summary(dnsmos_ovrl=None), ev.Thresholds())}
    assert unmeasured["DNSMOS overall"] == "n/a"


def test_json_numbers_are_finite_or_null():
    assert ev.finite_or_none({"a": [1.0, float("nan")], "b": np.float32(np.inf), "c": "x"}) == {
        "a": [1.0, None],
        "b": None,
        "c": "x",
    }


def test_eval_summary_is_not_read_through_a_symlink_out_of_the_voice(tmp_path):
    outside = tmp_path / "secret.json"
    outside.write_text(json.dumps({"created_at": "x", "summary": {"wer": 0.0}, "checks": []}))
    voice = tmp_path / "voices" / "v"
    (voice / EVAL_DIR).mkdir(parents=True)
    os.symlink(outside, voice / EVAL_DIR / EVAL_FILE)
    assert VoiceFolder(voice).read_eval_summary() is None
    assert VoiceFolder(tmp_path / "nowhere").read_eval_summary() is None


# --- metric sanity on real speech -------------------------------------------------------------------
def espeak_clip(speech_dir: Path, text: str, voice: str = "en-us") -> np.ndarray:
    path = speech_dir / f"eval_{voice.replace('+', '_')}_{abs(hash(text)) % 10**8}.wav"
    if not path.exists():
        testing.speak([text], path, voice=voice)
    return read_audio(path, SR)[0]


def as_sample(audio: np.ndarray, text: str, model: str = "voice") -> ev.Sample:
    return ev.Sample(id="s", kind="novel", model=model, text=text, audio=audio)


def test_speaker_similarity_ranks_the_same_voice_above_another(speech_dir):
    reference = [espeak_clip(speech_dir, t) for t in DATASET[:3]]
    same = [as_sample(espeak_clip(speech_dir, t), t) for t in DATASET[3:5]]
    other = [as_sample(espeak_clip(speech_dir, t, "en-us+f3"), t, "base") for t in DATASET[3:5]]
    info = ev.measure_speaker([*same, *other], reference)
    same_sims = [s.metrics["speaker_similarity"] for s in same]
    other_sims = [s.metrics["speaker_similarity"] for s in other]
    assert min(same_sims) > max(other_sims)
    summ = ev.summarize([*same, *other], {"speech_rate": None}, ev.Thresholds())
    assert summ["similarity_gain"] == pytest.approx(np.mean(same_sims) - np.mean(other_sims))
    assert info["reference_self_similarity"] > max(other_sims)


def test_wer_through_whisper_is_what_jiwer_says(speech_dir, tiny_whisper_path):
    from voicelab import transcribe as tr

    text = DATASET[0]
    sample = as_sample(espeak_clip(speech_dir, text), text)
    options = tr.DecodeOptions(beam_size=1, temperatures=(0.0,))
    transcriber = tr.load_transcriber("openai-whisper", str(tiny_whisper_path), device="cpu", options=options)
    ev.measure_intelligibility([sample], transcriber, progress=False)
    heard = sample.metrics["transcript"]
    expected = ev.normalize_text(text), ev.normalize_text(heard)
    assert sample.metrics["wer"] == pytest.approx(jiwer.wer(*expected))
    assert sample.metrics["cer"] == pytest.approx(jiwer.cer(*expected))


def test_dnsmos_of_noisy_speech_is_below_clean(speech_dir):
    clean = espeak_clip(speech_dir, DATASET[2])
    noisy = clean + 0.3 * np.random.default_rng(0).standard_normal(len(clean)).astype(np.float32)
    assert ev.dnsmos_or_none(noisy)["ovrl"] < ev.dnsmos_or_none(clean)["ovrl"]
    assert ev.dnsmos_or_none(np.zeros(SR, np.float32)) is None


# --- the step on tiny models ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_orpheus_dir, tiny_snac_dir, speech_dir):
    """Voice "zed": 6 espeak clips, 2 held out, a checkpoint kept for --compare."""
    root = tmp_path_factory.mktemp("evaluate")
    data = root / "data"
    data.mkdir()
    for i, text in enumerate(DATASET):
        sf.write(data / f"c{i}.wav", espeak_clip(speech_dir, text), SR)
    write_transcript(data, [(f"c{i}", text) for i, text in enumerate(DATASET)])
    voices = root / "voices"
    args = common_args(voices, tiny_orpheus_dir, tiny_snac_dir)
    flags = ["--eval-clips", "2", "--max-steps", "2", "--save-steps", "1", "--keep-checkpoints"]
    assert train_lora.main(["zed", str(data), *args, *flags]) == 0
    return voices


@pytest.fixture(scope="module")
def evaluated(trained, tiny_whisper_path):
    rc = evaluate_voice.main(
        ["zed", "--voices-dir", str(trained), "--whisper-model", str(tiny_whisper_path), *FEW]
    )
    return rc, trained / "zed" / EVAL_DIR


def numbers(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from numbers(v)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield value


def test_eval_json_has_every_part_and_only_finite_numbers(evaluated, trained, tiny_orpheus_dir):
    rc, eval_dir = evaluated
    assert rc == 0
    report = json.loads((eval_dir / EVAL_FILE).read_text())
    for key in (
        "voice",
        "created_at",
        "settings",
        "thresholds",
        "models",
        "reference",
        "summary",
        "checks",
        "samples",
    ):
        assert key in report, key
    assert report["models"]["base_model"] == str(tiny_orpheus_dir) and report["settings"]["engine"] == "local"
    meta = VoiceMetadata.read(trained / "zed")
    assert report["reference"]["source"] == "held-out" and report["reference"]["clips"] == meta.eval_clips
    # the published adapter's own eval loss (early stopping may have published an earlier step)
    assert report["summary"]["eval_loss"] == pytest.approx(meta.published_eval_loss)
    assert {(s["model"], s["kind"]) for s in report["samples"]} == {
        (m, k) for m in ("voice", "base") for k in ("heldout", "novel")
    } | {("voice", "tag"), ("voice", "tag-plain")}
    for key in (
        "speaker_similarity",
        "base_speaker_similarity",
        "similarity_gain",
        "wer",
        "cer",
        "dnsmos_ovrl",
    ):
        assert report["summary"][key] is not None, key
    assert all(math.isfinite(x) for x in numbers(report))
    assert len(report["checks"]) == len(ev.verdicts(report["summary"], ev.Thresholds()))


def test_samples_are_whole_snac_frames_and_summary_has_a_verdict_per_check(evaluated):
    _, eval_dir = evaluated
    report = json.loads((eval_dir / EVAL_FILE).read_text())
    for sample in report["samples"]:
        audio, rate = sf.read(eval_dir / sample["file"])
        assert rate == SR and len(audio) == sample["frames"] * orpheus.SAMPLES_PER_FRAME > 0
    summary = (eval_dir / EVAL_SUMMARY_FILE).read_text()
    for check in report["checks"]:
        assert f"| {check['check']} |" in summary and check["verdict"] in ("pass", "FAIL", "n/a")
    # --max-tokens 70 stops every random-model piece early: each one is reported as a runaway
    assert report["summary"]["hit_max_tokens"] == 2


def test_tags_check_through_the_embedded_engine(evaluated):
    """zed was trained without tags: <laugh> is checked as part of the base set, with and without it."""
    from voicelab.evaluate import tag_check

    _, eval_dir = evaluated
    report = json.loads((eval_dir / EVAL_FILE).read_text())
    (laugh,) = report["tags"]["per_tag"]
    assert (laugh["tag"], laugh["set"], laugh["trained"]) == ("laugh", "base", None)
    assert (
        laugh["verdict"] in tag_check.VERDICTS
        and laugh["trials"][0]["text"] == tag_check.trial("laugh", 0).tagged
    )
    spoken = {s["id"]: s for s in report["samples"] if s["kind"] in ("tag", "tag-plain")}
    assert set(spoken) == {"tag_laugh_0", "tagplain_0"} and all(
        (eval_dir / s["file"]).is_file() for s in spoken.values()
    )
    assert spoken["tag_laugh_0"]["tag_verdict"] == laugh["verdict"]
    assert report["summary"]["tags"] == {"laugh": f"{laugh['verdict']} (base)"}
    check = next(c for c in report["checks"] if c["check"] == "trained tags read aloud")
    assert check["verdict"] == "n/a"  # no trained tag to hold to it
    assert "| <laugh> | base | 0 |" in (eval_dir / EVAL_SUMMARY_FILE).read_text()


def test_the_voice_list_shows_the_evaluation(evaluated, trained, tiny_orpheus_dir):
    from voicelab.server.app import create_app
    from voicelab.server.backend import Backend
    from voicelab.server.settings import Settings

    async def factory(_settings):
        return Backend(kind="fake", engine=FakeEngine(), synthesizer=ScriptedSynthesizer())

    app = create_app(Settings(voices_dir=trained, base_model=str(tiny_orpheus_dir)), backend_factory=factory)
    with local_client(app) as client:
        voices = {v["id"]: v for v in client.get("/v1/audio/voices").json()["voices"]}
    shown = voices["zed"]["evaluation"]
    report = json.loads((evaluated[1] / EVAL_FILE).read_text())
    assert shown["wer"] == report["summary"]["wer"] and shown["created_at"] == report["created_at"]
    assert shown["verdicts"] == {c["check"]: c["verdict"] for c in report["checks"]}


def test_through_vllm_compared_with_a_checkpoint(evaluated, trained, tiny_whisper_path, tiny_orpheus_dir):
    from voicelab.testing.fake_vllm import FakeVLLMServer

    checkpoint = trained / ".checkpoints-zed" / "checkpoint-1"
    with FakeVLLMServer(base_model=str(tiny_orpheus_dir)) as server:
        compare = ["zed", "--compare", str(checkpoint), "--voices-dir", str(trained)]
        rc = evaluate_voice.main(
            [*compare, "--vllm-url", server.url, "--whisper-model", str(tiny_whisper_path), *FEW]
        )
        models = {c.body["model"] for c in server.completions}
    assert rc == 0
    assert models == {"zed", "zed-checkpoint-1", str(tiny_orpheus_dir)}
    report = json.loads((trained / "zed" / EVAL_DIR / EVAL_FILE).read_text())
    assert report["settings"]["engine"] == "vllm"
    assert all(math.isfinite(x) for x in numbers(report))
    checkpoint_report = json.loads((trained / "zed" / "eval-checkpoint-1" / EVAL_FILE).read_text())
    step_1 = next(p for p in VoiceFolder(trained / "zed").read_loss_log() if p.step == 1)
    assert checkpoint_report["summary"]["eval_loss"] == pytest.approx(step_1.eval_loss)  # its own
    table = (trained / "zed" / EVAL_DIR / "compare-zed-checkpoint-1.md").read_text()
    assert "| speaker_similarity |" in table and "zed@checkpoint-1" in table


def test_unreachable_vllm_is_a_clear_error(trained, capsys):
    from voicelab.testing.server import free_port

    rc = evaluate_voice.main(
        ["zed", "--voices-dir", str(trained), "--vllm-url", f"http://127.0.0.1:{free_port()}"]
    )
    assert rc == 1
    err = capsys.readouterr().err
    assert "not reachable" in err and "make vllm" in err


def test_a_voice_or_all_is_required(capsys):
    with pytest.raises(SystemExit) as exit_info:
        evaluate_voice.main([])
    assert exit_info.value.code == 2 and "name a voice, or pass --all" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "message"), [("nobody", "no trained voice"), ("../zed", "invalid voice name")]
)
def test_unusable_voices_exit_2(name, message, trained, capsys):
    assert evaluate_voice.main([name, "--voices-dir", str(trained)]) == 2
    assert message in capsys.readouterr().err


def test_all_on_an_empty_folder_says_there_is_nothing(tmp_path, capsys):
    assert evaluate_voice.main(["--all", "--voices-dir", str(tmp_path)]) == 2
    assert "no trained voice" in capsys.readouterr().err


@pytest.mark.slow  # the verdict: test_verdicts_follow_the_thresholds_and_their_overrides, fast
def test_memorised_clip_is_flagged_as_overfitting(
    tmp_path, tiny_orpheus_dir, tiny_snac_dir, tiny_whisper_path
):
    """The voice trained to replay one clip: greedy decoding makes it replay it for any text."""
    rc, _, voices = train_memoriser(tmp_path, tiny_orpheus_dir, tiny_snac_dir, steps="40")
    assert rc == 0
    greedy = [
        "--temperature",
        "0",
        "--repetition-penalty",
        "1.0",
        "--sentences",
        "2",
        "--max-tokens",
        "70",
        "--no-progress",
    ]
    args = ["erin", "--voices-dir", str(voices), "--whisper-model", str(tiny_whisper_path), "--device", "cpu"]
    assert evaluate_voice.main([*args, *greedy, "--strict"]) == 1
    report = json.loads((voices / "erin" / EVAL_DIR / EVAL_FILE).read_text())
    assert report["reference"]["source"] == "training"  # one clip: nothing held out
    assert (
        report["summary"]["max_code_overlap"] == 1.0 and report["summary"]["closest_training_clip"] == "one"
    )
    overfit = next(c for c in report["checks"] if c["check"].startswith("overfitting"))
    assert overfit["verdict"] == "FAIL"
    assert "replays a training clip" in (voices / "erin" / EVAL_DIR / EVAL_SUMMARY_FILE).read_text()


def test_vllm_url_comes_from_the_server_settings_when_not_given(monkeypatch, tmp_path):
    from voicelab.cli import evaluate_voice

    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    args = evaluate_voice.build_parser().parse_args(["bob", "--device", "cpu"])
    monkeypatch.setenv("VOICELAB_VLLM_URL", "http://127.0.0.1:8011/")
    assert evaluate_voice.settings_from(args).vllm_url == "http://127.0.0.1:8011"
    monkeypatch.delenv("VOICELAB_VLLM_URL")
    assert evaluate_voice.settings_from(args).vllm_url is None
    args = evaluate_voice.build_parser().parse_args(["bob", "--device", "cpu", "--vllm-url", "http://h:1"])
    assert evaluate_voice.settings_from(args).vllm_url == "http://h:1"


def test_a_whisper_model_missing_offline_is_named_with_the_flag_before_any_model_loads(
    trained, tmp_path, monkeypatch, capsys
):
    """No network (a proxy that refuses every connection stands in for it: nothing is ever downloaded) and
    an empty Whisper cache: evaluate names --whisper-model and stops before loading the base model."""
    from voicelab import models

    loaded = []
    real = models.load_tokenizer
    monkeypatch.setattr(models, "load_tokenizer", lambda *a, **k: loaded.append(a) or real(*a, **k))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    for proxy in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")  # the discard port: connection refused
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    rc = evaluate_voice.main(["zed", "--voices-dir", str(trained), "--whisper-model", "tiny.en", *FEW])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "pass --whisper-model /path/to/tiny.en.pt" in err and "--model " not in err
    assert loaded == []  # stopped before the tokenizer, the base model and SNAC


def test_a_base_model_that_is_not_there_is_said_before_whisper_loads(trained, tmp_path, capsys):
    missing = tmp_path / "orpheus"
    rc = evaluate_voice.main(["zed", "--voices-dir", str(trained), "--base-model", str(missing), *FEW])
    assert rc == 2
    assert f"cannot load the base model {str(missing)!r} (no such folder)" in capsys.readouterr().err
