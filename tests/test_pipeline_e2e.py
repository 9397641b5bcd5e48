"""The user guide end to end, through the make targets, on espeak-ng speech and tiny random models:

    make prepare-audio -> make transcribe -> make train-lora -> make dev (local engine) -> OpenAI SDK -> WAV

Slow (``make test-all`` runs it; its time is in docs/benchmarks.md): each step has its own fast test, the
serving one in tests/test_server_local.py.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess

import openai
import pytest
import soundfile as sf

from conftest import REPO
from voicelab import orpheus, testing
from voicelab.testing import texts
from voicelab.testing.server import free_port, wait_until_healthy

CHARACTER = "narrator"
MAX_FRAMES = 8


def make(target: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["make", target, f"ARGS={subprocess.list2cmdline(args)}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"make {target} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_recordings_to_served_voice_through_make_targets(
    tmp_path, speech_dir, tiny_orpheus_dir, tiny_snac_dir, tiny_whisper_path
):
    raw = tmp_path / "raw_audio" / CHARACTER
    prepared = tmp_path / "prepared" / CHARACTER
    voices = tmp_path / "voices"
    testing.speak(texts.TAKE, raw / "take1.wav")

    make("prepare-audio", [str(raw), str(prepared)])
    clips = sorted(prepared.glob("*.wav"))
    assert len(clips) >= 3

    whisper_fast = ["--beam-size", "1", "--temperature-increment-on-fallback", "0", "--no-progress"]
    make("transcribe", [str(prepared), "--model", str(tiny_whisper_path), "--device", "cpu", *whisper_fast])
    assert (prepared / "transcript.csv").is_file()

    tiny = ["--base-model", str(tiny_orpheus_dir), "--snac-model", str(tiny_snac_dir), "--device", "cpu"]
    short = ["--max-steps", "2", "--lora-rank", "8", "--lora-alpha", "16", "--batch-size", "1"]
    make(
        "train-lora",
        [
            CHARACTER,
            str(prepared),
            "--voices-dir",
            str(voices),
            *tiny,
            *short,
            "--snac-batch-size",
            "4",
            "--no-progress",
        ],
    )
    assert (voices / CHARACTER / "adapter_config.json").is_file()

    port = free_port()
    env = {
        **os.environ,
        "VOICELAB_VOICES_DIR": str(voices),
        "VOICELAB_BASE_MODEL": str(tiny_orpheus_dir),
        "VOICELAB_SNAC_MODEL": str(tiny_snac_dir),
        "VOICELAB_ENGINE": "local",
    }
    server = subprocess.Popen(
        ["make", "dev", f"PORT={port}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # uvicorn --reload runs a reloader and a worker: stop the whole group
    )
    url = f"http://127.0.0.1:{port}"
    try:
        health = wait_until_healthy(url, server)
        assert health["voices"] == 1 and health["engine"] == "local"
        with openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0) as client:
            audio = client.audio.speech.create(
                model="orpheus",
                voice=CHARACTER,
                input="Hello from the pipeline.",
                response_format="wav",
                extra_body={"max_tokens": MAX_FRAMES * orpheus.CODES_PER_FRAME + 1, "seed": 0},
            )
            out = tmp_path / "hello.wav"
            audio.write_to_file(out)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait()

    data = out.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    samples, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == orpheus.SAMPLE_RATE
    assert 0 < len(samples) <= MAX_FRAMES * orpheus.SAMPLES_PER_FRAME
    assert len(samples) % orpheus.SAMPLES_PER_FRAME == 0  # whole SNAC frames, none dropped or doubled
