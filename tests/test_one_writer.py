"""One writer discipline for prepared/NAME/: transcribe and the studio (and prepare-audio) take the same
lock and merge, so running them at once loses nothing; and nothing the studio opens leaves the folder."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import soundfile as sf

from voicelab import dataset, dataset_review
from voicelab import transcribe as tr
from voicelab.dataset import read_transcript
from voicelab.errors import UsageError
from voicelab.server.app import create_app
from voicelab.server.settings import Settings
from voicelab.testing.datasets import write_reviewed_dataset
from voicelab.testing.server import idle_backend, local_client

N_CLIPS = 24
ROUNDS = 4


def studio_app(prepared, voices):
    return create_app(
        Settings(prepared_dir=prepared, voices_dir=voices, base_model="org/base"),
        backend_factory=idle_backend,
    )


def clips_folder(root, n: int = N_CLIPS):
    """``n`` silent clips of distinct lengths, so a stand-in transcriber can tell them apart."""
    folder = root / "prepared" / "ds"
    folder.mkdir(parents=True)
    whisper = {}
    for i in range(n):
        samples = tr.WHISPER_SAMPLE_RATE + 160 * i
        sf.write(folder / f"clip_{i:03d}.wav", np.zeros(samples, np.float32), tr.WHISPER_SAMPLE_RATE)
        whisper[samples] = f"whisper heard clip {i}"
    return folder, whisper


class StandInWhisper:
    """Answers Whisper's text per clip length; ``before_batch`` runs first (a person saving meanwhile)."""

    batch_size = 1

    def __init__(self, whisper: dict[int, str], before_batch=None):
        self.whisper = whisper
        self.before_batch = before_batch
        self.batches = 0

    def transcribe_batch(self, audios):
        if self.before_batch is not None:
            self.before_batch(self.batches)
        self.batches += 1
        return [tr.ClipResult(self.whisper[len(a)], -0.2, 0.01, 1.2) for a in audios]


def transcribe(folder, transcriber, overwrite: bool = False):
    clips = dataset.find_clips(folder)
    out = folder / "transcript.csv"
    plan = tr.plan_resume(clips, out, overwrite=overwrite)
    return tr.transcribe_clips(clips, out, transcriber, plan, progress=False)


def test_a_save_between_every_row_transcribe_writes_is_kept(tmp_path):
    """Before each clip, a person corrects a clip already transcribed and one not reached yet."""
    folder, whisper = clips_folder(tmp_path)
    keys = [f"clip_{i:03d}" for i in range(N_CLIPS)]
    saved: dict[str, str] = {}
    before_reached: set[str] = set()

    def person(batch: int) -> None:
        for key in {keys[max(batch - 1, 0)], keys[min(batch + 2, N_CLIPS - 1)]}:
            saved[key] = f"a person's words for {key} before batch {batch}"
            dataset_review.save_clip(folder.parent, "ds", key, text=saved[key])
            if keys.index(key) >= batch:
                before_reached.add(key)

    summary = transcribe(folder, StandInWhisper(whisper, person))
    rows = read_transcript(folder / "transcript.csv")
    assert [k for k, _ in rows] == keys  # every clip once, sorted: nothing lost, nothing doubled
    for key, text in rows:
        assert text == saved.get(key, f"whisper heard clip {int(key[-3:])}"), key
    assert set(summary.kept_edits) == before_reached  # Whisper's text for them was not written
    assert summary.transcribed == N_CLIPS - len(summary.kept_edits)


def test_transcribe_and_studio_saves_at_once_lose_nothing(tmp_path):
    """Real threads, many rounds: transcribe (with --overwrite from the second round) while the studio's
    HTTP endpoint saves clip after clip. Every acknowledged save is in the file at the end.

    Saves start once transcribe is past its start (--overwrite drops every row first, as asked), and its
    first clip waits for the first acknowledged save, so every round has saves meeting a running
    transcribe however the threads are scheduled."""
    folder, whisper = clips_folder(tmp_path)

    with local_client(studio_app(folder.parent, tmp_path / "voices")) as client:
        for n in range(ROUNDS):
            started, first_save, done = threading.Event(), threading.Event(), threading.Event()

            def hold_first_clip(batch: int, started=started, first_save=first_save) -> None:
                if batch == 0:
                    started.set()
                    first_save.wait(timeout=60)

            worker = threading.Thread(
                target=lambda n=n, done=done, hold=hold_first_clip: (
                    transcribe(folder, StandInWhisper(whisper, hold), overwrite=n > 0),
                    done.set(),
                )
            )
            acknowledged: dict[str, str] = {}
            worker.start()
            assert started.wait(timeout=60), f"round {n}: transcribe never reached its first clip"
            i = 0
            while not done.is_set():
                key = f"clip_{(N_CLIPS - 1 - i) % N_CLIPS:03d}"
                text = f"round {n} save {i} of {key}"
                if client.put(f"/studio/api/datasets/ds/clips/{key}", json={"text": text}).status_code == 200:
                    acknowledged[key] = text
                    first_save.set()
                i += 1
            worker.join()
            rows = dict(read_transcript(folder / "transcript.csv"))
            assert len(rows) == N_CLIPS
            assert {k: rows[k] for k in acknowledged} == acknowledged, f"round {n}"
            assert acknowledged, "no save met the running transcribe"


