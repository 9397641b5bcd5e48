"""The studio's tags in a real browser: Alt+1..8 put a tag at the text's cursor while the clip plays and
the save normalises it server side; the try-a-voice tag buttons say which tags the voice was trained with."""

from __future__ import annotations

import json

import pytest

from conftest import BROWSER_MARKS, REPO
from voicelab.dataset import read_transcript
from voicelab.server.app import create_app
from voicelab.server.settings import Settings
from voicelab.testing.browser import KEY, open_with_key, screenshot
from voicelab.testing.datasets import write_reviewed_dataset
from voicelab.testing.server import ServerThread
from voicelab.testing.voices import write_voice_folder
from voicelab.voice import VOICE_FILE

playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = BROWSER_MARKS
SCREENSHOTS = REPO / "artifacts" / "screenshots"

TEXTS = {"clip_000": "I can't believe you did that, it's brilliant.", "clip_001": "Fine, have it your way."}
SECONDS = (12.0, 12.0)  # long enough to still be playing while the keys are pressed


@pytest.fixture(scope="module")
def server(vllm, tmp_path_factory, tiny_orpheus_dir, tiny_snac_dir):
    root = tmp_path_factory.mktemp("tags_studio")
    write_reviewed_dataset(root / "prepared" / "alice", TEXTS, SECONDS)
    folder = write_voice_folder(root / "voices", "alice", base_model=str(tiny_orpheus_dir))
    meta = json.loads((folder / VOICE_FILE).read_text(encoding="utf-8"))
    meta["tags"] = {"laugh": {"clips": 120, "occurrences": 131}}
    (folder / VOICE_FILE).write_text(json.dumps(meta), encoding="utf-8")
    (folder / "eval").mkdir()
    summary = {"laugh": "rendered (trained)", "sigh": "read aloud (base)"}
    report = {"created_at": "2026-01-01T00:00:00+00:00", "summary": {"tags": summary}, "checks": []}
    (folder / "eval" / "eval.json").write_text(json.dumps(report), encoding="utf-8")
    settings = Settings(
        voices_dir=root / "voices",
        prepared_dir=root / "prepared",
        vllm_url=vllm.url,
        base_model=str(tiny_orpheus_dir),
        snac_model=str(tiny_snac_dir),
        api_keys=KEY,
    )
    with ServerThread(create_app(settings)) as running:
        running.prepared = root / "prepared" / "alice"
        yield running


def test_tag_buttons_say_which_tags_the_voice_was_trained_with(page, server):
    open_with_key(page, server)
    playwright_api.expect(page.locator("#voice-select option")).to_have_count(1)
    laugh, sigh = page.locator("[data-tag='<laugh>']"), page.locator("[data-tag='<sigh>']")
    playwright_api.expect(laugh).to_have_class("trained")
    playwright_api.expect(sigh).to_have_class("untrained")
    assert "trained on 120 clips" in laugh.get_attribute("title")
    assert "evaluation: rendered (trained)" in laugh.get_attribute("title")
    assert "may read it aloud" in sigh.get_attribute("title")
    playwright_api.expect(page.locator("#tag-note")).to_contain_text(
        "alice was trained with <laugh> 120 clips"
    )
    assert page.console_errors == []
    screenshot(page, SCREENSHOTS, "voices-tags")


def test_keys_insert_tags_at_the_cursor_while_the_clip_plays_and_the_save_normalises(page, server):
    open_with_key(page, server)
    page.locator("#tab-dataset").click()
    playwright_api.expect(page.locator("#clip-tags button")).to_have_count(8)
    playwright_api.expect(page.locator("#dataset-tags")).to_contain_text("about 100 examples")
    page.locator("#clip-list li[data-clip='clip_000'] button").click()  # selected, and it plays
    playwright_api.expect(page.locator("#clip-name")).to_contain_text("clip_000")
    page.wait_for_function("() => !document.getElementById('clip-audio').paused")
    text = page.locator("#clip-text")
    text.focus()
    page.evaluate("() => { const t = document.getElementById('clip-text'); t.setSelectionRange(29, 29); }")
    page.keyboard.press("Alt+1")  # <laugh> after "did that,"
    assert page.evaluate("document.getElementById('clip-audio').paused") is False  # still playing
    page.keyboard.press("End")
    page.keyboard.type(" (sighs) <giggle>")
    assert text.input_value() == "I can't believe you did that, <laugh> it's brilliant. (sighs) <giggle>"
    page.keyboard.press("Control+s")
    playwright_api.expect(page.locator("#clip-status")).to_contain_text("<giggle> removed")
    rows = dict(read_transcript(server.prepared / "transcript.csv"))
    assert rows["clip_000"] == "I can't believe you did that, <laugh> it's brilliant. <sigh>"
    playwright_api.expect(page.locator("#dataset-tags")).to_contain_text("<laugh> 1 clips (1x)")
    assert page.console_errors == []
    screenshot(page, SCREENSHOTS, "dataset-tags")
