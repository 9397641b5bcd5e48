"""`make serve`: the production API (no reloader, several workers, access log) configured by one .env file."""

from __future__ import annotations

import os
import signal
import subprocess

import httpx

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
