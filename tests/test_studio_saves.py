"""Studio saves and names under hostile input: control characters, strict types, all or nothing, file
order and duplicates kept, optimistic concurrency (ETag / If-Match), names no file can have, files that
vanish, and no server path in any answer."""

from __future__ import annotations

import os

import pytest

from voicelab import dataset_review
from voicelab.dataset import PreparedDataset, read_exclusions, read_transcript
from voicelab.server.app import create_app
from voicelab.server.settings import Settings
from voicelab.testing.datasets import write_reviewed_dataset
from voicelab.testing.server import idle_backend, local_client

TEXTS = {"clip_000": "First words here.", "clip_001": "Second words here.", "clip_002": "Third words here."}
SECONDS = (3.0, 3.5, 4.0)
CLIP = "/studio/api/datasets/alice/clips/clip_000"
LONG_NAME = "n" * 256
NAME_ROUTES = (
    "/studio/api/datasets/{name}",
    "/studio/api/datasets/{name}/clips/clip_000",
    "/studio/api/datasets/alice/clips/{name}",
    "/studio/api/datasets/{name}/report",
    "/studio/api/voices/{name}/eval",
    "/studio/api/voices/alice/eval/{name}",
)


@pytest.fixture
def root(tmp_path):
    write_reviewed_dataset(tmp_path / "prepared" / "alice", TEXTS, SECONDS)
    (tmp_path / "voices" / "alice" / "eval").mkdir(parents=True)
    (tmp_path / "voices" / "alice" / "eval" / "summary.md").write_text("similarity 0.8\n")
    return tmp_path


@pytest.fixture
def client(root):
    settings = Settings(voices_dir=root / "voices", prepared_dir=root / "prepared", base_model="org/base")
    with local_client(create_app(settings, backend_factory=idle_backend)) as c:
        yield c


def transcript_bytes(root) -> bytes:
    return (root / "prepared" / "alice" / "transcript.csv").read_bytes()


def etag_of(client, clip: str) -> str:
    return next(
        c["etag"] for c in client.get("/studio/api/datasets/alice").json()["clips"] if c["filename"] == clip
    )


# ------------------------------------------------------------------------------------------ values


@pytest.mark.parametrize("bad", ["nul\x00here", "esc\x1b[31m", "bell\x07", "del\x7f", "c1\x85"])
@pytest.mark.parametrize("field", ["text", "reason"])
def test_control_characters_are_refused_and_nothing_is_written(client, root, bad, field):
    before = transcript_bytes(root)
    body = {"text": bad} if field == "text" else {"excluded": True, "reason": bad}
    response = client.put(CLIP, json=body)
    assert response.status_code == 400 and "control characters" in response.json()["error"]["message"]
    assert transcript_bytes(root) == before and read_exclusions(root / "prepared" / "alice") == {}


def test_whitespace_controls_are_collapsed_not_refused(client):
    assert client.put(CLIP, json={"text": "two\tparts\r\nhere"}).json()["text"] == "two parts here"


@pytest.mark.parametrize(
    "body",
    [
        {"excluded": "on"},
        {"excluded": 1},
        {"excluded": "true"},
        {"text": 5},
        {"text": ["x"]},
        {"reason": True},
    ],
)
def test_types_are_strict_not_coerced(client, root, body):
    before = transcript_bytes(root)
    response = client.put(CLIP, json=body)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_value"
    assert transcript_bytes(root) == before and read_exclusions(root / "prepared" / "alice") == {}


def test_a_save_that_answers_409_has_written_nothing(client, root):
    folder = root / "prepared" / "alice"
    broken = 'filename,reason\nclip_001,"never closed\n'
    (folder / "excluded.csv").write_text(broken, encoding="utf-8")
    before = transcript_bytes(root)
    response = client.put(CLIP, json={"text": "Only half applied?", "excluded": True})
    assert response.status_code == 409 and "excluded.csv" in response.json()["error"]["message"]
    assert transcript_bytes(root) == before
    assert (folder / "excluded.csv").read_text(encoding="utf-8") == broken


