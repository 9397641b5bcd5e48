"""The studio's voice jobs: on/off rules, the API key, checks before anything is written, streamed uploads
with a cap, the queue, Cancel (SIGINT) and Resume, and jobs that outlive a server restart."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from voicelab import testing
from voicelab.server import jobs
from voicelab.server.app import create_app
from voicelab.server.settings import Settings
from voicelab.server.studio_jobs import step_summary
from voicelab.server.voice_command import VoiceCommand
from voicelab.testing.server import LOCAL_URL, ServerThread, SlowSite, idle_backend, local_client

KEY = "jobs-key"
WAIT_S = 120.0  # a bound on waiting for a subprocess on a loaded machine; the test normally takes seconds
POLL_S = 0.2


def settings_for(root: Path, **overrides) -> Settings:
    values = {
        "voices_dir": root / "voices",
        "prepared_dir": root / "prepared",
        "raw_dir": root / "raw",
        "jobs_dir": root / "jobs",
        "base_model": "org/base",
        "studio_jobs": True,
        **overrides,
    }
    return Settings(**values)


SHARED_VOICE_COMMAND = VoiceCommand()
"""One for every app of this module: ``voicelab-voice --describe-options`` (a subprocess that imports every
step, seconds each) is asked once, as a server asks it once in its life."""


def client_for(root: Path, **overrides) -> TestClient:
    """The app without its lifespan: no runner, so jobs stay where the test puts them."""
    app = create_app(settings_for(root, **overrides), backend_factory=idle_backend)
    app.state.voice_command = SHARED_VOICE_COMMAND
    return local_client(app)


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> bytes:
    if not testing.espeak_available():
        pytest.skip("espeak-ng is not installed")
    path = tmp_path_factory.mktemp("wav") / "take.wav"
    testing.speak(["A short recording for the upload tests."], path)
    return path.read_bytes()


def job_folders(root: Path) -> list[str]:
    folder = root / "jobs"
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def new_job(client, name="alice", **body) -> dict:
    answer = client.post("/studio/api/jobs", json={"name": name, **body})
    assert answer.status_code == 201, answer.text
    return answer.json()


# --- on or off ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"studio_jobs": False}, "VOICELAB_STUDIO_JOBS=false"),
        ({"studio": False}, "VOICELAB_STUDIO=false"),
    ],
)
def test_one_setting_switches_jobs_off(tmp_path, overrides, reason):
    client = client_for(tmp_path, **overrides)
    info = client.get("/studio/info").json()
    assert info["jobs_enabled"] is False and reason in info["jobs_reason"]
    refused = client.post("/studio/api/jobs", json={"name": "alice"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "jobs_disabled"
    assert client.get("/studio/api/jobs").json() == {
        "enabled": False,
        "reason": info["jobs_reason"],
        "jobs": [],
    }
    assert job_folders(tmp_path) == []


@pytest.mark.parametrize(("value", "parsed"), [("", None), ("auto", None), ("true", True), ("false", False)])
def test_the_jobs_setting_is_auto_true_or_false(monkeypatch, value, parsed):
    from voicelab.server.settings import load_settings

    monkeypatch.setenv("VOICELAB_STUDIO_JOBS", value)
    assert load_settings(None).studio_jobs is parsed


def test_jobs_are_off_while_the_server_listens_beyond_localhost_unless_turned_on(tmp_path):
    def info(host: str, **overrides) -> dict:
        app = create_app(
            settings_for(tmp_path, **{"studio_jobs": None, **overrides}), backend_factory=idle_backend
        )
        with ServerThread(app, host=host) as server:
            return httpx.get(f"http://127.0.0.1:{server.port}/studio/info").json()

    assert info("127.0.0.1")["jobs_enabled"] is True
    exposed = info("0.0.0.0")
    assert exposed["jobs_enabled"] is False
    assert "reachable beyond this machine (0.0.0.0:" in exposed["jobs_reason"]
    assert "VOICELAB_STUDIO_JOBS=true" in exposed["jobs_reason"]
    assert info("0.0.0.0", studio_jobs=True)["jobs_enabled"] is True


def test_job_routes_need_the_api_key_when_keys_are_set(tmp_path, wav):
    client = client_for(tmp_path, api_keys=KEY)
    assert client.get("/studio/api/jobs").status_code == 401
    assert client.post("/studio/api/jobs", json={"name": "alice"}).status_code == 401
    assert client.put("/studio/api/uploads/0123456789ab/recordings/a.wav", content=wav).status_code == 401
    assert client.get("/studio/api/jobs/0123456789ab/events").status_code == 401
    auth = {"Authorization": f"Bearer {KEY}"}
    created = client.post("/studio/api/jobs", json={"name": "alice"}, headers=auth)
    assert created.status_code == 201
    assert client.get("/studio/api/jobs", headers=auth).json()["jobs"][0]["name"] == "alice"


def test_uploads_and_deletes_pass_the_one_guard(tmp_path, wav):
    """The streamed upload route keeps its own size cap, yet Host, same-site and the key apply to it (and to
    DELETE) as to every write: nothing is written for a request the guard refuses."""
    client = client_for(tmp_path, api_keys=KEY)
    auth = {"Authorization": f"Bearer {KEY}"}
    job = client.post("/studio/api/jobs", json={"name": "alice"}, headers=auth).json()
    put = f"/studio/api/uploads/{job['id']}/recordings/take.wav"
    other_site = {**auth, "Origin": "https://attacker.example", "Sec-Fetch-Site": "cross-site"}
    refused = client.put(put, content=wav, headers=other_site)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "cross_site_request"
    rebound = client.put(put, content=wav, headers={**auth, "Host": "rebind.attacker.example"})
    assert rebound.status_code == 400 and rebound.json()["error"]["code"] == "invalid_host"
    assert client.put(put, content=wav).status_code == 401
    assert client.delete(f"/studio/api/jobs/{job['id']}", headers=other_site).status_code == 403
    assert client.delete(f"/studio/api/jobs/{job['id']}").status_code == 401
    assert uploaded(tmp_path, job) == [] and job_folders(tmp_path) == [job["id"]]
    own_page = {**auth, "Origin": LOCAL_URL, "Sec-Fetch-Site": "same-origin"}
    assert client.put(put, content=wav, headers=own_page).status_code == 201
    assert client.delete(f"/studio/api/jobs/{job['id']}", headers=own_page).status_code == 204
    assert job_folders(tmp_path) == []


def test_state_changing_job_routes_take_only_json_or_put(tmp_path):
    """What a cross-site page can send without the browser asking the server first (a form POST) is refused."""
    client = client_for(tmp_path)
    job = new_job(client)
    form = {"headers": {"content-type": "application/x-www-form-urlencoded"}, "content": b"name=bob"}
    assert client.post("/studio/api/jobs", **form).status_code == 400
    for action in ("start", "cancel"):
        answer = client.post(f"/studio/api/jobs/{job['id']}/{action}", **form)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_content_type"
    assert client.get(f"/studio/api/jobs/{job['id']}").json()["status"] == jobs.UPLOADING


# --- a new job: checked before anything is written ---------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"name": "../x"}, 400, "invalid voice name '../x'"),
        ({"name": "taken"}, 409, "a voice named 'taken' exists"),
        ({"name": "alice", "urls": ["ftp://example.com/a.wav"]}, 400, "only http:// and https://"),
        ({"name": "alice", "settings": {"--no-such-flag": "1"}}, 400, "--no-such-flag: no such setting"),
        (
            {"name": "alice", "settings": {"--lora-rank": "0"}},
            400,
            "train-lora: --lora-rank 0: must be between",
        ),
        ({"name": "alice", "settings": {"--epochs": "many"}}, 400, "--epochs: expected"),
        ({"name": "alice", "settings": {"--no-quality": "yes"}}, 400, "--no-quality: true or false"),
    ],
)
def test_a_bad_new_job_is_refused_with_its_reason(tmp_path, body, status, message):
    (tmp_path / "voices" / "taken").mkdir(parents=True)
    answer = client_for(tmp_path).post("/studio/api/jobs", json=body)
    assert answer.status_code == status and message in answer.json()["error"]["message"], answer.text
    assert job_folders(tmp_path) == []


def test_a_name_in_use_by_a_dataset_recordings_or_another_job_is_refused(tmp_path):
    client = client_for(tmp_path)
    (tmp_path / "prepared" / "ds").mkdir(parents=True)
    (tmp_path / "raw" / "rec").mkdir(parents=True)
    new_job(client, "queued-one")
    for name, why in (
        ("ds", "a dataset named 'ds'"),
        ("rec", "recordings named 'rec'"),
        ("queued-one", "a job for"),
    ):
        answer = client.post("/studio/api/jobs", json={"name": name})
        assert answer.status_code == 409 and why in answer.json()["error"]["message"]


def test_a_new_job_starts_from_this_servers_base_model(tmp_path):
    job = new_job(client_for(tmp_path), settings={"--epochs": "2"})
    assert job["settings"]["--base-model"] == "org/base" and job["settings"]["--epochs"] == "2"
    assert job["status"] == jobs.UPLOADING and job["recordings"] == []


# --- uploads -------------------------------------------------------------------------------------------------
def upload(client, job, name, content, kind="recordings", **kwargs):
    return client.put(f"/studio/api/uploads/{job['id']}/{kind}/{name}", content=content, **kwargs)


def uploaded(root: Path, job: dict, kind: str = "recordings") -> list[str]:
    folder = root / "jobs" / job["id"] / kind
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_an_upload_is_stored_and_measured(tmp_path, wav):
    client = client_for(tmp_path)
    job = new_job(client)
    answer = upload(client, job, "take one.wav", wav)
    assert answer.status_code == 201
    assert answer.json() == {**answer.json(), "name": "take one.wav", "bytes": len(wav)}
    assert 1.0 < answer.json()["duration_s"] < 10.0
    assert uploaded(tmp_path, job) == ["take one.wav"]
    assert client.get(f"/studio/api/jobs/{job['id']}").json()["recordings"] == ["take one.wav"]


@pytest.mark.parametrize(
    ("name", "content", "status", "message"),
    [
        ("notes.txt", b"hello", 400, "notes.txt: not an audio file name"),
        (".hidden.wav", b"x", 400, "not a plain file name"),
        ("page.wav", b"<html>a page</html>", 400, "page.wav is not audio this server can read"),
    ],
)
def test_an_upload_that_is_not_audio_is_refused_and_not_kept(tmp_path, name, content, status, message):
    client = client_for(tmp_path)
    job = new_job(client)
    answer = upload(client, job, name, content)
    assert answer.status_code == status and message in answer.json()["error"]["message"]
    assert uploaded(tmp_path, job) == []


def test_an_upload_over_the_cap_is_refused_whole_or_streamed(tmp_path, wav):
    cap = len(wav) // 2
    client = client_for(tmp_path, max_upload_bytes=cap)
    job = new_job(client)
    declared = upload(client, job, "big.wav", wav)
    assert declared.status_code == 413 and "upload limit" in declared.json()["error"]["message"]

    def chunks():  # no Content-Length: the cap is found while streaming
        for start in range(0, len(wav), 4096):
            yield wav[start : start + 4096]

    streamed = upload(client, job, "big.wav", chunks())
    assert streamed.status_code == 413 and "VOICELAB_MAX_UPLOAD_BYTES" in streamed.json()["error"]["message"]
    assert uploaded(tmp_path, job) == [], "no part file is left"


def test_start_checks_the_reference_clip_against_the_settings(tmp_path, wav):
    client = client_for(tmp_path)
    job = new_job(client, settings={"--no-quality": True})
    upload(client, job, "take.wav", wav)
    upload(client, job, "ref.wav", wav, kind="reference")
    refused = client.post(f"/studio/api/jobs/{job['id']}/start", json={})
    assert refused.status_code == 400
    assert (
        "transcribe: --reference and --exclude-flagged need the audio measures"
        in refused.json()["error"]["message"]
    )
    assert client.get(f"/studio/api/jobs/{job['id']}").json()["status"] == jobs.UPLOADING


def test_a_second_reference_clip_replaces_the_first_and_uploads_end_at_start(tmp_path, wav):
    client = client_for(tmp_path)
    job = new_job(client)
    assert upload(client, job, "one.wav", wav, kind="reference").status_code == 201
    assert upload(client, job, "two.wav", wav, kind="reference").status_code == 201
    assert uploaded(tmp_path, job, "reference") == ["two.wav"]
    assert upload(client, job, "x.wav", wav, kind="elsewhere").status_code == 400
    assert upload(client, job, "take.wav", wav).status_code == 201
    assert client.post(f"/studio/api/jobs/{job['id']}/start", json={}).json()["status"] == jobs.QUEUED
    late = upload(client, job, "late.wav", wav)
    assert late.status_code == 409 and "recordings are added before Start" in late.json()["error"]["message"]
    command = client.app.state.jobs.command(client.app.state.jobs.get(job["id"]))
    assert command[command.index("--reference") + 1].endswith("/reference/two.wav")


# --- the queue, cancel, resume, delete (no runner: the test moves the jobs) ---------------------------------
def test_queue_cancel_resume_and_delete(tmp_path, wav):
    client = client_for(tmp_path)
    store: jobs.JobStore = client.app.state.jobs
    empty = new_job(client, "empty")
    refused = client.post(f"/studio/api/jobs/{empty['id']}/start", json={})
    assert refused.status_code == 400 and "add recordings" in refused.json()["error"]["message"]

    first, second = new_job(client, "first"), new_job(client, "second", urls=["https://example.com/talk"])
    upload(client, first, "take.wav", wav)
    assert client.post(f"/studio/api/jobs/{first['id']}/start", json={}).json()["queue_position"] == 1
    store.change(first["id"], lambda j: setattr(j, "status", jobs.RUNNING))
    waiting = client.post(f"/studio/api/jobs/{second['id']}/start", json={}).json()
    assert (waiting["status"], waiting["queue_position"], waiting["waits_for"]) == (jobs.QUEUED, 1, "first")

    cancelled = client.post(f"/studio/api/jobs/{second['id']}/cancel", json={}).json()
    assert cancelled["status"] == jobs.CANCELLED and "Resume" in cancelled["message"]
    assert client.post(f"/studio/api/jobs/{second['id']}/start", json={}).json()["status"] == jobs.QUEUED

    busy = client.delete(f"/studio/api/jobs/{first['id']}")
    assert busy.status_code == 409 and "cancel it first" in busy.json()["error"]["message"]
    draft = client.post(f"/studio/api/jobs/{empty['id']}/cancel", json={}).json()
    assert draft["deleted"] is True and empty["id"] not in job_folders(tmp_path)
    client.post(f"/studio/api/jobs/{second['id']}/cancel", json={})
    assert client.delete(f"/studio/api/jobs/{second['id']}").status_code == 204
    assert job_folders(tmp_path) == [first["id"]]
    assert client.get(f"/studio/api/jobs/{second['id']}").status_code == 404
    assert client.get("/studio/api/jobs/../../etc").status_code == 404


@pytest.mark.parametrize(
    ("before", "code", "end", "after"),
    [
        (jobs.RUNNING, 0, {"status": "done"}, (jobs.DONE, "the voice is ready")),
        (jobs.RUNNING, 1, {"status": "done"}, (jobs.DONE, "some recordings or clips could not be used")),
        (jobs.RUNNING, 0, {"status": "review"}, (jobs.PAUSED, "stopped for review")),
        (jobs.RUNNING, 2, {"status": "failed"}, (jobs.FAILED, "")),
        (jobs.CANCELLING, 130, {"status": "interrupted"}, (jobs.CANCELLED, "cancelled")),
        (jobs.RUNNING, 130, {"status": "interrupted"}, (jobs.INTERRUPTED, "interrupted")),
        (jobs.RUNNING, None, {"status": "done", "exit_code": 0}, (jobs.DONE, "the voice is ready")),
        (jobs.RUNNING, None, None, (jobs.INTERRUPTED, "ended without a word")),
    ],
)
def test_how_a_run_ended_sets_the_jobs_status(before, code, end, after):
    """``code`` None: the process was started by an earlier server; its last event tells."""
    job = jobs.Job("0123456789ab", "alice", before, "now")
    events = [{"event": "end", **end}] if end else []
    status, message, _ = jobs._outcome(job, code, events)
    assert status == after[0] and after[1] in message


def test_step_summary_keeps_what_an_earlier_run_did():
    events = [
        {"event": "plan", "steps": ["fetch", "train-lora", "evaluate"]},
        {"event": "step", "step": "fetch", "status": "started"},
        {"event": "step", "step": "fetch", "status": "done", "message": "2 recording(s) added"},
        {"event": "step", "step": "train-lora", "status": "started"},
        {
            "event": "progress",
            "step": "train-lora",
            "phase": "training",
            "done": 3,
            "total": 10,
            "unit": "step",
        },
        {"event": "end", "status": "interrupted"},
        {"event": "plan", "steps": ["fetch", "train-lora", "evaluate"]},
        {"event": "step", "step": "fetch", "status": "started"},
        {"event": "step", "step": "fetch", "status": "skipped", "message": "already there"},
        {"event": "step", "step": "train-lora", "status": "started"},
    ]
    steps = {s["step"]: s for s in step_summary(events)}
    assert steps["fetch"]["status"] == "done" and steps["fetch"]["note"] == "2 recording(s) added"
    assert steps["train-lora"]["status"] == "running" and steps["train-lora"]["progress"] is None
    assert steps["evaluate"]["status"] == "waiting"
    steps = {s["step"]: s for s in step_summary(events[:6])}
    assert steps["train-lora"]["status"] == "interrupted" and steps["train-lora"]["progress"]["done"] == 3


# --- real runs: a job that waits on a slow download ------------------------------------------------------------
def wait_for(what, check, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(POLL_S)
    raise AssertionError(f"waited {timeout} s for {what}")


def events_of(root: Path, job_id: str) -> list[dict]:
    path = root / "jobs" / job_id / jobs.EVENTS_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_cancel_resume_and_a_server_restart_with_a_real_run(tmp_path, wav):
    site = SlowSite()
    settings = settings_for(tmp_path)
    try:
        with ServerThread(create_app(settings, backend_factory=idle_backend)) as server:
            api = httpx.Client(base_url=server.url, timeout=30)
            job = api.post("/studio/api/jobs", json={"name": "slow", "urls": [site.url]}).json()
            api.post(f"/studio/api/jobs/{job['id']}/start", json={})
            wait_for(
                "the fetch to start",
                lambda: any(e.get("step") == "fetch" for e in events_of(tmp_path, job["id"])),
            )
            running = api.get(f"/studio/api/jobs/{job['id']}").json()
            assert running["status"] == jobs.RUNNING
            pid = (
                jobs.JobStore(settings.jobs_dir, raw_dir=tmp_path, prepared_dir=tmp_path, voices_dir=tmp_path)
                .get(job["id"])
                .pid
            )

            other = api.post("/studio/api/jobs", json={"name": "next"}).json()
            api.put(f"/studio/api/uploads/{other['id']}/recordings/take.wav", content=wav)
            queued = api.post(f"/studio/api/jobs/{other['id']}/start", json={}).json()
            assert (queued["queue_position"], queued["waits_for"]) == (1, "slow")
            api.post(f"/studio/api/jobs/{other['id']}/cancel", json={})

        os.kill(pid, 0)  # the server stopped; its job did not
        with ServerThread(create_app(settings, backend_factory=idle_backend)) as server:
            api = httpx.Client(base_url=server.url, timeout=30)
            assert api.get(f"/studio/api/jobs/{job['id']}").json()["status"] == jobs.RUNNING
            cancelling = api.post(f"/studio/api/jobs/{job['id']}/cancel", json={}).json()
            assert cancelling["status"] == jobs.CANCELLING
            done = wait_for("the cancel", lambda: _finished(api, job["id"]))
            assert done["status"] == jobs.CANCELLED and done["exit_code"] == 130
            assert any("interrupted" in line for line in done["log"])

            assert api.post(f"/studio/api/jobs/{job['id']}/start", json={}).json()["status"] == jobs.QUEUED
            wait_for("the resumed run", lambda: api.get(f"/studio/api/jobs/{job['id']}").json()["runs"] == 2)
            site.release.set()  # now the address answers: 404
            failed = wait_for("the failure", lambda: _finished(api, job["id"]))
            assert failed["status"] == jobs.FAILED
            assert (
                failed["message"].startswith(f"could not download {site.url}: ")
                and "404" in failed["message"]
            )
            steps = {s["step"]: s["status"] for s in failed["steps"]}
            assert steps["fetch"] == "failed" and steps["prepare-audio"] == "waiting"
    finally:
        site.close()
    assert not (tmp_path / "raw" / "slow").exists(), "the failed download left nothing"


def _finished(api, job_id):
    view = api.get(f"/studio/api/jobs/{job_id}").json()
    return view if view["status"] not in jobs.ACTIVE else None


def test_events_stream_the_job_and_its_progress(tmp_path):
    settings = settings_for(tmp_path)
    with ServerThread(create_app(settings, backend_factory=idle_backend)) as server:
        api = httpx.Client(base_url=server.url, timeout=30)
        job = api.post("/studio/api/jobs", json={"name": "streamed"}).json()
        folder = tmp_path / "jobs" / job["id"]
        (folder / jobs.EVENTS_FILE).write_text(
            json.dumps({"event": "progress", "step": "transcribe", "done": 1, "total": 4, "unit": "min"})
            + "\n"
        )
        (folder / jobs.LOG_FILE).write_text("INFO: hello\n")

        def stream(query: str = "") -> list[tuple[str, dict]]:
            """Every event of one stream (it ends by itself: the job is not running)."""
            seen, kind = [], None
            with api.stream("GET", f"/studio/api/jobs/{job['id']}/events{query}") as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        seen.append((kind, json.loads(line[6:])))
            return seen

        first = stream()
        assert [kind for kind, _ in first] == ["job", "progress", "log", "cursor"]
        assert first[2][1] == {"lines": ["INFO: hello"]}
        cursor = first[3][1]
        assert cursor == {"events_from": (folder / jobs.EVENTS_FILE).stat().st_size, "log_from": 12}
        again = stream(f"?events_from={cursor['events_from']}&log_from={cursor['log_from']}")
        assert [kind for kind, _ in again] == ["job"], "a reconnect goes on from its cursor"


def test_a_jobs_files_are_read_only_inside_its_folder(tmp_path, wav):
    """A log or record that is a symlink out of the job's folder is never shown or streamed."""
    client = client_for(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("outside line\n")
    job = new_job(client)
    folder = tmp_path / "jobs" / job["id"]
    (folder / jobs.LOG_FILE).symlink_to(secret)
    (folder / jobs.EVENTS_FILE).symlink_to(secret)
    (folder / jobs.RECORDINGS_DIR).mkdir()
    (folder / jobs.RECORDINGS_DIR / "take.wav").symlink_to(secret)
    shown = client.get(f"/studio/api/jobs/{job['id']}")
    assert shown.status_code == 200 and "outside line" not in shown.text
    assert shown.json()["recordings"] == [] and shown.json()["log"] == []
    with client.stream("GET", f"/studio/api/jobs/{job['id']}/events") as stream:
        text = "".join(stream.iter_text())
    assert "event: gone" in text and "outside line" not in text

    (folder / jobs.JOB_FILE).unlink()
    (folder / jobs.JOB_FILE).symlink_to(secret)
    refused = client.get(f"/studio/api/jobs/{job['id']}")
    assert refused.status_code == 400 and "not a file of the job's own folder" in refused.text
    assert client.get("/studio/api/jobs").json()["jobs"] == []


def test_a_jobs_answers_name_no_server_path(tmp_path, wav):
    """A run's log, step notes and failure name the folders it was given; the page sees them by their short
    names (prepared/alice, jobs/ID/recordings), never the server's absolute paths."""
    client = client_for(tmp_path)
    (tmp_path / "prepared" / "ds").mkdir(parents=True)
    taken = client.post("/studio/api/jobs", json={"name": "ds"})
    assert taken.status_code == 409 and "(prepared/ds)" in taken.json()["error"]["message"]
    job = new_job(client)
    folder = tmp_path / "jobs" / job["id"]
    prepared, voice = tmp_path / "prepared" / "alice", (tmp_path / "voices" / "alice").resolve()
    (folder / jobs.LOG_FILE).write_text(
        f"$ voicelab-voice alice {folder / jobs.RECORDINGS_DIR} --prepared-dir {tmp_path / 'prepared'}\n"
        f"error: {voice}/adapter_model.safetensors: disk full\n"
    )
    events = [
        {"event": "step", "step": "prepare-audio", "status": "done", "message": f"12 clips in {prepared}"},
        {"event": "progress", "step": "transcribe", "done": 1, "total": 2, "message": f"{prepared}/c.wav"},
    ]
    (folder / jobs.EVENTS_FILE).write_text("".join(json.dumps(e) + "\n" for e in events))
    store = jobs.JobStore(
        tmp_path / "jobs", raw_dir=tmp_path / "raw", prepared_dir=prepared.parent, voices_dir=voice.parent
    )
    store.change(job["id"], lambda j: setattr(j, "message", f"failed: {voice} is full"))
    view = client.get(f"/studio/api/jobs/{job['id']}")
    with client.stream("GET", f"/studio/api/jobs/{job['id']}/events") as stream:
        streamed = "".join(stream.iter_text())
    for text in (view.text, streamed, client.get("/studio/api/jobs").text):
        assert str(tmp_path) not in text and str(tmp_path.resolve()) not in text, text
    shown = view.json()
    assert shown["log"][0] == f"$ voicelab-voice alice jobs/{job['id']}/recordings --prepared-dir prepared"
    assert shown["log"][1] == "error: voices/alice/adapter_model.safetensors: disk full"
    assert shown["message"] == "failed: voices/alice is full"
    notes = {step["step"]: step["note"] for step in shown["steps"]}
    assert notes["prepare-audio"] == "12 clips in prepared/alice"
    assert "prepared/alice/c.wav" in streamed and f"jobs/{job['id']}/recordings" in streamed
