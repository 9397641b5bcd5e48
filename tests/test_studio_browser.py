"""The studio page in a real browser: Chromium driven by Playwright against the API served over HTTP,
with the stand-in vLLM and tiny models behind it. Screenshots of each view go to artifacts/screenshots/.

Chromium is the distribution's (``apt-get install chromium``), launched by path; nothing is downloaded.
Without it these tests are skipped, and the skip says so.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import soundfile as sf

from conftest import BROWSER_MARKS, REPO
from voicelab import orpheus
from voicelab.dataset import read_exclusions, read_transcript
from voicelab.server.app import create_app
from voicelab.server.settings import Settings
from voicelab.testing.browser import KEY, open_with_key, screenshot
from voicelab.testing.datasets import write_reviewed_dataset
from voicelab.testing.server import ServerThread
from voicelab.testing.voices import write_voice_folder

ATTACKER = "http://attacker.test"
"""Another site: its page is served by Playwright's router, never by the network."""
EVIL_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20" onload="alert(\'onload\')">'
    '<script>alert(document.domain)</script><rect width="40" height="20"/></svg>'
)
SCREENSHOTS = REPO / "artifacts" / "screenshots"
NARROW = {"width": 390, "height": 844}  # a phone

playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = BROWSER_MARKS

TEXTS = {
    "clip_000": "A perfectly ordinary sentence here.",
    "clip_001": "Thanks for watching, subscribe!",
    "clip_002": "Another normal line of speech.",
}
SECONDS = (3.0, 3.5, 4.0)