def test_a_failed_exclusion_write_puts_the_text_back(root, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    before = transcript_bytes(root)
    monkeypatch.setattr(PreparedDataset, "write_exclusions", fail)
    with pytest.raises(OSError):
        dataset_review.save_clip(root / "prepared", "alice", "clip_000", text="new words", excluded=True)
    assert transcript_bytes(root) == before


# ---------------------------------------------------------------------------- order and duplicates


def test_a_save_keeps_the_file_order_and_changes_one_row(client, root):
    path = root / "prepared" / "alice" / "transcript.csv"
    path.write_text(
        "filename,text\nclip_002,Third words here.\nclip_000,First words here.\nclip_001,Second words here.\n",
        encoding="utf-8",
    )
    assert client.put(CLIP, json={"text": "First, edited."}).status_code == 200
    assert path.read_text(encoding="utf-8") == (
        'filename,text\nclip_002,Third words here.\nclip_000,"First, edited."\nclip_001,Second words here.\n'
    )


def test_duplicate_rows_are_reported_and_kept(client, root):
    path = root / "prepared" / "alice" / "transcript.csv"
    path.write_text(
        "filename,text\nclip_000,First words here.\nclip_001,Second.\nclip_001,Second again.\n"
        "clip_002,Third words here.\n",
        encoding="utf-8",
    )
    assert client.get("/studio/api/datasets/alice").json()["duplicates"] == ["clip_001"]
    assert client.put(CLIP, json={"text": "Edited elsewhere."}).status_code == 200
    rows = read_transcript(path)
    assert [k for k, _ in rows] == ["clip_000", "clip_001", "clip_001", "clip_002"]  # nothing dropped
    duplicate = client.put("/studio/api/datasets/alice/clips/clip_001", json={"text": "which row?"})
    assert duplicate.status_code == 409 and duplicate.json()["error"]["code"] == "duplicate_rows"
    assert read_transcript(path) == rows


# -------------------------------------------------------------------------- optimistic concurrency


def test_reads_carry_versions_and_a_stale_save_gets_409_with_the_current_text(client, root):
    listing = client.get("/studio/api/datasets/alice")
    assert listing.headers["etag"] == listing.json()["etag"]
    seen = etag_of(client, "clip_000")
    mine = client.put(CLIP, json={"text": "Reviewer one."}, headers={"If-Match": seen})
    assert mine.status_code == 200 and mine.headers["etag"] == mine.json()["etag"] != seen
    before = transcript_bytes(root)
    theirs = client.put(CLIP, json={"text": "Reviewer two."}, headers={"If-Match": seen})
    assert theirs.status_code == 409 and theirs.json()["error"]["code"] == "edit_conflict"
    assert theirs.json()["current"]["text"] == "Reviewer one."
    assert theirs.headers["etag"] == mine.json()["etag"]
    assert "Reviewer one." in theirs.json()["error"]["message"]
    assert transcript_bytes(root) == before
    again = client.put(CLIP, json={"text": "Reviewer two."}, headers={"If-Match": theirs.headers["etag"]})
    assert again.status_code == 200 and again.json()["text"] == "Reviewer two."


def test_an_exclusion_changes_the_version_too(client):
    seen = etag_of(client, "clip_001")
    url = "/studio/api/datasets/alice/clips/clip_001"
    assert client.put(url, json={"excluded": True}).status_code == 200
    stale = client.put(url, json={"text": "x"}, headers={"If-Match": seen})
    assert stale.status_code == 409 and stale.json()["current"]["excluded"] is True
    assert client.put(url, json={"excluded": False}, headers={"If-Match": "*"}).status_code == 200


def test_a_save_without_if_match_still_applies(client):
    assert client.put(CLIP, json={"text": "From curl."}).status_code == 200


# ------------------------------------------------------------------------------------------ names


@pytest.mark.parametrize("route", NAME_ROUTES)
@pytest.mark.parametrize("name", [LONG_NAME, "%00", "a%00b", "%00.png"])
def test_names_no_file_can_have_are_400_on_every_route(client, route, name):
    response = client.get(route.format(name=name))
    assert response.status_code in (400, 404), response.text  # 404 where the route's own rule refuses first
    assert response.json()["error"]["message"]


@pytest.mark.parametrize("name", ["clip_000.wav.wav", "clip_000.WAV.wav", "clip_000%20.wav"])
def test_another_spelling_of_a_clip_name_is_404_not_an_alias(client, root, name):
    before = transcript_bytes(root)
    assert client.get(f"/studio/api/datasets/alice/clips/{name}").status_code == 404
    assert client.put(f"/studio/api/datasets/alice/clips/{name}", json={"text": "alias"}).status_code == 404
    assert transcript_bytes(root) == before
    assert (
        client.put("/studio/api/datasets/alice/clips/clip_000.wav", json={"text": "x y"}).status_code == 200
    )


@pytest.mark.parametrize("name", [LONG_NAME, "a%00b"])
def test_an_over_long_or_nul_name_is_400_when_saving(client, name):
    response = client.put(f"/studio/api/datasets/alice/clips/{name}", json={"text": "x"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "unsafe_path"


def test_files_whose_names_are_not_utf8_are_left_out_not_500(client, root):
    prepared = os.fsencode(root / "prepared")
    os.mkdir(prepared + b"/bad\xff")
    os.link(
        root / "prepared" / "alice" / "clip_000.wav",
        os.fsencode(root / "prepared" / "alice") + b"/odd\xfe.wav",
    )
    os.link(root / "prepared" / "alice" / "clip_000.wav", prepared + b"/bad\xff/clip.wav")
    listing = client.get("/studio/api/datasets")
    assert listing.status_code == 200 and [d["name"] for d in listing.json()["datasets"]] == ["alice"]
    clips = client.get("/studio/api/datasets/alice")
    assert clips.status_code == 200 and len(clips.json()["clips"]) == len(TEXTS)
    assert client.get("/studio/api/datasets/bad%FF").status_code == 404


def test_a_clip_that_vanishes_between_the_check_and_the_send_is_404(client, root, monkeypatch):
    found = dataset_review.clip_path

    def vanishing(*args):
        path = found(*args)
        path.unlink()  # removed after the check, before the file is opened
        return path

    monkeypatch.setattr(dataset_review, "clip_path", vanishing)
    response = client.get(CLIP)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_an_open_clip_is_sent_whole_even_if_removed_meanwhile(client, root, monkeypatch):
    from voicelab.server import studio

    expected = (root / "prepared" / "alice" / "clip_000.wav").read_bytes()
    opened = studio.open_inside

    def open_then_remove(folder, name):
        handle = opened(folder, name)
        (folder / name).unlink()
        return handle

    monkeypatch.setattr(studio, "open_inside", open_then_remove)
    response = client.get(CLIP)
    assert response.status_code == 200 and response.content == expected


# ------------------------------------------------------------------------------------------ paths


def test_no_answer_shows_the_servers_absolute_paths(client, root):
    folder = root / "prepared" / "alice"
    answers = [client.get("/studio/api/datasets")]
    (folder / "transcript.csv").write_text('filename,text\nclip_000,"never closed\n', encoding="utf-8")
    answers += [
        client.get("/studio/api/datasets/alice"),
        client.put(CLIP, json={"text": "x"}),
        client.get("/studio/api/datasets/nobody"),
        client.get("/studio/api/voices/nobody/eval"),
        client.get("/studio/api/datasets/alice/report"),
        client.get("/studio/api/voices/alice/eval/none.png"),
    ]
    (root / "voices" / "alice" / "eval" / "link.png").symlink_to("/etc/hostname")
    answers.append(client.get("/studio/api/voices/alice/eval/link.png"))
    assert [a.status_code for a in answers] == [200, 409, 409, 404, 404, 404, 404, 400]
    for answer in answers:
        assert str(root) not in answer.text and "/etc" not in answer.text, answer.text
    assert answers[0].json()["prepared_dir"] == "prepared"
    assert "prepared/alice/transcript.csv" in answers[1].json()["error"]["message"]
