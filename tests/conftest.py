"""Shared fixtures: tiny random models built offline, once per test session (never committed); a voices
folder, the OpenAI SDK on a module's ``server``, the stand-in vLLM, Chromium and a page; the repository
root. Texts the tests speak are in ``voicelab.testing.texts``."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicelab import testing
from voicelab.testing.browser import CHROMIUM

REPO = Path(__file__).resolve().parents[1]
"""The repository root (tests import it: ``from conftest import REPO``)."""
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"no Chromium at {CHROMIUM}: install the distribution's package (apt-get install chromium)",
    ),
]
"""``pytestmark`` of a module of browser tests (they use the ``browser`` and ``page`` fixtures below)."""


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


@pytest.fixture(scope="module")
def anyio_backend():
    """``@pytest.mark.anyio`` tests run on asyncio (the server's loop), never on trio."""
    return "asyncio"


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
    """Greedy, no fallback, one thread: the tiny model decodes fast, and on a loaded machine extra threads
    only spin."""
    return ["--temperature-increment-on-fallback", "0", "--beam-size", "1", "--no-progress", "--threads", "1"]


@pytest.fixture(scope="module")
def restore_torch_threads():
    """``--threads`` sets torch's process-wide thread count; put it back for the rest of the session."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def voices_dir(tmp_path_factory, tiny_orpheus_dir):
    """A voices folder with two voices on the tiny model: alice (prompt prefix "Alice: ") and bob."""
    from voicelab.testing.voices import write_voice_folder

    root = tmp_path_factory.mktemp("voices")
    write_voice_folder(root, "alice", base_model=str(tiny_orpheus_dir), prompt_prefix="Alice: ")
    write_voice_folder(root, "bob", base_model=str(tiny_orpheus_dir))
    return root


@pytest.fixture(scope="module")
def client(server):
    """The OpenAI SDK on the module's ``server`` (retries off, so a failure shows as it happened)."""
    import openai

    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0) as c:
        yield c


@pytest.fixture(scope="module")
def vllm(tiny_orpheus_dir):
    """The stand-in vLLM on the tiny model, pacing its tokens as a GPU would stream them."""
    from voicelab.testing.browser import TOKEN_DELAY_S
    from voicelab.testing.fake_vllm import FakeVLLMServer

    with FakeVLLMServer(base_model=str(tiny_orpheus_dir), token_delay=TOKEN_DELAY_S) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    """Chromium (the distribution's, by path) driven by Playwright; browser tests only."""
    from playwright.sync_api import sync_playwright

    from voicelab.testing.browser import CHROMIUM_ARGS

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    """A fresh browser page that records console errors (``page.console_errors``) and dialogs, which it
    dismisses (``page.dialogs``), and keeps downloads."""
    from voicelab.testing.browser import STEP_TIMEOUT_MS

    context = browser.new_context(accept_downloads=True)
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = context.new_page()
    page.console_errors = []
    page.dialogs = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    yield page
    context.close()


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
