"""The HTTP API with a scripted in-test synthesizer: formats, errors, auth, limits, reload, metrics.

The synthesizer here is a stand-in for the engine stack so each HTTP behaviour can be provoked on
demand (its text picks a scripted fault); the real engines are exercised in test_server_local.py and
test_server_vllm.py.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import shutil
import struct
import threading

import httpx
import numpy as np
import pytest
import soundfile as sf

from voicelab import orpheus
from voicelab.engine.base import (
    EngineRequestError,
    EngineUnavailableError,
    IncompleteGenerationError,
    UnknownVoiceError,
)
from voicelab.server.app import create_app
from voicelab.server.backend import Backend
from voicelab.server.encoding import WAV_UNKNOWN_SIZE, aac_available
from voicelab.server.settings import Settings
from voicelab.testing.server import ServerThread, local_client
from voicelab.testing.voices import write_voice_folder

BASE = "org/orpheus-base"
FRAMES_PER_CHUNK = 2
N_CHUNKS = 3
N_FRAMES = FRAMES_PER_CHUNK * N_CHUNKS
N_SAMPLES = N_FRAMES * orpheus.SAMPLES_PER_FRAME
TONE_HZ = 440.0
KEY = "test-key-123"


def tone(n: int, start: int = 0) -> np.ndarray:
    t = (np.arange(n) + start) / orpheus.SAMPLE_RATE
    return (0.5 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)


class FakeEngine:
    def __init__(self):
        self.healthy = True
        self.loaded: list[str] = []
        self.unloaded: list[str] = []

    async def health(self) -> bool:
        return self.healthy

    async def load_voice(self, voice) -> None:
        self.loaded.append(voice.name)

    async def unload_voice(self, name: str) -> None:
        self.unloaded.append(name)

    async def aclose(self) -> None:
        pass


class ScriptedSynthesizer:
    """Speaks N_FRAMES of a 440 Hz tone; a bracketed word in the text scripts a fault instead."""

    def __init__(self):
        self.calls = []
        self.finished = 0
        self.cancelled = threading.Event()
        self.unknown_once_seen = False

    async def stream(self, voice, text, params=None, *, usage=None):
        self.calls.append((voice, text, params))
        try:
            if "[unavailable]" in text:
                raise EngineUnavailableError("cannot reach vLLM at http://127.0.0.1:1")
            if "[engine400]" in text:
                raise EngineRequestError("prompt is longer than the context", status_code=400)
            if "[engine500]" in text:
                raise EngineRequestError("CUDA out of memory", status_code=500)
            if "[contract]" in text:
                raise orpheus.InvalidAudioTokenError("token id 9906 is not an audio token")
            if "[unknown-always]" in text:
                raise UnknownVoiceError(f"vLLM has no adapter named {voice.name!r}")
            if "[unknown-once]" in text and not self.unknown_once_seen:
                self.unknown_once_seen = True
                raise UnknownVoiceError(f"vLLM has no adapter named {voice.name!r}")
            if "[silent]" in text:
                return
            endless = "[endless]" in text
            i = 0
            while endless or i < N_CHUNKS:
                await asyncio.sleep(0.01 if endless else 0)
                if usage is not None:
                    usage.prompt_tokens = len(text)
                    usage.generated_tokens += FRAMES_PER_CHUNK * orpheus.CODES_PER_FRAME
                n = FRAMES_PER_CHUNK * orpheus.SAMPLES_PER_FRAME
                yield tone(n, i * n)
                i += 1
                if "[midstream]" in text:
                    raise IncompleteGenerationError("the stream ended without end of speech")
                if "[max-tokens]" in text:
                    raise IncompleteGenerationError("hit max_tokens", reason=IncompleteGenerationError.LENGTH)
            self.finished += 1
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled.set()
            raise


@pytest.fixture(scope="module")
def voices_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("voices")
    write_voice_folder(root, "alice", base_model=BASE, prompt_prefix="Alice: ")
    write_voice_folder(root, "bob", base_model=BASE)
    write_voice_folder(root, "dora_voice", base_model=BASE, use_dora=True)
    return root


def make_app(voices_dir, **settings):
    engine, synth = FakeEngine(), ScriptedSynthesizer()

    async def factory(_settings):
        return Backend(kind="fake", engine=engine, synthesizer=synth)

    app = create_app(Settings(voices_dir=voices_dir, base_model=BASE, **settings), backend_factory=factory)
    return app, engine, synth


@pytest.fixture(scope="module")
def api(voices_dir):
    app, engine, synth = make_app(voices_dir, max_concurrent_requests=4)
    with local_client(app) as client:
        client.engine, client.synth = engine, synth
        yield client


def speak(client, **body):
    payload = {
        "model": "orpheus",
        "voice": "alice",
        "input": "Hello there.",
        "response_format": "wav",
        **body,
    }
    return client.post("/v1/audio/speech", json=payload)


def assert_openai_error(response, status: int, code: str | None = None, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    return error


def parse_wav(data: bytes) -> tuple[dict, bytes]:
    assert data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt "
    fmt_tag, channels, rate, _byte_rate, _align, bits = struct.unpack("<HHIIHH", data[20:36])
    assert data[36:40] == b"data"
    (data_size,) = struct.unpack("<I", data[40:44])
    return {
        "format": fmt_tag,
        "channels": channels,
        "rate": rate,
        "bits": bits,
        "data_size": data_size,
    }, data[44:]


# --- audio formats ---------------------------------------------------------------------------------
def test_wav_streams_with_a_valid_header_and_every_frame(api):
    response = speak(api)
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/wav"
    header, pcm = parse_wav(response.content)
    assert header == {"format": 1, "channels": 1, "rate": 24000, "bits": 16, "data_size": WAV_UNKNOWN_SIZE}
    assert len(pcm) == N_SAMPLES * 2
    audio, rate = sf.read(io.BytesIO(response.content), dtype="float32")
    assert rate == 24000 and len(audio) == N_SAMPLES
    np.testing.assert_allclose(audio, tone(N_SAMPLES), atol=1e-3)


def test_voice_prompt_prefix_and_sampling_fields_reach_the_synthesizer(api):
    response = speak(
        api, input="Sampling.", temperature=0.3, top_p=0.8, repetition_penalty=1.3, max_tokens=500
    )
    assert response.status_code == 200
    voice, text, params = api.synth.calls[-1]
    assert voice.name == "alice" and voice.prompt_prefix == "Alice: " and text == "Sampling."
    assert (params.temperature, params.top_p, params.repetition_penalty, params.max_tokens) == (
        0.3,
        0.8,
        1.3,
        500,
    )
    speak(api, input="Defaults.")
    params = api.synth.calls[-1][2]
    assert (params.temperature, params.repetition_penalty, params.max_tokens) == (0.6, 1.1, None)


def test_pcm_is_raw_16_bit_little_endian(api):
    response = speak(api, response_format="pcm")
    assert response.status_code == 200 and response.headers["content-type"] == "audio/pcm"
    samples = np.frombuffer(response.content, dtype="<i2")
    assert len(samples) == N_SAMPLES
    np.testing.assert_allclose(samples / 32767, tone(N_SAMPLES), atol=1e-3)


@pytest.mark.parametrize(
    ("fmt", "media", "magic"), [("flac", "audio/flac", b"fLaC"), ("opus", "audio/ogg", b"OggS")]
)
def test_compressed_formats_decode_back_to_the_same_length(api, fmt, media, magic):
    response = speak(api, response_format=fmt)
    assert response.status_code == 200 and response.headers["content-type"] == media
    assert response.content[:4] == magic
    audio, rate = sf.read(io.BytesIO(response.content), dtype="float32")
    assert rate == 24000 and len(audio) == N_SAMPLES


def test_mp3_is_the_openai_default_and_decodes(api):
    response = api.post(
        "/v1/audio/speech", json={"model": "tts-1", "voice": "bob", "input": "Default format."}
    )
    assert response.status_code == 200 and response.headers["content-type"] == "audio/mpeg"
    audio, rate = sf.read(io.BytesIO(response.content), dtype="float32")
    assert rate == 24000
    assert abs(len(audio) - N_SAMPLES) < 2 * 1152  # MP3 pads to whole 1152-sample frames
    assert np.sqrt(np.mean(audio**2)) > 0.2  # the tone, not silence


@pytest.mark.skipif(not aac_available(), reason="PyAV is not installed")
def test_aac_is_adts(api):
    response = speak(api, response_format="aac")
    assert response.status_code == 200 and response.headers["content-type"] == "audio/aac"
    assert response.content[0] == 0xFF and response.content[1] & 0xF0 == 0xF0  # ADTS sync word


def test_speed_changes_duration_not_sample_rate(api):
    fast = speak(api, speed=2.0)
    assert fast.status_code == 200
    header, pcm = parse_wav(fast.content)
    assert header["rate"] == 24000 and header["data_size"] == len(pcm)  # complete file: exact sizes
    assert abs(len(pcm) // 2 - N_SAMPLES / 2) <= orpheus.SAMPLES_PER_FRAME
    slow = speak(api, speed=0.5, response_format="pcm")
    assert abs(len(slow.content) // 2 - N_SAMPLES * 2) <= orpheus.SAMPLES_PER_FRAME


def test_sse_sends_base64_deltas_then_done_with_usage(api):
    response = speak(api, stream_format="sse", response_format="pcm")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [
        json.loads(line[len("data: ") :]) for line in response.text.splitlines() if line.startswith("data: ")
    ]
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert len(deltas) == N_CHUNKS
    pcm = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    assert len(pcm) == N_SAMPLES * 2
    done = events[-1]
    assert done["type"] == "speech.audio.done"
    assert done["usage"]["output_tokens"] == N_FRAMES * orpheus.CODES_PER_FRAME
    assert done["usage"]["total_tokens"] == done["usage"]["input_tokens"] + done["usage"]["output_tokens"]


def test_sse_failure_after_audio_becomes_an_error_event(api):
    response = speak(api, stream_format="sse", input="Cut short [midstream]")
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[0]["type"] == "speech.audio.delta"
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "incomplete_generation"


def test_running_out_of_a_client_set_max_tokens_ends_the_audio_normally(api):
    response = speak(api, input="Budget [max-tokens]", response_format="pcm", max_tokens=100)
    assert response.status_code == 200
    assert len(response.content) == FRAMES_PER_CHUNK * orpheus.SAMPLES_PER_FRAME * 2


ONE_CHUNK_PCM_BYTES = FRAMES_PER_CHUNK * orpheus.SAMPLES_PER_FRAME * 2


def test_running_out_of_the_derived_budget_is_an_error(api, caplog):
    with caplog.at_level(logging.ERROR, logger="voicelab.server.speech"):
        response = speak(api, input="Budget [max-tokens]", response_format="pcm")
    # the header was already out: the transfer stops after the audio sent so far (a real HTTP client sees
    # the connection drop, see test_server_vllm) and the cause is logged once
    assert response.status_code == 200 and len(response.content) == ONE_CHUNK_PCM_BYTES
    assert "speech failed after" in caplog.text and "max_tokens" in caplog.text


@pytest.mark.parametrize("body", [{}, {"max_tokens": 100}])
def test_generation_cut_short_mid_stream_aborts_the_transfer(api, body, caplog):
    # The status is already 200 when it happens: a broken transfer is the only honest signal left.
    # A client's max_tokens does not excuse a stream that broke off before reaching it.
    with caplog.at_level(logging.ERROR, logger="voicelab.server.speech"):
        response = speak(api, input="Cut short [midstream]", response_format="pcm", **body)
    assert len(response.content) == ONE_CHUNK_PCM_BYTES
    assert "without end of speech" in caplog.text


@pytest.mark.parametrize("body", [{"response_format": "flac"}, {"response_format": "wav", "speed": 1.5}])
def test_failure_while_buffering_a_whole_file_is_a_proper_error_status(api, body):
    assert_openai_error(speak(api, input="Cut short [midstream]", **body), 502, "incomplete_generation")


def test_voice_as_custom_voice_object(api):
    response = speak(api, voice={"id": "bob"})
    assert response.status_code == 200
    assert api.synth.calls[-1][0].name == "bob"


def test_no_audio_at_all_is_still_a_valid_empty_wav(api):
    response = speak(api, input="[silent]")
    header, pcm = parse_wav(response.content)
    assert response.status_code == 200 and pcm == b"" and header["data_size"] == 0


# --- errors ----------------------------------------------------------------------------------------
def test_unknown_voice_is_404_listing_the_voices(api):
    error = assert_openai_error(speak(api, voice="nobody"), 404, "voice_not_found", "voice")
    assert "alice" in error["message"] and "bob" in error["message"]
    assert "dora_voice" not in error["message"]  # skipped voices are not offered


@pytest.mark.parametrize("name", ["../alice", "alice/../bob", "/etc/passwd", "dora_voice"])
def test_voice_names_cannot_reach_outside_the_registry(api, name):
    assert_openai_error(speak(api, voice=name), 404, "voice_not_found")


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"input": ""}, "empty_input", "input"),
        ({"input": "   \n"}, "empty_input", "input"),
        ({"input": "x" * 4097}, "input_too_long", "input"),
        ({"response_format": "ogg"}, "invalid_value", "response_format"),
        ({"speed": 4.5}, "invalid_value", "speed"),
        ({"speed": 0.1}, "invalid_value", "speed"),
        ({"stream_format": "chunks"}, "invalid_value", "stream_format"),
        ({"temperature": 0}, "invalid_value", "temperature"),
        ({"repetition_penalty": 0.9}, "invalid_value", "repetition_penalty"),
        ({"max_tokens": 3}, "invalid_value", "max_tokens"),
        ({"repeat_penalty": 1.2}, "invalid_value", "repeat_penalty"),
    ],
)
def test_bad_requests_are_400_in_openai_shape(api, body, code, param):
    assert_openai_error(speak(api, **body), 400, code, param)


def test_missing_fields_and_non_json_are_400(api):
    assert_openai_error(api.post("/v1/audio/speech", json={"voice": "alice"}), 400, "invalid_value", "input")
    response = api.post("/v1/audio/speech", content=b"not json", headers={"content-type": "application/json"})
    error = assert_openai_error(response, 400, "invalid_json")
    assert error["param"] is None and "not valid JSON" in error["message"]


@pytest.mark.parametrize(
    ("text", "status", "code"),
    [
        ("[unavailable]", 503, "engine_unavailable"),
        ("[engine400]", 400, "engine_rejected_request"),
        ("[engine500]", 502, "engine_error"),
        ("[contract]", 502, "invalid_audio_tokens"),
    ],
)
def test_engine_failures_before_audio_map_to_statuses(api, text, status, code):
    error = assert_openai_error(speak(api, input=text), status, code)
    assert error["type"] == ("invalid_request_error" if status == 400 else "server_error")


def test_unavailable_engine_says_when_to_retry(api):
    response = speak(api, input="[unavailable]")
    assert response.headers["retry-after"] == "1"


def test_engine_that_lost_a_voice_gets_it_loaded_again(api):
    before = api.engine.loaded.count("alice")
    response = speak(api, input="[unknown-once] hello")
    assert response.status_code == 200
    assert api.engine.loaded.count("alice") == before + 1


def test_unknown_routes_are_openai_shaped_404(api):
    assert_openai_error(api.get("/v1/nothing"), 404, "not_found")


# --- listing, health, reload, metrics ----------------------------------------------------------------
def test_voices_and_models_list_the_served_voices(api):
    voices = api.get("/v1/audio/voices").json()["voices"]
    assert [v["id"] for v in voices] == ["alice", "bob"]
    # what a client picks a voice by: how much it was trained on, how it scored; no server paths
    assert set(voices[0]) == {"id", "name", "object", "created_at", "training", "evaluation"}
    assert "/" not in json.dumps(voices[0]["training"])  # no server paths
    assert voices[0]["evaluation"] is None  # no `make evaluate` run yet (test_evaluate checks one that has)
    models = api.get("/v1/models").json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["orpheus", "alice", "bob"]
    assert models["data"][1]["parent"] == "orpheus"


def test_health_reports_engine_and_voices(api):
    body = api.get("/health").json()
    # open to anyone, so counts only: names need the key, skip reasons (server paths) are in the log
    assert body == {
        "status": "ok",
        "engine": "fake",
        "engine_reachable": True,
        "voices": 2,
        "voices_skipped": 1,
    }
    api.engine.healthy = False
    try:
        response = api.get("/health")
        assert response.status_code == 503 and response.json()["engine_reachable"] is False
    finally:
        api.engine.healthy = True


def test_metrics_count_requests_errors_latency_and_audio(api):
    speak(api)
    speak(api, voice="nobody-at-all")
    text = api.get("/metrics").text
    assert 'voicelab_speech_requests_total{format="wav",status="200",voice="alice"}' in text
    assert 'voicelab_speech_requests_total{format="wav",status="404",voice="unknown"}' in text
    assert "nobody-at-all" not in text
    assert 'voicelab_time_to_first_audio_seconds_count{voice="alice"}' in text
    line = next(x for x in text.splitlines() if x.startswith('voicelab_audio_seconds_total{voice="alice"}'))
    assert float(line.split()[-1]) >= N_SAMPLES / orpheus.SAMPLE_RATE
    assert "voicelab_voices_served 2.0" in text


def test_reload_adds_and_removes_voices_without_restart(voices_dir, tmp_path):
    root = tmp_path / "voices"
    shutil.copytree(voices_dir, root)
    app, engine, _ = make_app(root)
    with local_client(app) as client:
        write_voice_folder(root, "carol", base_model=BASE)
        shutil.rmtree(root / "bob")
        report = client.post("/v1/voices/reload").json()
        assert (
            report["added"] == ["carol"] and report["removed"] == ["bob"] and report["unchanged"] == ["alice"]
        )
        assert "dora_voice" in report["skipped"]
        assert report["voices"] == ["alice", "carol"]
        assert engine.loaded.count("carol") == 1 and engine.unloaded == ["bob"]
        assert speak(client, voice="carol").status_code == 200
        assert_openai_error(speak(client, voice="bob"), 404, "voice_not_found")


# --- auth ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def secured(voices_dir):
    app, _, _ = make_app(voices_dir, api_keys=f"old-key,{KEY}")
    with local_client(app) as client:
        yield client


def test_api_keys_guard_every_v1_route(secured):
    assert_openai_error(speak(secured), 401, "missing_api_key")
    assert_openai_error(secured.post("/v1/voices/reload"), 401, "missing_api_key")
    assert_openai_error(
        secured.get("/v1/models", headers={"Authorization": "Bearer wrong"}), 401, "invalid_api_key"
    )
    assert_openai_error(secured.get("/v1/models", headers={"Authorization": f"Basic {KEY}"}), 401)
    ok = secured.post(
        "/v1/audio/speech",
        json={"voice": "alice", "input": "hi", "response_format": "pcm"},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert ok.status_code == 200
    assert secured.get("/v1/audio/voices", headers={"Authorization": "Bearer old-key"}).status_code == 200
    assert secured.get("/health").status_code == 200  # probes need no key


# --- real HTTP: concurrency limit and hang-ups -------------------------------------------------------
@pytest.fixture(scope="module")
def live(voices_dir):
    app, _engine, synth = make_app(voices_dir, max_concurrent_requests=1)
    with ServerThread(app) as server:
        server.synth = synth
        server.app = app
        yield server


def test_client_hang_up_stops_generation_and_frees_the_slot(live):
    body = {"voice": "alice", "input": "[endless] talk forever", "response_format": "pcm"}
    live.synth.cancelled.clear()
    with httpx.Client(base_url=live.url) as client:
        with client.stream("POST", "/v1/audio/speech", json=body) as response:
            assert response.status_code == 200
            pieces = response.iter_bytes()  # kept referenced: dropping it would close the stream
            assert len(next(pieces)) > 0
            busy = client.post("/v1/audio/speech", json={**body, "input": "second"})
            error = assert_openai_error(busy, 429, "too_many_concurrent_requests")
            assert error["type"] == "rate_limit_error"
        # Leaving the block closes the connection mid-stream.
        assert live.synth.cancelled.wait(timeout=60), "generation kept running after the client left"
        for _ in range(100):
            if live.app.state.limiter.active == 0:
                break
            threading.Event().wait(0.05)
        assert client.post("/v1/audio/speech", json={**body, "input": "fits again"}).status_code == 200


def test_client_hang_up_during_a_buffered_format_stops_generation(live):
    live.synth.cancelled.clear()
    body = {"voice": "alice", "input": "[endless] never done", "response_format": "mp3"}
    # The client gives up waiting (mp3 cannot start before the end) and closes the connection.
    impatient = httpx.Timeout(5.0, read=0.5)
    with httpx.Client(base_url=live.url, timeout=impatient) as client, pytest.raises(httpx.ReadTimeout):
        client.post("/v1/audio/speech", json=body)
    assert live.synth.cancelled.wait(timeout=60), "generation kept running after the client left"


def test_a_response_never_sent_still_frees_its_slot(voices_dir):
    """The client can leave between the first chunk and the response start: the body never runs."""
    import anyio
    from starlette.requests import ClientDisconnect

    from voicelab.server.routes import SpeechStreamingResponse
    from voicelab.server.speech import SpeechJob, SpeechRequest, SpeechServices, audio_body

    app, _, synth = make_app(voices_dir, max_concurrent_requests=1)

    async def scenario():
        async with app.router.lifespan_context(app):
            state = app.state
            services = SpeechServices(
                state.settings, state.registry, state.backend, state.limiter, state.metrics
            )
            request = SpeechRequest(voice="alice", input="[endless] hi", response_format="pcm")
            async with contextlib.AsyncExitStack() as stack:
                job = await stack.enter_async_context(SpeechJob(services, request, 0.0))
                assert state.limiter.active == 1
                response = SpeechStreamingResponse(audio_body(job), stack.pop_all(), media_type="audio/pcm")

            async def receive():
                return {"type": "http.disconnect"}

            async def send(message):
                raise OSError("client gone")

            scope = {"type": "http", "asgi": {"spec_version": "2.4"}}
            with pytest.raises(ClientDisconnect):
                await response(scope, receive, send)
            assert state.limiter.active == 0
            assert synth.cancelled.is_set()
            # counted once, as a request the client left (not as a 200)
            assert 'status="499",voice="alice"} 1.0' in state.metrics.render().decode()

    anyio.run(scenario)


def test_a_voice_removed_mid_stream_keeps_its_own_counts(voices_dir, tmp_path):
    """The label is the voice found when the request began, not "unknown" once it is gone."""
    import anyio

    from voicelab.server.speech import SpeechJob, SpeechRequest, SpeechServices

    root = tmp_path / "voices"
    shutil.copytree(voices_dir, root)
    write_voice_folder(root, "carol", base_model=BASE)
    app, _, _ = make_app(root)

    async def scenario():
        async with app.router.lifespan_context(app):
            state = app.state
            services = SpeechServices(
                state.settings, state.registry, state.backend, state.limiter, state.metrics
            )
            request = SpeechRequest(voice="carol", input="[endless] still talking", response_format="pcm")
            async with SpeechJob(services, request, 0.0) as job:
                shutil.rmtree(root / "carol")
                await state.registry.reload(state.backend.engine)  # carol is gone while her stream runs
                assert "carol" not in state.registry.voices
                job.succeeded()
            text = state.metrics.render().decode()
            assert 'voicelab_speech_requests_total{format="pcm",status="200",voice="carol"} 1.0' in text
            assert 'voice="unknown"' not in text

    anyio.run(scenario)


def test_bad_settings_stop_start_up_with_one_line_naming_each_variable(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    monkeypatch.setenv("VOICELAB_ENGINE", "bogus")
    monkeypatch.setenv("VOICELAB_MAX_CONCURRENT_REQUESTS", "0")
    with pytest.raises(SystemExit) as stop:
        create_app()
    message = str(stop.value)
    assert "\n" not in message
    assert "VOICELAB_ENGINE" in message and "'bogus'" in message
    assert "VOICELAB_MAX_CONCURRENT_REQUESTS" in message


def test_engine_vllm_without_url_names_what_to_set(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    monkeypatch.setenv("VOICELAB_ENGINE", "vllm")
    monkeypatch.delenv("VOICELAB_VLLM_URL", raising=False)
    with pytest.raises(SystemExit, match="VOICELAB_VLLM_URL"):
        create_app()


# --- reliability: inputs and faults an outside test run found ------------------------------------------
def post_raw(client, content: bytes | str, content_type: str | None = "application/json", headers=None):
    sent = {**({"Content-Type": content_type} if content_type else {}), **(headers or {})}
    return client.post("/v1/audio/speech", content=content, headers=sent)


def test_a_lone_surrogate_in_input_is_400_not_500(api):
    response = post_raw(api, '{"voice": "alice", "input": "Hi \\ud800 there", "response_format": "wav"}')
    error = assert_openai_error(response, 400, "invalid_text", "input")
    assert "surrogate" in error["message"]


@pytest.mark.parametrize(
    "field, value",
    [
        ("temperature", 1e-40),
        ("top_p", 1e-100),
        ("seed", 2**63),
        ("seed", -(2**63) - 1),
        ("speed", float("nan")),
        ("temperature", float("inf")),
    ],
)
def test_values_no_engine_can_run_are_refused_before_generation(api, field, value):
    before = len(api.synth.calls)
    body = json.dumps({"voice": "alice", "input": "Hi.", "response_format": "wav", field: value})
    error = assert_openai_error(post_raw(api, body), 400, "invalid_value", field)
    assert len(api.synth.calls) == before
    if value != value or value in (float("inf"),):
        assert "finite" in error["message"]  # not "less than or equal to 4"


@pytest.mark.parametrize(
    "field, value", [("seed", False), ("repetition_penalty", True), ("speed", "2"), ("max_tokens", 100.0)]
)
def test_types_are_strict_not_coerced(api, field, value):
    assert_openai_error(speak(api, **{field: value}), 400, "invalid_value", field)


@pytest.mark.parametrize("text", ["", "   \n\t"])
def test_blank_input_is_refused_as_empty(api, text):
    assert_openai_error(speak(api, input=text), 400, "empty_input", "input")


def test_a_form_encoded_body_says_to_send_json(api):
    # what `curl -d '{...}'` sends without -H 'Content-Type: application/json'
    response = post_raw(api, '{"voice": "alice", "input": "Hi."}', "application/x-www-form-urlencoded")
    error = assert_openai_error(response, 400, "invalid_content_type")
    assert "Content-Type: application/json" in error["message"]


@pytest.mark.parametrize(
    "content", [b'{"voice": "alice", "input": "\xff\xfe"}', b"[" * 10_000 + b"]" * 10_000]
)
def test_undecodable_bodies_have_an_error_code(api, content):
    assert_openai_error(post_raw(api, content), 400, "invalid_json")


def test_method_not_allowed_says_which_are(api):
    response = api.get("/v1/audio/speech")
    assert_openai_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


def test_engine_losing_a_voice_twice_is_an_engine_fault_not_404(api):
    response = speak(api, input="Gone [unknown-always]")
    error = assert_openai_error(response, 502, "engine_lost_voice")
    assert error["type"] == "server_error"
    assert response.headers["x-should-retry"] == "false"


def test_failures_tell_the_openai_sdk_whether_a_retry_can_help(api):
    assert speak(api, input="Down [unavailable]").headers["x-should-retry"] == "true"
    assert speak(api, input="Bad [contract]").headers["x-should-retry"] == "false"
    assert speak(api, voice="ghost").headers["x-should-retry"] == "false"


def test_metrics_count_a_stream_cut_short_as_failed(voices_dir):
    app, _, _ = make_app(voices_dir)
    with local_client(app) as client:
        assert speak(client, input="Cut short [midstream]", response_format="pcm").status_code == 200
        text = client.get("/metrics").text
    assert 'voicelab_speech_requests_total{format="pcm",status="502",voice="alice"}' in text
    assert 'voicelab_speech_requests_total{format="pcm",status="200",voice="alice"}' not in text


def test_openapi_schema_says_what_the_server_does(api):
    schema = api.get("/openapi.json").json()
    speech = schema["paths"]["/v1/audio/speech"]["post"]
    assert "422" not in speech["responses"]
    assert {"400", "401", "404", "413", "429", "502", "503"} <= set(speech["responses"])
    assert set(speech["responses"]["200"]["content"]) == {
        "audio/mpeg",
        "audio/ogg",
        "audio/aac",
        "audio/flac",
        "audio/wav",
        "audio/pcm",
        "text/event-stream",
    }
    assert set(schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    request = schema["components"]["schemas"]["SpeechRequest"]
    assert request["properties"]["input"]["minLength"] == 1
    assert request["additionalProperties"] is False


def test_docs_work_offline_from_the_package(api):
    page = api.get("/docs")
    assert page.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower().replace("cdn.jsdelivr.net/npm/swagger-ui-dist", "")
    asset = api.get("/docs-assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.content) > 100_000


def test_docs_can_be_turned_off(voices_dir):
    app, _, _ = make_app(voices_dir, docs=False)
    with local_client(app) as client:
        assert_openai_error(client.get("/docs"), 404)
        assert_openai_error(client.get("/openapi.json"), 404)
        assert client.get("/health").status_code == 200


def test_a_wrong_key_gets_a_challenge_header(secured):
    response = speak(secured)
    assert_openai_error(response, 401, "missing_api_key")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def call_asgi(app, method: str, path: str, headers: dict, body_chunks) -> tuple[int, dict, list]:
    """One request straight into the ASGI app; ``body_chunks`` is consumed lazily (records what was read)."""
    read = []
    sent = []

    async def receive():
        try:
            chunk = next(body_chunks)
        except StopIteration:
            return {"type": "http.request", "body": b"", "more_body": False}
        read.append(len(chunk))
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "server": ("test", 80),
        "client": ("test", 1),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    await app(scope, receive, send)
    start = sent[0]
    body = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    return start["status"], dict((k.decode(), v.decode()) for k, v in start["headers"]), [read, body]


MEGABYTE = b"x" * 1_000_000


def endless_body():
    while True:
        yield MEGABYTE


def test_a_request_without_a_key_is_refused_before_its_body_is_read(secured):
    status, _, (read, body) = asyncio.run(
        call_asgi(
            secured.app, "POST", "/v1/audio/speech", {"content-type": "application/json"}, endless_body()
        )
    )
    assert status == 401 and read == [] and body["error"]["code"] == "missing_api_key"


def test_a_declared_oversized_body_is_413_before_it_is_read(api):
    limit = api.app.state.settings.request_body_limit
    headers = {"content-type": "application/json", "content-length": str(limit + 1)}
    status, _, (read, body) = asyncio.run(
        call_asgi(api.app, "POST", "/v1/audio/speech", headers, endless_body())
    )
    assert status == 413 and read == [] and body["error"]["code"] == "request_too_large"


def test_a_chunked_body_is_read_only_up_to_the_limit(api):
    limit = api.app.state.settings.request_body_limit
    headers = {"content-type": "application/json", "transfer-encoding": "chunked"}
    status, _, (read, body) = asyncio.run(
        call_asgi(api.app, "POST", "/v1/audio/speech", headers, endless_body())
    )
    assert status == 413 and body["error"]["type"] == "invalid_request_error"
    assert sum(read) <= limit + len(MEGABYTE)


def test_the_body_limit_fits_the_longest_valid_request_and_is_a_setting(voices_dir):
    settings = Settings(voices_dir=voices_dir, base_model=BASE)
    longest = json.dumps(
        {
            "voice": "alice",
            "input": "\U0001f600" * settings.max_input_chars,
            "instructions": "\U0001f600" * settings.max_input_chars,
        }
    )
    assert len(longest.encode()) <= settings.request_body_limit
    assert Settings(voices_dir=voices_dir, base_model=BASE, max_request_bytes=1000).request_body_limit == 1000
    app, _, _ = make_app(voices_dir, max_request_bytes=100)
    with local_client(app) as client:
        assert_openai_error(speak(client, input="x" * 200), 413, "request_too_large")
        assert speak(client, input="Hi.").status_code == 200