@pytest.fixture
def studio(tmp_path):
    write_reviewed_dataset(tmp_path / "prepared" / "alice", {"clip_000": "Fine words."}, (3.0,))
    (tmp_path / "voices" / "alice" / "eval").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text("filename,text\nclip_000,SECRET first line\n")
    (outside / "passwd").write_text("root:x:0:0:SECRET:/root:/bin/bash\n")

    with local_client(studio_app(tmp_path / "prepared", tmp_path / "voices")) as client:
        client.root = tmp_path
        yield client


def test_an_eval_summary_linked_to_etc_passwd_is_refused_not_read(studio):
    (studio.root / "voices" / "alice" / "eval" / "summary.md").symlink_to(studio.root / "outside" / "passwd")
    response = studio.get("/studio/api/voices/alice/eval")
    assert response.status_code == 400 and "SECRET" not in response.text
    assert str(studio.root) not in response.text


@pytest.mark.parametrize("name", ["transcript.csv", "excluded.csv"])
def test_a_linked_transcript_or_exclusion_list_is_neither_served_nor_quoted(studio, name):
    folder = studio.root / "prepared" / "alice"
    (folder / name).unlink(missing_ok=True)
    (folder / name).symlink_to(studio.root / "outside" / "secret.csv")
    before = (studio.root / "outside" / "secret.csv").read_bytes()
    for response in (
        studio.get("/studio/api/datasets/alice"),
        studio.put("/studio/api/datasets/alice/clips/clip_000", json={"text": "through the link"}),
        studio.put("/studio/api/datasets/alice/clips/clip_000", json={"excluded": True}),
    ):
        assert response.status_code == 400, response.text
        assert "SECRET" not in response.text and str(studio.root) not in response.text
    assert (studio.root / "outside" / "secret.csv").read_bytes() == before
    assert (folder / name).is_symlink()  # not replaced either: the save stopped before writing


def test_a_linked_exclusion_record_is_neither_read_nor_written_through(studio):
    """Excluding or restoring a clip updates exclusion_decisions.csv under the folder's lock, read through
    open_inside: linked out, the save is refused before anything is written."""
    folder = studio.root / "prepared" / "alice"
    outside = studio.root / "outside" / "secret.csv"
    before = outside.read_bytes()
    (folder / dataset.DECISIONS_FILE).symlink_to(outside)
    response = studio.put("/studio/api/datasets/alice/clips/clip_000", json={"excluded": True})
    assert response.status_code == 400, response.text
    assert "SECRET" not in response.text and str(studio.root) not in response.text
    assert outside.read_bytes() == before and (folder / dataset.DECISIONS_FILE).is_symlink()
    assert dataset.read_exclusions(folder) == {}  # all or nothing: excluded.csv was not written either


def test_a_loss_curve_linked_out_of_the_voice_is_refused_not_sent(studio):
    voice = studio.root / "voices" / "alice"
    (voice / "loss_curve.png").symlink_to(studio.root / "outside" / "passwd")
    response = studio.get("/studio/api/voices/alice/loss-curve")
    assert response.status_code == 400 and "SECRET" not in response.text
    assert str(studio.root) not in response.text


@pytest.mark.parametrize("lock", [dataset.LOCK_FILE, ".studio.lock"])
def test_a_linked_lock_file_creates_nothing_at_its_target(studio, lock):
    target = studio.root / "outside" / "created-through-the-lock"
    (studio.root / "prepared" / "alice" / lock).unlink(missing_ok=True)
    (studio.root / "prepared" / "alice" / lock).symlink_to(target)
    response = studio.put("/studio/api/datasets/alice/clips/clip_000", json={"text": "locked?"})
    assert not target.exists()
    if lock == dataset.LOCK_FILE:
        assert response.status_code == 409 and "delete it" in response.json()["error"]["message"]
    else:  # an old name nothing uses any more
        assert response.status_code == 200


def test_transcribe_appends_never_go_through_a_link(tmp_path):
    folder, whisper = clips_folder(tmp_path, n=2)
    outside = tmp_path / "outside.csv"
    outside.write_text("filename,text\n")
    (folder / "transcript.csv").symlink_to(outside)
    with pytest.raises(UsageError, match="leads outside"):
        transcribe(folder, StandInWhisper(whisper))
    assert outside.read_text() == "filename,text\n"
