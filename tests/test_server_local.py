"""The default set-up a newcomer gets: the embedded local engine, a real (tiny) LoRA voice, the OpenAI SDK.

The tiny random model never chooses end-of-speech on its own, so requests set ``max_tokens`` (through
the SDK's ``extra_body``): the server then returns the frames generated within that budget.
"""

from __future__ import annotations

import io
import struct

import openai
import pytest
import soundfile as sf

from voicelab import orpheus
from voicelab.server.app import create_app
from voicelab.server.encoding import WAV_UNKNOWN_SIZE
from voicelab.server.settings import Settings
from voicelab.testing.server import ServerThread
from voicelab.testing.voices import build_tiny_voice

MAX_FRAMES = 6
BUDGET = {"max_tokens": MAX_FRAMES * orpheus.CODES_PER_FRAME + 1, "seed": 0}


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_orpheus_dir, tiny_snac_dir):
    voices = tmp_path_factory.mktemp("local_voices")
    build_tiny_voice(voices, "tiny", tiny_orpheus_dir)
    settings = Settings(voices_dir=voices, base_model=str(tiny_orpheus_dir), snac_model=str(tiny_snac_dir))
    assert settings.engine_kind == "local"  # no VOICELAB_VLLM_URL: the embedded engine
    with ServerThread(create_app(settings)) as running:
        yield running


def test_sdk_create_returns_a_valid_wav_of_whole_frames(client):
    audio = client.audio.speech.create(
        model="orpheus",
        voice="tiny",
        input="Hello from the tiny voice.",
        response_format="wav",
        extra_body=BUDGET,
    )
    data = audio.read()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert struct.unpack("<I", data[40:44])[0] == WAV_UNKNOWN_SIZE  # streamed: length unknown up front
    samples, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == orpheus.SAMPLE_RATE
    # Every generated frame arrives, the first and the last included: 6 frames x 2048 samples.
    assert len(samples) == MAX_FRAMES * orpheus.SAMPLES_PER_FRAME


def test_sdk_streaming_response_matches_whole_frames(client):
    with client.audio.speech.with_streaming_response.create(
        model="orpheus", voice="tiny", input="Streamed.", response_format="pcm", extra_body=BUDGET
    ) as response:
        assert response.status_code == 200
        pcm = b"".join(response.iter_bytes())
    assert len(pcm) == MAX_FRAMES * orpheus.SAMPLES_PER_FRAME * 2


def test_sdk_sees_openai_errors(client):
    with pytest.raises(openai.NotFoundError, match="tiny"):
        client.audio.speech.create(model="orpheus", voice="ghost", input="Hi.", response_format="wav")
    with pytest.raises(openai.BadRequestError, match="input"):
        client.audio.speech.create(model="orpheus", voice="tiny", input="", response_format="wav")
    models = client.models.list()
    assert [m.id for m in models.data] == ["orpheus", "tiny"]


def test_flac_through_the_sdk(client):
    audio = client.audio.speech.create(
        model="orpheus", voice="tiny", input="Lossless.", response_format="flac", extra_body=BUDGET
    )
    samples, rate = sf.read(io.BytesIO(audio.read()))
    assert rate == orpheus.SAMPLE_RATE and len(samples) == MAX_FRAMES * orpheus.SAMPLES_PER_FRAME


@pytest.mark.parametrize(
    "extreme",
    [
        {"temperature": 1e-5},
        {"top_p": 1e-5},
        {"seed": 2**63 - 1},
        {"seed": -(2**63)},
    ],
)
def test_the_embedded_engine_runs_every_value_validation_accepts(client, extreme):
    audio = client.audio.speech.create(
        model="orpheus", voice="tiny", input="Edge.", response_format="pcm", extra_body={**BUDGET, **extreme}
    )
    assert len(audio.read()) == MAX_FRAMES * orpheus.SAMPLES_PER_FRAME * 2


@pytest.mark.parametrize("extreme", [{"temperature": 1e-40}, {"top_p": 1e-100}, {"seed": 2**63}])
def test_values_the_embedded_engine_cannot_run_are_400_not_502(client, extreme):
    with pytest.raises(openai.BadRequestError):
        client.audio.speech.create(
            model="orpheus",
            voice="tiny",
            input="Edge.",
            response_format="pcm",
            extra_body={**BUDGET, **extreme},
        )


def test_a_lone_surrogate_is_400_on_the_embedded_engine(server):
    import httpx

    body = '{"voice": "tiny", "input": "Hi \\ud800 there", "response_format": "wav"}'
    response = httpx.post(
        f"{server.url}/v1/audio/speech", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_text"
