"""The studio page in a real browser: Chromium driven by Playwright against the API served over HTTP,
with the stand-in vLLM and tiny models behind it. Screenshots of each view go to artifacts/screenshots/.

Chromium is the distribution's (``apt-get install chromium``), launched by path; nothing is downloaded.
Without it these tests are skipped, and the skip says so.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import soundfile as sf

from conftest import BROWSER_MARKS, REPO
from voicelab import orpheus
from voicelab.dataset import read_exclusions, read_transcript
from voicelab.server.app import create_app
from voicelab.server.settings import Settings
from voicelab.testing.browser import KEY, STEP_TIMEOUT_MS, open_with_key, screenshot
from voicelab.testing.datasets import write_reviewed_dataset
from voicelab.testing.server import ServerThread
from voicelab.testing.voices import TRAINED_METADATA, write_evaluation, write_loss_curve, write_voice_folder

ATTACKER = "http://attacker.test"
"""Another site: its page is served by Playwright's router, never by the network."""
EVIL_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20" onload="alert(\'onload\')">'
    '<script>alert(document.domain)</script><rect width="40" height="20"/></svg>'
)
SCREENSHOTS = REPO / "artifacts" / "screenshots"
NARROW = {"width": 390, "height": 844}  # a phone
LONG_DIGITS = r"\d\.\d{5,}"  # a float printed raw (4.123456789012345) instead of rounded

playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = BROWSER_MARKS

TEXTS = {
    "clip_000": "A perfectly ordinary sentence here.",
    "clip_001": "Thanks for watching, subscribe!",
    "clip_002": "Another normal line of speech.",
}
SECONDS = (3.0, 3.5, 4.0)


@pytest.fixture(scope="module")
def voices_dir(tmp_path_factory, tiny_orpheus_dir):
    """alice: trained, with its loss curve, evaluated (one check fails); bob: trained, not evaluated."""
    root = tmp_path_factory.mktemp("studio_voices")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = str(tiny_orpheus_dir)
    alice = write_voice_folder(
        root, "alice", base_model=base, prompt_prefix="Alice: ", metadata=TRAINED_METADATA
    )
    write_loss_curve(alice)
    write_evaluation(alice)
    write_voice_folder(root, "bob", base_model=base, metadata=TRAINED_METADATA)
    evaluation = alice / "eval"  # pictures a person added beside evaluate's files
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
    write_reviewed_dataset(root / "alice", TEXTS, SECONDS, with_report=True)
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


def card_facts(card) -> dict[str, str]:
    """A voice card's labelled values (the first level of its lists), label -> text."""
    return card.evaluate(
        """card => Object.fromEntries([...card.querySelectorAll(':scope > dl > dt')]
             .map(dt => [dt.textContent, dt.nextElementSibling.textContent]))"""
    )


