"""Session fixtures: tiny random models built offline, once per test session (never committed)."""

from __future__ import annotations

import pytest

from voicelab import testing


def pytest_addoption(parser):
    parser.addoption(
        "--gpu-device",
        default="cuda",
        help="device the `gpu` tests run on; `--gpu-device cpu -m gpu` rehearses them without a GPU",
    )


@pytest.fixture(scope="session")
def gpu_device(pytestconfig) -> str:
    """The torch device of the `gpu` tests (``--gpu-device``, default cuda)."""
    return pytestconfig.getoption("--gpu-device")


def pytest_collection_modifyitems(config, items):
    import torch

    if not config.getoption("--gpu-device").startswith("cuda") or torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def tiny_orpheus_dir(tmp_path_factory):
    """Folder with a 2-layer Orpheus-layout Llama and its tokenizer (special tokens at real ids)."""
    return testing.build_tiny_orpheus(tmp_path_factory.mktemp("tiny_orpheus"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_orpheus_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_orpheus_dir)


@pytest.fixture(scope="session")
def tiny_snac_dir(tmp_path_factory):
    """Random-weight SNAC with the 24 kHz strides and small widths (fast)."""
    return testing.build_tiny_snac(tmp_path_factory.mktemp("tiny_snac"))


@pytest.fixture(scope="session")
def real_size_snac_dir(tmp_path_factory):
    """Random-weight SNAC with the real snac_24khz configuration (same compute as the real model)."""
    return testing.build_tiny_snac(tmp_path_factory.mktemp("real_snac"), real_size=True)


@pytest.fixture(scope="session")
def tiny_whisper_path(tmp_path_factory):
    """Random 2-layer Whisper checkpoint file for ``whisper.load_model(path)``."""
    return testing.build_tiny_whisper(tmp_path_factory.mktemp("tiny_whisper") / "tiny-random.pt")


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory):
    """A folder for espeak-ng WAVs shared by the session."""
    if not testing.espeak_available():
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    return tmp_path_factory.mktemp("speech")


@pytest.fixture(scope="session")
def fast_transcribe_flags():
    """Greedy, no fallback, one thread: the tiny model decodes fast, and on a loaded 2-core machine extra
    threads only spin (a 20x slowdown measured here)."""
    return ["--temperature-increment-on-fallback", "0", "--beam-size", "1", "--no-progress", "--threads", "1"]


@pytest.fixture(scope="module")
def restore_torch_threads():
    """``--threads`` sets torch's process-wide thread count; put it back for the rest of the session."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def built_sources(tmp_path_factory):
    """Recordings with other voices and music, built once (voicelab.testing.conversations): two
    conversations of the character with three other voices, a take with 20 s of music then the character
    over a music bed, and a clean reference recording of the character."""
    if not testing.espeak_available():
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    from voicelab.testing import conversations as cv

    root = tmp_path_factory.mktemp("sources")
    raw = root / "raw"
    talks = [
        cv.build_recording(cv.conversation_parts(cv.OTHER_VOICES, turns=8, seed=1), raw / "talk_one.wav"),
        cv.build_recording(
            cv.conversation_parts(cv.OTHER_VOICES[::-1], turns=8, seed=2), raw / "talk_two.wav", channels=2
        ),
    ]
    sentences = [part for line in cv.TARGET_LINES[4:8] for part in ((cv.TARGET_VOICE, line), 0.4)][:-1]
    music_take = cv.build_recording(sentences, raw / "music_take.wav", music_intro_s=20.0, music_bed_db=15.0)
    reference = cv.build_recording(
        [
            (cv.TARGET_VOICE, "This is me, speaking clearly, with nobody else around."),
            0.4,
            (cv.TARGET_VOICE, "A few sentences are enough for the encoder to know my voice."),
        ],
        root / "reference.wav",
    )
    return {"raw": raw, "talks": talks, "music_take": music_take, "reference": reference.path, "root": root}
