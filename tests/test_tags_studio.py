"""The studio and the API with expressive tags: a save goes through the tag normaliser (server side), the
dataset's tag counts, and the voice list naming the tags a voice was trained with."""

from __future__ import annotations

import json

import pytest

from test_studio_api import make_client, write_dataset
from voicelab import dataset
from voicelab.dataset import read_transcript
from voicelab.testing.voices import write_voice_folder
from voicelab.voice import VOICE_FILE

TRAINED = {"laugh": {"clips": 12, "occurrences": 14}, "sigh": {"clips": 3, "occurrences": 3}}


@pytest.fixture
def client(tmp_path):
    prepared, voices = tmp_path / "prepared", tmp_path / "voices"
    write_dataset(prepared / "alice")
    folder = write_voice_folder(voices, "alice", base_model="org/base")
    meta = json.loads((folder / VOICE_FILE).read_text(encoding="utf-8"))
    (folder / VOICE_FILE).write_text(json.dumps({**meta, "tags": TRAINED}), encoding="utf-8")
    with make_client(prepared, voices) as c:
        c.prepared = prepared
        yield c


SAVED = [
    "Well (laughs) that is funny <giggle> really.",
    "*sighs* Fine [MUSIC].",
    "He laughed.",
    "<laugh> <chuckle>",
]


@pytest.mark.parametrize("text", SAVED)
def test_a_save_goes_through_the_tag_normaliser(client, text):
    response = client.put("/studio/api/datasets/alice/clips/clip_000", json={"text": text})
    assert response.status_code == 200
    tagged = dataset.normalize_tags(text)
    assert response.json()["text"] == dataset.normalize_text(tagged.text)
    assert response.json()["removed_tags"] == list(tagged.unknown)
    rows = dict(read_transcript(client.prepared / "alice" / dataset.TRANSCRIPT_FILE))
    assert rows["clip_000"] == dataset.normalize_text(tagged.text)


def test_a_text_of_unknown_annotations_alone_is_refused(client):
    response = client.put("/studio/api/datasets/alice/clips/clip_000", json={"text": "[MUSIC] (inaudible)"})
    assert response.status_code == 400 and "exclude the clip" in response.json()["error"]["message"]


def test_the_dataset_tells_its_tag_counts_and_the_guidance(client):
    url = "/studio/api/datasets/alice"
    client.put(f"{url}/clips/clip_000", json={"text": "Ha (laughs) ha (laughing)."})
    client.put(f"{url}/clips/clip_002", json={"text": "Oh <laugh> dear."})
    client.put(f"{url}/clips/clip_003", json={"text": "Sure <sigh>.", "excluded": True})  # not counted
    tags = client.get(f"{url}/tags").json()
    assert tags == client.get(url).json()["tags"]
    assert tags["counts"] == {"laugh": {"clips": 2, "occurrences": 3}}
    assert tags["examples_needed"] == dataset.TAG_EXAMPLES_NEEDED
    assert tags["orpheus_tags"] == list(dataset.ORPHEUS_TAGS)
    assert client.get("/studio/api/datasets/nobody/tags").status_code == 404


def test_the_voice_list_names_the_tags_a_voice_was_trained_with(client):
    (voice,) = client.get("/v1/audio/voices").json()["voices"]
    assert voice["training"]["tags"] == TRAINED
