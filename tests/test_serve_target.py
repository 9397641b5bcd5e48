"""`make serve`: the production API (no reloader, several workers, access log) configured by one .env file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import pytest

from conftest import REPO
from voicelab.testing.fake_vllm import FakeVLLMServer
from voicelab.testing.server import free_port, wait_until_healthy
from voicelab.testing.voices import build_tiny_voice

WORKERS = 2


def test_make_serve_runs_workers_from_a_dotenv_file(tmp_path, tiny_orpheus_dir, tiny_snac_dir):
    voices = tmp_path / "voices"
    voice = build_tiny_voice(voices, "alice", tiny_orpheus_dir)
    deployment = tmp_path / "deployment"
    deployment.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICELAB_")}  # the file alone configures
    with FakeVLLMServer(base_model=str(tiny_orpheus_dir), adapters={"alice": str(voice)}) as vllm:
        (deployment / ".env").write_text(
            f"VOICELAB_VLLM_URL={vllm.url}\nVOICELAB_BASE_MODEL={tiny_orpheus_dir}\n"
            f"VOICELAB_SNAC_MODEL={tiny_snac_dir}\nVOICELAB_VOICES_DIR={voices}\n"
        )
        command = ["make", "-f", str(REPO / "Makefile"), f"VENV={REPO / '.venv'}", "serve"]
        server = subprocess.Popen(
            [*command, f"PORT={port}", f"WORKERS={WORKERS}"],
            cwd=deployment,  # where .env is read from (the repository root when run by hand)
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # uvicorn's supervisor and its workers: stop the whole group
        )
        url = f"http://127.0.0.1:{port}"
        try:
            health = wait_until_healthy(url, server)
            speech = httpx.post(
                f"{url}/v1/audio/speech",
                json={"model": "orpheus", "voice": "alice", "input": "Hi there.", "response_format": "wav"},
                timeout=None,
            )
        finally:
            os.killpg(server.pid, signal.SIGINT)
            log = server.communicate()[0]
    assert health["engine"] == "vllm" and health["voices"] == 1  # /health gives counts; names need the key
    assert speech.status_code == 200 and speech.content[:4] == b"RIFF"
    assert log.count("Started server process") == WORKERS, log[-3000:]
    assert '"POST /v1/audio/speech HTTP/1.1" 200' in log  # the access log
    assert "Will watch for changes" not in log  # no reloader (make dev has one)


def test_an_unusable_base_model_is_one_line_from_make_dev_serve_vllm_and_train_lora(tmp_path, capsys):
    """The same mistake, the same one line, from every step that loads the base model; the make targets
    end at once (no reload watcher left running, no hub requests for a path)."""
    from voicelab import models
    from voicelab.cli import serve_vllm, train_lora
    from voicelab.testing.datasets import write_reviewed_dataset

    missing = tmp_path / "models" / "orpheus"
    with pytest.raises(models.ModelLoadError) as expected:
        models.check_base_model_source(missing)
    line = f"error: {expected.value}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICELAB_", "HF_HUB_OFFLINE"))}
    env["VOICELAB_BASE_MODEL"] = str(missing)
    for target in ("dev", "serve"):
        command = ["make", "-s", "-f", str(REPO / "Makefile"), f"VENV={REPO / '.venv'}", target]
        done = subprocess.run(
            [*command, f"PORT={free_port()}"], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 2, done.stdout + done.stderr
        ours = [text for text in done.stderr.splitlines() if not text.startswith("make")]
        assert ours == [line], done.stderr
        assert "uvicorn" not in done.stdout + done.stderr  # stopped before the server (and its watcher)

    # a hub id on a machine without network (the hub's name does not resolve): the same, at once
    no_network = {
        **env,
        "VOICELAB_BASE_MODEL": "voicelab-tests/not-a-model",
        "HF_ENDPOINT": "https://hub.invalid",
    }
    no_network.update({"HF_HOME": str(tmp_path / "hf"), "HTTPS_PROXY": "", "https_proxy": ""})
    command = ["make", "-s", "-f", str(REPO / "Makefile"), f"VENV={REPO / '.venv'}", "dev"]
    done = subprocess.run(
        [*command, f"PORT={free_port()}"], cwd=tmp_path, env=no_network, capture_output=True, text=True
    )
    assert done.returncode == 2 and "cannot be reached: no network?" in done.stderr, done.stderr
    assert len([t for t in done.stderr.splitlines() if not t.startswith("make")]) == 1

    capsys.readouterr()
    installed = ["--vllm", sys.executable]  # any executable: the base model is refused before it runs
    voices = ["--voices-dir", str(tmp_path / "voices")]
    assert serve_vllm.main(["--base-model", str(missing), *voices, *installed]) == 2
    assert capsys.readouterr().err.splitlines() == [line]
    data = write_reviewed_dataset(tmp_path / "prepared" / "bob", {"bob_000": "Hello there."}, [3.0])
    argv = ["bob", str(data), "--base-model", str(missing), "--voices-dir", str(tmp_path / "voices")]
    assert train_lora.main([*argv, "--device", "cpu"]) == 2
    assert capsys.readouterr().err.splitlines() == [line]


def test_logging_set_up_prints_a_hub_warning_once():
    code = (
        "import logging, huggingface_hub\n"
        "from voicelab.cli.common import setup_logging\n"
        "setup_logging()\n"
        "logging.getLogger('huggingface_hub.utils._http').warning('Retrying in 1s')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stderr.count("Retrying in 1s") == 1, done.stderr