@pytest.fixture(scope="module")
def voices_dir(voices_dir):
    """The shared alice and bob, alice with an evaluation summary and pictures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = voices_dir
    evaluation = root / "alice" / "eval"
    evaluation.mkdir()
    (evaluation / "summary.md").write_text("speaker similarity 0.81 (threshold 0.75): pass\n")
    fig, ax = plt.subplots(figsize=(4, 2))
    ax.bar(["alice", "reference"], [0.81, 0.9])
    ax.set_title("speaker similarity")
    fig.savefig(evaluation / "similarity.png", dpi=60)
    plt.close(fig)
    (evaluation / "evil.svg").write_text(EVIL_SVG)  # user-provided: shown, never run
    return root


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("studio_prepared")
    write_reviewed_dataset(root / "alice", TEXTS, SECONDS)
    return root


@pytest.fixture(scope="module")
def server(vllm, voices_dir, prepared_dir, tiny_orpheus_dir, tiny_snac_dir):
    settings = Settings(
        voices_dir=voices_dir,
        prepared_dir=prepared_dir,
        vllm_url=vllm.url,
        base_model=str(tiny_orpheus_dir),
        snac_model=str(tiny_snac_dir),
        api_keys=KEY,
    )
    with ServerThread(create_app(settings)) as running:
        yield running


def api_voices(server) -> list[str]:
    import httpx

    answer = httpx.get(f"{server.url}/v1/audio/voices", headers={"Authorization": f"Bearer {KEY}"})
    return [v["id"] for v in answer.json()["voices"]]


def test_page_loads_without_errors_and_lists_the_voices(page, server):
    open_with_key(page, server)
    expected = api_voices(server)
    cards = page.locator("#voice-list > li")
    playwright_api.expect(cards).to_have_count(len(expected))
    assert cards.evaluate_all("items => items.map(i => i.dataset.voice)") == expected
    assert page.locator("#voice-select option").all_inner_texts() == expected
    playwright_api.expect(page.locator("#voice-list img")).to_have_count(2)  # alice's evaluation pictures
    playwright_api.expect(page.locator("#voice-list pre")).to_contain_text("speaker similarity 0.81")
    page.locator("#reload-voices").click()
    playwright_api.expect(page.locator("#voices-status")).to_contain_text("Reloaded. No changes.")
    assert page.console_errors == []  # a Content-Security-Policy violation would be one
    assert page.dialogs == []  # the SVG's script did not run
    screenshot(page, SCREENSHOTS, "voices")


def test_speak_plays_while_generating_and_downloads_every_frame(page, server, vllm, tiny_tokenizer):
    text = "Hello from the studio page."
    open_with_key(page, server)
    playwright_api.expect(page.locator("#voice-select option")).to_have_count(2)
    page.locator("#voice-select").select_option("alice")
    page.locator("#speak-text").fill(text)
    page.locator("[data-tag='<laugh>']").click()
    assert page.locator("#speak-text").input_value() == f"{text} <laugh> "
    page.locator("#speak").click()
    stats = page.wait_for_function("() => window.voicelabStudio.lastSpeech").json_value()
    with page.expect_download() as download:
        page.locator("#download").click()
    samples, rate = sf.read(io.BytesIO(Path(download.value.path()).read_bytes()), dtype="int16")
    prompt = orpheus.inference_prompt_ids(tiny_tokenizer, f"{text} <laugh>", "Alice: ")  # input trimmed
    assert vllm.completions[-1].body["prompt"] == prompt
    n_samples = vllm.n_frames_for(prompt) * orpheus.SAMPLES_PER_FRAME
    assert rate == orpheus.SAMPLE_RATE and len(samples) == n_samples == stats["samples"]
    assert stats["chunks"] > 1 and stats["firstAudioMs"] < stats["totalMs"]  # played before the end
    playwright_api.expect(page.locator("#speak-stats")).to_contain_text("First audio after")
    assert page.console_errors == []
    screenshot(page, SCREENSHOTS, "speak")


def test_keyboard_review_edits_the_transcript_and_excludes_a_clip(page, server, prepared_dir):
    open_with_key(page, server)
    page.locator("#tab-dataset").focus()
    page.keyboard.press("Enter")
    items = page.locator("#clip-list > li")
    playwright_api.expect(items).to_have_count(len(TEXTS))
    assert items.first.get_attribute("data-clip") == "clip_001"  # the flagged clip comes first
    playwright_api.expect(page.locator("#clip-reasons")).to_contain_text("thanks for watching")
    page.keyboard.press("j")  # next: clip_000
    playwright_api.expect(page.locator("#clip-name")).to_contain_text("clip_000")
    page.keyboard.press("e")  # into the text
    page.keyboard.press("Control+A")
    page.keyboard.type('Fixed by keyboard, with "quotes"')
    page.keyboard.press("Enter")  # save and next
    playwright_api.expect(page.locator("#clip-name")).to_contain_text("clip_002")
    page.keyboard.press("Escape")  # back to the list
    page.keyboard.press("x")  # exclude clip_002
    playwright_api.expect(page.locator("#clip-exclude")).to_have_text("Restore")
    rows = dict(read_transcript(prepared_dir / "alice" / "transcript.csv"))
    assert rows["clip_000"] == 'Fixed by keyboard, with "quotes"'
    assert rows["clip_002"] == TEXTS["clip_002"]
    assert "clip_002" in read_exclusions(prepared_dir / "alice")
    playwright_api.expect(page.locator("#clip-list > li.edited")).to_have_count(1)
    assert page.console_errors == []
    screenshot(page, SCREENSHOTS, "dataset")
    page.set_viewport_size(NARROW)  # a phone: nothing wider than the screen, in either view
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, SCREENSHOTS, "dataset-narrow")
    page.locator("#tab-voices").click()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, SCREENSHOTS, "voices-narrow")


def test_a_bad_key_is_shown_in_words(page, server):
    open_with_key(page, server, key="not-the-key")
    error = page.locator("#error")
    playwright_api.expect(error).to_be_visible()
    playwright_api.expect(error).to_contain_text("invalid API key")
    playwright_api.expect(page.locator("#voice-list > li")).to_have_count(0)
    screenshot(page, SCREENSHOTS, "bad-key")


def test_a_save_over_someone_elses_edit_shows_theirs_and_keeps_mine(page, server, prepared_dir):
    import httpx

    open_with_key(page, server)
    page.locator("#tab-dataset").click()
    playwright_api.expect(page.locator("#clip-name")).to_contain_text("clip_001")
    url = f"{server.url}/studio/api/datasets/alice/clips/clip_001"
    theirs = httpx.put(
        url, json={"text": "Changed by another reviewer."}, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert theirs.status_code == 200
    page.locator("#clip-text").fill("My own words.")
    page.locator("#clip-save").click()
    error = page.locator("#error")
    playwright_api.expect(error).to_contain_text("changed by someone else")
    playwright_api.expect(error).to_contain_text("save again to replace theirs")
    playwright_api.expect(page.locator("#clip-list > li[data-clip=clip_001]")).to_contain_text(
        "Changed by another reviewer."
    )
    assert page.locator("#clip-text").input_value() == "My own words."
    rows = dict(read_transcript(prepared_dir / "alice" / "transcript.csv"))
    assert rows["clip_001"] == "Changed by another reviewer."
    screenshot(page, SCREENSHOTS, "edit-conflict")
    page.locator("#clip-save").click()  # now knowingly over theirs
    playwright_api.expect(page.locator("#clip-status")).to_contain_text("Saved clip_001")
    rows = dict(read_transcript(prepared_dir / "alice" / "transcript.csv"))
    assert rows["clip_001"] == "My own words."
    assert page.dialogs == [] and all("409" in e for e in page.console_errors)


@pytest.fixture(scope="module")
def open_server(vllm, tmp_path_factory, tiny_orpheus_dir, tiny_snac_dir):
    """No API key: only the origin checks stand between another site and a write."""
    voices = tmp_path_factory.mktemp("open_voices")
    write_voice_folder(voices, "alice", base_model=str(tiny_orpheus_dir))
    settings = Settings(
        voices_dir=voices,
        prepared_dir=tmp_path_factory.mktemp("open_prepared"),
        vllm_url=vllm.url,
        base_model=str(tiny_orpheus_dir),
        snac_model=str(tiny_snac_dir),
    )
    with ServerThread(create_app(settings)) as running:
        running.voices_dir = voices
        yield running


def test_another_sites_page_cannot_write_and_a_rebound_name_is_refused(page, open_server, tiny_orpheus_dir):
    import httpx

    write_voice_folder(open_server.voices_dir, "carol", base_model=str(tiny_orpheus_dir))  # found by a reload
    attack = (
        f'<form id="f" method="POST" action="{open_server.url}/v1/voices/reload"></form>'
        '<script>document.getElementById("f").submit()</script>'
    )
    page.route(f"{ATTACKER}/**", lambda route: route.fulfill(content_type="text/html", body=attack))
    page.goto(f"{ATTACKER}/")
    page.wait_for_url(f"{open_server.url}/v1/voices/reload")
    assert "cross_site_request" in page.content()  # the server got the POST and refused it
    voices = httpx.get(f"{open_server.url}/v1/audio/voices").json()["voices"]
    assert [v["id"] for v in voices] == ["alice"]  # the reload did not run
    rebound = page.goto(f"http://rebind.attacker.test:{open_server.port}/v1/audio/voices")
    assert rebound.status == 400 and "invalid_host" in page.content()
    page.goto(f"{open_server.url}/")  # the page itself may reload
    page.locator("#reload-voices").click()
    playwright_api.expect(page.locator("#voices-status")).to_contain_text("added: carol")
    assert page.console_errors == [] or all("400" in e or "403" in e for e in page.console_errors)


def test_an_svg_opened_at_its_own_address_is_a_download_not_a_page(page, server):
    page.context.set_extra_http_headers({"Authorization": f"Bearer {KEY}"})
    with page.expect_download() as download, pytest.raises(playwright_api.Error):
        page.goto(f"{server.url}/studio/api/voices/alice/eval/evil.svg")
    assert download.value.suggested_filename == "evil.svg"
    assert page.dialogs == []