def test_voice_cards_show_what_the_api_says_labelled_and_rounded(page, server):
    open_with_key(page, server)
    expected = api_voices(server)
    cards = page.locator("#voice-list > li")
    playwright_api.expect(cards).to_have_count(len(expected))
    assert cards.evaluate_all("items => items.map(i => i.dataset.voice)") == expected
    assert page.locator("#voice-select option").all_inner_texts() == expected
    alice = page.locator("#voice-list > li[data-voice='alice']")
    playwright_api.expect(alice.locator(".loss-curve img")).to_be_visible()
    playwright_api.expect(alice.locator(".facts dd").nth(1)).not_to_have_text("—")  # details arrived
    facts = card_facts(alice)
    assert facts["Prompt prefix"] == '"Alice: "' and facts["Base model"].endswith("(a folder)")
    assert facts["Trained"] == "2026-11-30 06:20 UTC"
    assert facts["LoRA rank"] == "8" and facts["Clips"] == "118" and facts["Audio"] == "14.2 min"
    assert facts["Steps"] == "354" and facts["Final loss"] == "4.123" and facts["Final eval loss"] == "4.388"
    assert alice.locator(".loss-curve img").evaluate("img => img.naturalWidth") > 0
    # the evaluation: a one-line verdict count, the checks as a table when opened
    evaluation = alice.locator("details.evaluation")
    playwright_api.expect(evaluation.locator(":scope > summary")).to_contain_text("2026-12-01")
    verdicts = evaluation.locator(":scope > summary .verdict").all_inner_texts()
    assert verdicts == ["6 pass", "2 FAIL", "2 n/a"]  # the tags check is n/a: no tag was checked
    heading = page.get_by_role("heading", name="Try a voice")
    assert heading.bounding_box()["y"] < page.viewport_size["height"]  # not pushed below the fold
    evaluation.locator(":scope > summary").click()
    rows = evaluation.locator("table.checks tbody tr")
    playwright_api.expect(rows).to_have_count(10)
    wer = evaluation.locator("table.checks tr", has_text="word error rate")
    assert wer.locator("td").all_inner_texts() == ["word error rate", "0.235", "<= 0.15", "FAIL"]
    playwright_api.expect(evaluation.locator(".advice")).to_contain_text("fewer epochs")
    evaluation.locator("details.numbers > summary").click()
    numbers = evaluation.locator("details.numbers dl").first
    playwright_api.expect(numbers).to_contain_text("Word error rate")
    playwright_api.expect(numbers).to_contain_text("23.5%")
    # evaluate's own report, folded, and the pictures in eval/ (alice's evaluation pictures)
    playwright_api.expect(evaluation.locator(".eval-pictures img")).to_have_count(2)
    playwright_api.expect(evaluation.locator("details.report pre")).to_contain_text("Evaluation of alice")
    bob = page.locator("#voice-list > li[data-voice='bob']")
    assert bob.locator("details.evaluation").count() == 0  # not evaluated: nothing to open
    listed = page.locator("#voice-list").inner_text()
    assert not re.search(LONG_DIGITS, listed) and "{" not in listed and "null" not in listed
    page.locator("#reload-voices").click()
    playwright_api.expect(page.locator("#voices-status")).to_contain_text("Reloaded. No changes.")
    assert page.console_errors == []  # a Content-Security-Policy violation would be one
    assert page.dialogs == []  # the SVG's script did not run
    page.locator("#voice-list > li[data-voice='alice'] details.evaluation > summary").click()
    page.locator("#voice-list > li[data-voice='alice'] details.evaluation table.checks").wait_for()
    screenshot(page, SCREENSHOTS, "voices")


def test_fields_a_newer_api_adds_are_shown_labelled(page, server):
    """The cards render ``training`` and ``evaluation`` generically: a field another step adds later
    (early stopping's chosen checkpoint, per-tag results) appears with a label and rounded numbers."""
    import json

    def newer_api(route):
        body = route.fetch().json()
        for voice in body["voices"]:
            voice["training"]["chosen_checkpoint"] = {"step": 300, "eval_loss": 4.2109876543}
            if voice["evaluation"]:
                voice["evaluation"]["per_tag"] = {"laugh": {"wer": 0.31234567, "pieces": 4}}
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    page.route("**/v1/audio/voices", newer_api)
    open_with_key(page, server)
    alice = page.locator("#voice-list > li[data-voice='alice']")
    chosen = alice.locator("dl.training > dt", has_text="Chosen checkpoint")
    playwright_api.expect(chosen).to_be_visible()
    assert chosen.locator("xpath=following-sibling::dd[1]").inner_text().split() == [
        "Step",
        "300",
        "Eval",
        "loss",
        "4.21",
    ]
    alice.locator("details.evaluation > summary").click()
    alice.locator("details.numbers > summary").click()
    per_tag = alice.locator("details.numbers dt", has_text="Per tag")
    playwright_api.expect(per_tag).to_be_visible()
    assert "0.312" in per_tag.locator("xpath=following-sibling::dd[1]").inner_text()
    assert not re.search(LONG_DIGITS, page.locator("#voice-list").inner_text())
    assert page.console_errors == []


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


