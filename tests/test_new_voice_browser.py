"""The New voice page in a real browser (Chromium through Playwright) against the API on a real port: the
jobs run the real voicelab-voice on tiny models (recordings uploaded, a pause for review, training whose
progress is seen to advance, cancelled mid-training and resumed, evaluated with the embedded engine), and
the new voice is then spoken from the Voices view through the stand-in vLLM, which loads its adapter as
vLLM would (tiny random models never stop on their own, which the embedded engine reports as an error).
Bad input gets its message on the page. Screenshots go to artifacts/screenshots/ (the README's come from
there).

Chromium is the distribution's (``apt-get install chromium``), launched by path; nothing is downloaded.
Both tests run jobs with real training and are ``slow``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from voicelab import testing
from voicelab.server.app import create_app
from voicelab.server.settings import Settings
from voicelab.testing.fake_vllm import FakeVLLMServer
from voicelab.testing.server import ServerThread, SlowSite

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
KEY = "new-voice-key"
TOKEN_DELAY_S = 0.005  # the stand-in vLLM paces its tokens, so audio arrives over time as from a GPU
STEP_TIMEOUT_MS = 30_000  # Playwright's wait per step on a loaded 2-core machine
JOB_TIMEOUT_MS = 900_000  # a whole pipeline step (training on a loaded CPU) may take minutes
NAME = "newvoice"
TAKES = {
    "take1.wav": ["Good morning to you all.", 0.9, "The weather is fine today."],
    "take2.wav": ["We will walk to the river.", 0.9, "Then we go home for tea."],
}

playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"no Chromium at {CHROMIUM}: install the distribution's package (apt-get install chromium)",
    ),
]
expect = playwright_api.expect


@pytest.fixture(autouse=True)
def patient_expect():
    """A new job's flags are checked in a subprocess (seconds): wait longer than expect's 5 s here only."""
    expect.set_options(timeout=STEP_TIMEOUT_MS)
    yield
    expect.set_options(timeout=None)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    if not testing.espeak_available():
        pytest.skip("espeak-ng is not installed")
    folder = tmp_path_factory.mktemp("takes")
    for name, parts in TAKES.items():
        testing.speak(parts, folder / name)
    (folder / "page.wav").write_text("<html>a web page saved with the wrong name</html>")
    return folder


@pytest.fixture(scope="module")
def vllm(tiny_orpheus_dir):
    with FakeVLLMServer(base_model=str(tiny_orpheus_dir), token_delay=TOKEN_DELAY_S) as server:
        yield server


def serve(root: Path, vllm, tiny_orpheus_dir, tiny_snac_dir, **overrides):
    settings = Settings(
        voices_dir=root / "voices",
        prepared_dir=root / "prepared",
        raw_dir=root / "raw",
        jobs_dir=root / "jobs",
        base_model=str(tiny_orpheus_dir),
        snac_model=str(tiny_snac_dir),
        vllm_url=vllm.url,
        api_keys=KEY,
        **overrides,
    )
    return ServerThread(create_app(settings))


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    yield page
    context.close()


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def open_new_voice(page, url: str) -> None:
    page.goto(url + "/")
    page.locator("#api-key").fill(KEY)
    page.locator("#api-key").press("Enter")
    page.locator("#tab-new").click()
    expect(page.locator("#opt-device")).to_be_visible()


def fill_tiny_settings(page, whisper: Path, max_steps: int) -> None:
    """Tiny models and a short run (the audio measures stay on: the reference clip needs them)."""
    page.locator("#opt-whisper-model").fill(str(whisper))
    page.locator("#all-settings-box > summary").click()
    for flag, value in {
        "beam-size": "1",
        "temperature-increment-on-fallback": "0",
        "threads": "1",
        "max-steps": str(max_steps),
        "logging-steps": "1",
        "lora-rank": "8",
        "lora-alpha": "16",
        "eval-clips": "0",
        "sentences": "1",
        "max-heldout": "0",
        "max-tokens": "29",
    }.items():
        page.locator(f"#opt-{flag}").fill(value)


def step_status(page, step: str):
    return page.locator(f"#job-steps li[data-step='{step}']")


def training_done(page) -> list[float]:
    return page.evaluate(
        "() => window.voicelabNewVoice.progress.filter(p => p.phase === 'training').map(p => p.done)"
    )


def test_a_voice_from_uploads_paused_for_review_cancelled_resumed_and_spoken(
    page, tmp_path, recordings, vllm, tiny_orpheus_dir, tiny_snac_dir, tiny_whisper_path
):
    with serve(tmp_path, vllm, tiny_orpheus_dir, tiny_snac_dir) as server:
        open_new_voice(page, server.url)
        page.locator("#voice-name").fill(NAME)
        page.locator("#recordings").set_input_files([str(recordings / name) for name in TAKES])
        expect(page.locator("#file-list li")).to_have_count(len(TAKES))
        page.locator("#reference").set_input_files(str(recordings / "take1.wav"))
        fill_tiny_settings(page, tiny_whisper_path, max_steps=4)
        assert page.locator("#review").is_checked()
        page.locator("#all-settings-box > summary").click()  # closed again: the form as a person sees it
        screenshot(page, "new-voice")
        page.locator("#start").click()

        # the job page: it runs, then stops for review
        expect(page.locator("#view-job")).to_be_visible()
        expect(page.locator("#job-state")).to_have_text("waiting for your review", timeout=JOB_TIMEOUT_MS)
        expect(step_status(page, "transcribe")).to_have_attribute("data-status", "done")
        expect(step_status(page, "review")).to_have_attribute("data-status", "paused")
        screenshot(page, "new-voice-review")
        job_url = page.url
        page.locator("#job-review").click()
        expect(page.locator("#view-dataset")).to_be_visible()
        expect(page.locator("#dataset-select")).to_have_value(NAME)
        expect(page.locator("#clip-list > li")).not_to_have_count(0)
        page.goto(job_url)
        expect(page.locator("#job-resume")).to_have_text("Continue to training")  # the job is drawn

        # on to training; progress advances; Cancel stops it cleanly in the middle
        page.locator("#job-resume").click()
        expect(page.locator("#job-state")).to_have_text("running")
        page.wait_for_function(
            "() => window.voicelabNewVoice.progress.some(p => p.phase === 'training' && p.done >= 1)",
            timeout=JOB_TIMEOUT_MS,
        )
        page.locator("#view-job details > summary").click()  # the log folded: steps and progress
        screenshot(page, "new-voice-training")
        page.reload()  # the job survives a reload of the page
        expect(page.locator("#job-title")).to_contain_text(NAME)
        expect(step_status(page, "train-lora")).to_have_attribute("data-status", "running")
        page.locator("#job-cancel").click()
        expect(page.locator("#job-state")).to_have_text("cancelled", timeout=JOB_TIMEOUT_MS)
        expect(step_status(page, "train-lora")).to_have_attribute("data-status", "interrupted")
        stopped_at = max(training_done(page))
        assert 1 <= stopped_at < 4, "cancelled in the middle of training"
        assert not (tmp_path / "voices" / NAME).exists()

        page.locator("#job-resume").click()
        expect(page.locator("#job-state")).to_have_text("done", timeout=JOB_TIMEOUT_MS)
        expect(step_status(page, "train-lora")).to_have_attribute("data-status", "done")
        expect(step_status(page, "reload")).to_have_attribute("data-status", "done")
        expect(page.locator("#job-log")).to_contain_text("resuming from the last checkpoint")
        assert training_done(page)[-1] == 4 and min(training_done(page)[len(training_done(page)) // 2 :]) >= 1
        screenshot(page, "new-voice-done")

        # the new voice speaks from the Voices view
        page.locator("#job-voice").click()
        expect(page.locator("#voice-select")).to_have_value(NAME)
        page.locator("#speak-text").fill("Hello from a voice made in the browser.")
        page.locator("#speak").click()
        stats = page.wait_for_function("() => window.voicelabStudio.lastSpeech").json_value()
        assert stats["samples"] > 0 and vllm.completions[-1].body["model"] == NAME
        assert page.console_errors == []


def start_with(page, name: str, *, files=(), urls=()) -> None:
    page.locator("#voice-name").fill(name)
    page.locator("#recordings").set_input_files([str(f) for f in files])
    page.locator("#urls").fill("\n".join(urls))
    page.locator("#start").click()


def test_bad_input_gets_a_clear_message_on_the_page(
    page, tmp_path, recordings, vllm, tiny_orpheus_dir, tiny_snac_dir
):
    site = SlowSite()
    take = recordings / "take1.wav"
    try:
        cap = take.stat().st_size - 1
        with serve(tmp_path, vllm, tiny_orpheus_dir, tiny_snac_dir, max_upload_bytes=cap) as server:
            (tmp_path / "voices" / "taken").mkdir(parents=True)
            open_new_voice(page, server.url)
            error = page.locator("#error")

            start_with(page, "taken", urls=[site.url])
            expect(error).to_contain_text("a voice named 'taken' exists")
            start_with(page, "toolarge", files=[take])
            expect(error).to_contain_text("take1.wav is ")
            expect(error).to_contain_text("over the upload limit")
            start_with(page, "notaudio", files=[recordings / "page.wav"])
            expect(error).to_contain_text("page.wav is not audio this server can read")
            start_with(page, "ftp", urls=["ftp://example.com/a.wav"])
            expect(error).to_contain_text("only http:// and https:// links")
            assert (
                sorted(p.name for p in (tmp_path / "jobs").iterdir() if not p.name.startswith(".")) == []
            ), "a refused start leaves no job behind"

            start_with(page, "first", urls=[site.url])  # downloads until released
            expect(page.locator("#job-state")).to_have_text("running", timeout=JOB_TIMEOUT_MS)
            page.goto(server.url + "/studio/new")
            start_with(page, "second", urls=["http://127.0.0.1:1/talk.wav"])
            expect(page.locator("#job-state")).to_have_text("queued")
            expect(page.locator("#job-message")).to_contain_text(
                "waits for “first” to finish (one job trains at a time)"
            )
            screenshot(page, "new-voice-queued")

            site.release.set()  # the first job's address now answers 404, then the second one runs
            expect(page.locator("#job-state")).to_have_text("failed", timeout=JOB_TIMEOUT_MS)
            expect(page.locator("#job-message")).to_contain_text(
                "could not download http://127.0.0.1:1/talk.wav"
            )
            expect(step_status(page, "fetch")).to_have_attribute("data-status", "failed")
            assert not (tmp_path / "raw" / "second").exists(), "the failed download left nothing"
            # the refused requests are logged by the browser itself; no script error
            assert all("the server responded with a status of 4" in e for e in page.console_errors)
    finally:
        site.close()
