"""The studio's endpoints: the page, dataset listing, clips, edits, exclusions, evaluations, refusals."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from PIL import Image

from voicelab import dataset_review
from voicelab import transcribe as tr
from voicelab.dataset import PreparedDataset, find_clips, read_exclusions, read_transcript
from voicelab.fileio import UnsafePathError
from voicelab.server.app import create_app
from voicelab.server.settings import Settings
from voicelab.testing.datasets import write_reviewed_dataset
from voicelab.testing.server import idle_backend, local_client
from voicelab.testing.voices import TRAINED_METADATA, write_evaluation, write_loss_curve, write_voice_folder

KEY = "studio-key"
CLIP_SECONDS = (3.0, 3.5, 4.0, 4.5)  # plausible speaking rates for TEXTS: only clip_001 is flagged
TEXTS = {
    "clip_000": "A perfectly ordinary sentence here.",
    "clip_001": "Thanks for watching, subscribe!",  # a known hallucination phrase: flagged
    "clip_002": "Another normal line of speech.",
    "clip_003": "Fine words for the last clip.",
}


def write_dataset(folder):
    return write_reviewed_dataset(folder, TEXTS, CLIP_SECONDS)


@pytest.fixture
def prepared(tmp_path):
    root = tmp_path / "prepared"
    write_dataset(root / "alice")
    (root / "empty").mkdir()  # no clips: not a dataset
    return root


@pytest.fixture
def voices(tmp_path):
    root = tmp_path / "voices"
    alice = write_voice_folder(
        root, "alice", base_model="/srv/models/orpheus", prompt_prefix="Alice: ", metadata=TRAINED_METADATA
    )
    write_evaluation(alice)
    write_loss_curve(alice)
    (root / "bob").mkdir()
    return root


def make_client(prepared, voices, **settings) -> TestClient:
    app = create_app(
        Settings(voices_dir=voices, prepared_dir=prepared, base_model="org/base", **settings),
        backend_factory=idle_backend,
    )
    return local_client(app)


@pytest.fixture
def client(prepared, voices):
    with make_client(prepared, voices) as c:
        yield c


def test_the_page_and_its_files_are_served_from_the_package(client):
    page = client.get("/")
    assert page.status_code == 200 and "voicelab studio" in page.text
    assert "http" not in page.text.split("<body>")[0].replace('content="width', "")  # nothing from a CDN
    for name in ("studio.js", "studio.css"):
        assert client.get(f"/studio/static/{name}").status_code == 200
    info = client.get("/studio/info").json()
    assert info["auth_required"] is False and info["datasets_enabled"] is True
    assert info["sampling"]["temperature"] == Settings().temperature


def test_datasets_are_the_folders_with_clips(client):
    body = client.get("/studio/api/datasets").json()
    assert body["datasets"] == [
        {"name": "alice", "clips": 4, "transcript": True, "review": True, "report": False}
    ]


def test_clips_come_riskiest_first_with_reasons_then_the_rest(client):
    clips = client.get("/studio/api/datasets/alice").json()["clips"]
    assert clips[0]["filename"] == "clip_001" and clips[0]["risk"] > 0
    assert "thanks for watching" in clips[0]["reasons"]
    assert [c["filename"] for c in clips[1:]] == ["clip_000", "clip_002", "clip_003"]
    assert all(c["risk"] is None and not c["excluded"] for c in clips[1:])
    assert clips[2]["text"] == TEXTS["clip_002"]


def test_a_clip_is_served_as_its_wav(client, prepared):
    response = client.get("/studio/api/datasets/alice/clips/clip_002")
    assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
    assert response.content == (prepared / "alice" / "clip_002.wav").read_bytes()


def test_an_edit_is_written_by_the_transcript_writer(client, prepared):
    tricky = '  She said, "hi" —\n café  '
    response = client.put("/studio/api/datasets/alice/clips/clip_001", json={"text": tricky})
    assert response.status_code == 200
    assert response.json()["text"] == 'She said, "hi" — café' and response.json()["edited"] is True
    rows = dict(read_transcript(prepared / "alice" / "transcript.csv"))
    assert rows["clip_001"] == 'She said, "hi" — café'
    assert rows["clip_000"] == TEXTS["clip_000"] and len(rows) == 4
    raw = (prepared / "alice" / "transcript.csv").read_bytes().decode("utf-8")
    assert '"She said, ""hi"" — café"' in raw  # CSV quoting, UTF-8
    assert not list((prepared / "alice").glob(".*tmp*"))  # atomic write left nothing behind


def test_exclude_and_restore_keep_the_text(client, prepared):
    url = "/studio/api/datasets/alice/clips/clip_002"
    body = client.put(url, json={"excluded": True, "reason": "music, under the voice"}).json()
    assert body["excluded"] is True and body["exclude_reason"] == "music, under the voice"
    with (prepared / "alice" / "excluded.csv").open(encoding="utf-8", newline="") as f:
        assert list(csv.reader(f)) == [["filename", "reason"], ["clip_002", "music, under the voice"]]
    assert dict(read_transcript(prepared / "alice" / "transcript.csv"))["clip_002"] == TEXTS["clip_002"]
    listed = {c["filename"]: c for c in client.get("/studio/api/datasets/alice").json()["clips"]}
    assert listed["clip_002"]["excluded"] is True
    assert client.put(url, json={"excluded": False}).json()["excluded"] is False
    assert read_exclusions(prepared / "alice") == {}


def test_bad_edits_are_refused_in_words(client, prepared):
    before = (prepared / "alice" / "transcript.csv").read_bytes()
    empty = client.put("/studio/api/datasets/alice/clips/clip_000", json={"text": "   "})
    assert empty.status_code == 400 and "exclude the clip" in empty.json()["error"]["message"]
    unknown = client.put("/studio/api/datasets/alice/clips/clip_999", json={"text": "x"})
    assert unknown.status_code == 404 and "clip_999" in unknown.json()["error"]["message"]
    extra = client.put("/studio/api/datasets/alice/clips/clip_000", json={"txt": "typo"})
    assert extra.status_code == 400
    assert client.get("/studio/api/datasets/nobody").status_code == 404
    assert (prepared / "alice" / "transcript.csv").read_bytes() == before


@pytest.mark.parametrize(
    "path",
    [
        "/studio/api/datasets/%2E%2E",
        "/studio/api/datasets/%2E%2E/clips/alice",
        "/studio/api/datasets/alice/clips/%2E%2E",
        "/studio/api/datasets/alice/clips/%2E%2E%2Fsecret",
        "/studio/api/datasets/alice/clips/%2Fetc%2Fpasswd",
        "/studio/api/voices/%2E%2E",
        "/studio/api/voices/%2E%2E/loss-curve",
        "/studio/api/voices/..%2F..%2Fsecret",
    ],
)
def test_traversal_is_refused(client, path):
    # percent-encoded, since HTTP clients (httpx, browsers) drop literal ".." parts before sending
    response = client.get(path)
    assert response.status_code in (400, 404), response.text
    assert response.json()["error"]["message"]


def test_names_are_checked_by_the_core_too(prepared):
    with pytest.raises(UnsafePathError):
        dataset_review.clip_path(prepared, "..", "alice")
    with pytest.raises(UnsafePathError):
        dataset_review.save_clip(prepared, "alice", "../../outside", text="x")
    with pytest.raises(dataset_review.DatasetNotFoundError):
        dataset_review.clip_path(prepared, "alice", "sub/clip_000")


def test_symlinks_out_of_the_prepared_folder_are_refused(client, prepared, tmp_path):
    outside = write_dataset(tmp_path / "outside")
    before = (outside / "transcript.csv").read_bytes()
    (prepared / "evil").symlink_to(outside, target_is_directory=True)
    (prepared / "alice" / "clip_404.wav").symlink_to(outside / "clip_000.wav")
    assert client.get("/studio/api/datasets/evil").status_code == 400
    assert client.get("/studio/api/datasets/evil/clips/clip_000").status_code == 400
    put = client.put("/studio/api/datasets/evil/clips/clip_000", json={"text": "overwritten"})
    assert put.status_code == 400 and "outside" in put.json()["error"]["message"]
    assert client.get("/studio/api/datasets/alice/clips/clip_404").status_code == 400
    assert (outside / "transcript.csv").read_bytes() == before


def test_studio_off_closes_the_dataset_endpoints_only(prepared, voices):
    with make_client(prepared, voices, studio=False) as c:
        assert c.get("/studio/info").json()["datasets_enabled"] is False
        for response in (
            c.get("/studio/api/datasets"),
            c.get("/studio/api/datasets/alice"),
            c.get("/studio/api/datasets/alice/clips/clip_000"),
            c.put("/studio/api/datasets/alice/clips/clip_000", json={"text": "x"}),
        ):
            assert response.status_code == 403
            assert "VOICELAB_STUDIO" in response.json()["error"]["message"]
        assert c.get("/").status_code == 200
        assert c.get("/studio/api/voices/alice").status_code == 200


def test_the_api_keys_guard_the_studio_endpoints(prepared, voices):
    with make_client(prepared, voices, api_keys=KEY) as c:
        assert c.get("/").status_code == 200 and c.get("/studio/info").json()["auth_required"] is True
        assert c.get("/studio/api/datasets").status_code == 401
        bad = c.get("/studio/api/datasets", headers={"Authorization": "Bearer wrong"})
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"
        assert c.put("/studio/api/datasets/alice/clips/clip_000", json={"text": "x"}).status_code == 401
        assert c.get("/studio/api/voices/alice").status_code == 401
        good = c.get("/studio/api/datasets", headers={"Authorization": f"Bearer {KEY}"})
        assert good.status_code == 200


def test_a_voice_card_gets_the_prompt_prefix_base_model_loss_curve_and_checks(client, voices, tmp_path):
    body = client.get("/studio/api/voices/alice").json()
    assert body["prompt_prefix"] == "Alice: "
    assert body["base_model"] == "orpheus (a folder)"  # a folder's name, never the server's path
    assert "/srv" not in json.dumps(body)
    assert body["loss_curve"] is True
    checks = {c["check"]: c for c in body["evaluation"]["checks"]}
    assert (
        checks["word error rate"]["verdict"] == "FAIL" and checks["word error rate"]["threshold"] == "<= 0.15"
    )
    assert checks["word error rate"]["advice"] and body["evaluation"]["created_at"].startswith("2026-12-01")
    curve = client.get("/studio/api/voices/alice/loss-curve")
    assert curve.status_code == 200 and curve.headers["content-type"] == "image/png"
    assert curve.content[:8] == b"\x89PNG\r\n\x1a\n"
    # a folder without voice.json, loss curve or evaluation: nothing to show, no error
    assert client.get("/studio/api/voices/bob").json() == {
        "voice": "bob",
        "prompt_prefix": None,
        "base_model": None,
        "loss_curve": False,
        "evaluation": None,
    }
    assert client.get("/studio/api/voices/bob/loss-curve").status_code == 404
    assert client.get("/studio/api/voices/carol").status_code == 404
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "eval.json").write_text(json.dumps({"checks": []}))
    (voices / "bob" / "eval").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    assert client.get("/studio/api/voices/bob").json()["evaluation"] is None  # not read through a symlink out


def test_the_schema_says_what_the_voice_card_routes_answer(client):
    paths = client.get("/openapi.json").json()["paths"]
    card = paths["/studio/api/voices/{voice}"]["get"]["responses"]
    assert {"200", "400", "401", "404"} <= set(card)
    curve = paths["/studio/api/voices/{voice}/loss-curve"]["get"]["responses"]
    assert set(curve["200"]["content"]) == {"image/png"} and {"400", "401", "404"} <= set(curve)
    report = paths["/studio/api/datasets/{name}/report"]["get"]
    assert [p["name"] for p in report["parameters"] if p["in"] == "query"] == ["layout"]
    assert {"400", "403", "404"} <= set(report["responses"])


def test_a_hub_base_model_is_named_by_its_hub_id(client, voices):
    write_voice_folder(
        voices, "dora", base_model="/srv/cache/x", metadata={"base_model_hub_id": "org/orpheus"}
    )
    assert client.get("/studio/api/voices/dora").json()["base_model"] == "org/orpheus"


def test_the_dataset_report_is_served_where_it_exists(client, prepared):
    assert client.get("/studio/api/datasets/alice/report").status_code == 404
    (prepared / "alice" / "dataset_report.png").write_bytes(b"\x89PNG\r\n\x1a\nreport")
    assert client.get("/studio/api/datasets").json()["datasets"][0]["report"] is True
    response = client.get("/studio/api/datasets/alice/report")
    assert response.status_code == 200 and response.content.endswith(b"report")


def report_title(png: bytes) -> str:
    """The headline the report draws (also written into the PNG's Title)."""
    return Image.open(io.BytesIO(png)).text["Title"]


def test_the_report_follows_exclusions_made_in_the_page_and_has_a_phone_layout(client, tmp_path):
    root = tmp_path / "reported"
    write_reviewed_dataset(root / "bob", TEXTS, CLIP_SECONDS, with_report=True)
    with make_client(root, tmp_path / "voices") as c:
        before = c.get("/studio/api/datasets/bob/report")
        assert before.headers["content-type"] == "image/png"
        assert report_title(before.content).startswith("bob: 4 clips kept (0 excluded)")
        c.put("/studio/api/datasets/bob/clips/clip_001", json={"excluded": True, "reason": "not her"})
        after = c.get("/studio/api/datasets/bob/report")
        assert report_title(after.content).startswith("bob: 3 clips kept (1 excluded)")
        assert (root / "bob" / "dataset_report.png").read_bytes() == after.content  # redrawn in place
        narrow = c.get("/studio/api/datasets/bob/report", params={"layout": "narrow"})
        width, height = Image.open(io.BytesIO(narrow.content)).size
        assert width == 400 and height > 2 * width  # one column of panels, a phone's shape
        assert report_title(narrow.content).startswith("bob: 3 clips kept (1 excluded)")
        c.put("/studio/api/datasets/bob/clips/clip_001", json={"excluded": False})
        assert "4 clips kept (0 excluded)" in report_title(c.get("/studio/api/datasets/bob/report").content)
        assert c.get("/studio/api/datasets/bob/report", params={"layout": "tall"}).status_code == 400


def test_a_report_kept_by_an_older_version_is_still_redrawn(tmp_path):
    """dataset_report.json written before the speaker comparison named its reference ("by_reference")."""
    root = tmp_path / "reported"
    write_reviewed_dataset(root / "bob", TEXTS, CLIP_SECONDS, with_report=True)
    ds = PreparedDataset(root / "bob")
    inputs = ds.read_report_inputs()
    for by_reference in (True, False):
        old = {k: v for k, v in inputs.items() if k != "reference"} | {"by_reference": by_reference}
        ds.write_report_inputs(old)
        with make_client(root, tmp_path / "voices") as c:
            c.put("/studio/api/datasets/bob/clips/clip_001", json={"excluded": by_reference})
            answer = c.get("/studio/api/datasets/bob/report")
        assert answer.status_code == 200
        kept = 3 if by_reference else 4
        assert report_title(answer.content).startswith(f"bob: {kept} clips kept")


# ------------------------------------------------------------------ a later transcribe run keeps the edit


class CountingTranscriber:
    """Answers a fixed text per clip length and records which clips it was asked to transcribe."""

    batch_size = 1

    def __init__(self, texts_by_samples: dict[int, str]):
        self.texts = texts_by_samples
        self.seen: list[int] = []

    def transcribe_batch(self, audios):
        self.seen += [len(a) for a in audios]
        return [tr.ClipResult(self.texts[len(a)], -0.2, 0.01, 1.2) for a in audios]


def transcribe(folder, transcriber):
    clips = find_clips(folder)
    out = folder / "transcript.csv"
    return tr.transcribe_clips(
        clips, out, transcriber, tr.plan_resume(clips, out, overwrite=False), progress=False
    )


def test_a_later_transcribe_run_keeps_the_edits(tmp_path):
    folder = tmp_path / "prepared" / "carol"
    folder.mkdir(parents=True)
    rate = tr.WHISPER_SAMPLE_RATE
    texts = {}
    for i, seconds in enumerate((1.0, 1.5, 2.0)):
        n = int(rate * seconds)
        sf.write(folder / f"clip_{i:03d}.wav", np.zeros(n, np.float32), rate)
        texts[n] = f"whisper text {i}"
    transcribe(folder, CountingTranscriber(texts))
    dataset_review.save_clip(folder.parent, "carol", "clip_001", text="the corrected words")
    dataset_review.save_clip(folder.parent, "carol", "clip_002", excluded=True, reason="two speakers")
    n_new = int(rate * 2.5)
    sf.write(folder / "clip_003.wav", np.zeros(n_new, np.float32), rate)

    again = CountingTranscriber({**{n: "whisper would say this" for n in texts}, n_new: "a new clip"})
    transcribe(folder, again)
    assert again.seen == [n_new]  # only the new clip; the edited one is not redone
    rows = dict(read_transcript(folder / "transcript.csv"))
    assert rows == {
        "clip_000": "whisper text 0",
        "clip_001": "the corrected words",
        "clip_002": "whisper text 2",
        "clip_003": "a new clip",
    }
    assert read_exclusions(folder) == {"clip_002": "two speakers"}


def test_a_broken_transcript_is_named_not_overwritten(client, prepared):
    broken = 'filename,text\nclip_000,"never closed\n'
    (prepared / "alice" / "transcript.csv").write_text(broken, encoding="utf-8")
    listing = client.get("/studio/api/datasets/alice")
    assert listing.status_code == 409 and "transcript.csv" in listing.json()["error"]["message"]
    put = client.put("/studio/api/datasets/alice/clips/clip_000", json={"text": "new"})
    assert put.status_code == 409
    assert (prepared / "alice" / "transcript.csv").read_text(encoding="utf-8") == broken


def test_saves_at_the_same_time_are_all_kept(prepared):
    from concurrent.futures import ThreadPoolExecutor

    edits = {key: f"{text} Checked." for key, text in TEXTS.items()}  # "(checked)" is an annotation now
    with ThreadPoolExecutor(len(edits)) as pool:
        list(
            pool.map(lambda kv: dataset_review.save_clip(prepared, "alice", kv[0], text=kv[1]), edits.items())
        )
    assert dict(read_transcript(prepared / "alice" / "transcript.csv")) == edits