def test_a_tag_clicked_before_the_text_was_touched_goes_at_the_end(page, server):
    open_with_key(page, server)
    before = page.locator("#speak-text").input_value()
    page.locator("[data-tag='<sigh>']").click()  # the caret was never placed
    assert page.locator("#speak-text").input_value() == f"{before} <sigh> "
    page.locator("#speak-text").press("Control+Home")  # now the person puts it at the start
    page.locator("[data-tag='<gasp>']").click()
    assert page.locator("#speak-text").input_value().startswith("<gasp> Hello!")


def test_a_failed_speak_says_why_next_to_the_button_and_max_tokens_gets_the_audio(page, server, vllm):
    """A runaway voice (the model never says end of speech) stops at the budget derived from the text,
    after audio already streamed: the server's reason appears beside Speak, not a "network error" in
    the banner; with Max tokens set, the audio simply ends there."""
    open_with_key(page, server)
    playwright_api.expect(page.locator("#voice-select option")).to_have_count(2)
    page.locator("#speak-text").fill("Hi.")
    runaway = 400  # frames: far past what "Hi." can need
    vllm.frames_per_prompt = runaway
    try:
        page.locator("#speak").click()
        error = page.locator("#speak-error")
        playwright_api.expect(error).to_be_visible()
        playwright_api.expect(error).to_contain_text("generation ended early")
        playwright_api.expect(error).to_contain_text("raise max_tokens")
        playwright_api.expect(error).to_contain_text("Max tokens, above, sets the budget")
        assert "network error" not in error.inner_text()
        assert page.locator("#error").is_hidden()  # the banner is for the page, not for Speak
        assert error.bounding_box()["y"] - page.locator("#speak").bounding_box()["y"] < 80  # beside it
        screenshot(page, SCREENSHOTS, "speak-error")
        page.locator("#tab-dataset").click()
        page.locator("#tab-voices").click()
        playwright_api.expect(error).to_be_hidden()  # another view: the old error is gone
        max_tokens = 200
        page.locator("#speak-max-tokens").fill(str(max_tokens))
        page.locator("#speak").click()
        stats = page.wait_for_function("() => window.voicelabStudio.lastSpeech").json_value()
    finally:
        vllm.frames_per_prompt = None
    assert vllm.completions[-1].body["max_tokens"] == orpheus.whole_frames_budget(max_tokens)
    frames = orpheus.whole_frames_budget(max_tokens) // orpheus.CODES_PER_FRAME
    assert stats["samples"] == frames * orpheus.SAMPLES_PER_FRAME
    assert error.is_hidden()
    assert page.console_errors == []


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
    playwright_api.expect(page.locator("#clip-status")).to_contain_text("Saved clip_000.")  # not wiped
    page.keyboard.press("Escape")  # back to the list
    report = page.locator("#dataset-report img")
    playwright_api.expect(report).to_have_attribute("src", re.compile("^blob:"))
    drawn = report.get_attribute("src")
    page.keyboard.press("x")  # exclude clip_002
    playwright_api.expect(page.locator("#clip-exclude")).to_have_text("Restore")
    playwright_api.expect(report).not_to_have_attribute("src", drawn, timeout=STEP_TIMEOUT_MS)  # redrawn
    rows = dict(read_transcript(prepared_dir / "alice" / "transcript.csv"))
    assert rows["clip_000"] == 'Fixed by keyboard, with "quotes"'
    assert rows["clip_002"] == TEXTS["clip_002"]
    assert "clip_002" in read_exclusions(prepared_dir / "alice")
    playwright_api.expect(page.locator("#clip-list > li.edited")).to_have_count(1)
    assert page.console_errors == []
    screenshot(page, SCREENSHOTS, "dataset")
    page.set_viewport_size(NARROW)  # a phone: nothing wider than the screen, in either view
    playwright_api.expect(report).to_have_attribute("data-layout", "narrow", timeout=STEP_TIMEOUT_MS)
    report.scroll_into_view_if_needed()
    page.wait_for_function("() => document.querySelector('#dataset-report img').naturalWidth === 400")
    assert report.bounding_box()["width"] <= NARROW["width"]
    assert report.evaluate("img => img.naturalWidth / img.width") < 1.25  # its text keeps its size
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
    error = page.locator("#clip-error")  # beside Save, the button that met the conflict
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
