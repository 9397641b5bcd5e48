"""vLLM mode: the production backend against the stand-in vLLM server, with the OpenAI SDK as client."""

from __future__ import annotations

import io
import json
import shutil

import openai
import pytest
import soundfile as sf
from starlette.responses import JSONResponse

from voicelab import orpheus
from voicelab.server.app import create_app
from voicelab.server.settings import Settings
from voicelab.testing.fake_vllm import FakeVLLMServer, Fault
from voicelab.testing.server import ServerThread, local_client
from voicelab.testing.voices import write_voice_folder


class PickyVLLM(FakeVLLMServer):
    """Answers runtime adapter loads with vLLM's JSON error while ``refuse_loads`` is set."""

    refuse_loads = False

    def _app(self):
        inner = super()._app()

        async def app(scope, receive, send):
            if self.refuse_loads and scope["type"] == "http" and scope["path"] == "/v1/load_lora_adapter":
                body = {
                    "error": {
                        "message": "LoRA rank 64 is greater than max_lora_rank 32.",
                        "type": "BadRequestError",
                        "param": None,
                        "code": 400,
                    }
                }
                await JSONResponse(body, status_code=400)(scope, receive, send)
                return
            await inner(scope, receive, send)

        return app


@pytest.fixture(scope="module")
def vllm(tiny_orpheus_dir, voices_dir):
    # `make vllm` already passed alice as a static adapter: the API's load must accept "already loaded".
    with PickyVLLM(
        base_model=str(tiny_orpheus_dir), adapters={"alice": str((voices_dir / "alice").resolve())}
    ) as s:
        yield s


def vllm_settings(vllm, voices_dir, tiny_orpheus_dir, tiny_snac_dir, **extra) -> Settings:
    return Settings(
        voices_dir=voices_dir,
        vllm_url=vllm.url,
        base_model=str(tiny_orpheus_dir),
        snac_model=str(tiny_snac_dir),
        **extra,
    )


@pytest.fixture(scope="module")
def server(vllm, voices_dir, tiny_orpheus_dir, tiny_snac_dir):
    app = create_app(vllm_settings(vllm, voices_dir, tiny_orpheus_dir, tiny_snac_dir))
    with ServerThread(app) as running:
        running.app = app
        yield running


def test_start_up_loads_every_voice_into_vllm(server, vllm):
    assert server.app.state.backend.kind == "vllm"
    assert sorted(vllm.adapters) == ["alice", "bob"]
    loads = [r.body["lora_name"] for r in vllm.requests if r.path == "/v1/load_lora_adapter"]
    assert sorted(loads) == ["alice", "bob"]  # alice answered 400 "already loaded" and still counts


def test_sdk_speech_is_a_valid_wav_of_whole_frames(client, vllm, tiny_tokenizer):
    audio = client.audio.speech.create(
        model="orpheus", voice="alice", input="Hello from vLLM.", response_format="wav"
    )
    data = audio.read()
    samples, rate = sf.read(io.BytesIO(data), dtype="float32")
    request = vllm.completions[-1].body
    prompt = orpheus.inference_prompt_ids(tiny_tokenizer, "Hello from vLLM.", "Alice: ")
    assert request["model"] == "alice" and request["prompt"] == prompt
    assert request["stream"] is True and request["max_tokens"] > 16
    assert orpheus.END_OF_SPEECH in request["stop_token_ids"]
    assert rate == orpheus.SAMPLE_RATE
    assert len(samples) == vllm.n_frames_for(prompt) * orpheus.SAMPLES_PER_FRAME


def test_sdk_streaming_response_delivers_pcm_chunks(client, vllm, tiny_tokenizer):
    with client.audio.speech.with_streaming_response.create(
        model="orpheus", voice="bob", input="Streaming, please.", response_format="pcm"
    ) as response:
        assert response.headers["content-type"] == "audio/pcm"
        chunks = list(response.iter_bytes())
    prompt = orpheus.inference_prompt_ids(tiny_tokenizer, "Streaming, please.", "bob: ")
    assert sum(len(c) for c in chunks) == vllm.n_frames_for(prompt) * orpheus.SAMPLES_PER_FRAME * 2


def test_vllm_errors_reach_the_sdk_as_openai_exceptions(client, vllm):
    vllm.faults.append(Fault(http_status=500, message="CUDA out of memory"))
    with pytest.raises(openai.APIStatusError) as info:
        client.audio.speech.create(model="orpheus", voice="alice", input="Boom.", response_format="wav")
    assert info.value.status_code == 502 and "CUDA out of memory" in info.value.message
    with pytest.raises(openai.NotFoundError) as missing:
        client.audio.speech.create(model="orpheus", voice="nobody", input="Hi.", response_format="wav")
    assert "alice" in missing.value.message


def test_sse_events_through_the_sdk(client):
    with client.audio.speech.with_streaming_response.create(
        model="orpheus", voice="alice", input="Events.", response_format="pcm", stream_format="sse"
    ) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    assert [e["type"] for e in events][-1] == "speech.audio.done"
    assert events[-1]["usage"]["output_tokens"] > 0 and events[0]["type"] == "speech.audio.delta"


def test_reload_loads_and_unloads_adapters_at_runtime(
    vllm, voices_dir, tiny_orpheus_dir, tiny_snac_dir, tmp_path
):
    root = tmp_path / "voices"
    shutil.copytree(voices_dir, root)
    app = create_app(vllm_settings(vllm, root, tiny_orpheus_dir, tiny_snac_dir))
    with local_client(app) as api:
        write_voice_folder(root, "carol", base_model=str(tiny_orpheus_dir))
        shutil.rmtree(root / "bob")
        report = api.post("/v1/voices/reload").json()
        assert report["added"] == ["carol"] and report["removed"] == ["bob"]
        assert "carol" in vllm.adapters and "bob" not in vllm.adapters
        unloads = [r.body["lora_name"] for r in vllm.requests if r.path == "/v1/unload_lora_adapter"]
        assert unloads[-1] == "bob"

        # vLLM refusing a new adapter (JSON 400): reported, and the voice is not offered.
        write_voice_folder(root, "dave", base_model=str(tiny_orpheus_dir))
        vllm.refuse_loads = True
        try:
            report = api.post("/v1/voices/reload").json()
        finally:
            vllm.refuse_loads = False
        assert "max_lora_rank" in report["failed"]["dave"]
        assert "dave" not in report["voices"]
        assert api.post("/v1/audio/speech", json={"voice": "dave", "input": "hi"}).status_code == 404
    write_voice_folder(voices_dir, "bob", base_model=str(tiny_orpheus_dir))  # undo for other tests
    vllm.adapters.pop("carol", None)


def test_unreachable_vllm_gives_503_and_unhealthy(voices_dir, tiny_orpheus_dir, tiny_snac_dir):
    from voicelab.testing.server import free_port

    settings = Settings(
        voices_dir=voices_dir,
        vllm_url=f"http://127.0.0.1:{free_port()}",
        base_model=str(tiny_orpheus_dir),
        snac_model=str(tiny_snac_dir),
    )
    with local_client(create_app(settings)) as api:  # starts anyway: vLLM may come up later
        health = api.get("/health")
        assert health.status_code == 503 and health.json()["engine_reachable"] is False
        assert health.json()["voices"] == 2
        response = api.post(
            "/v1/audio/speech", json={"voice": "alice", "input": "hi", "response_format": "wav"}
        )
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "engine_unavailable"


def test_client_hang_up_cancels_the_vllm_request(server, vllm):
    import httpx

    vllm.token_delay = 0.02
    try:
        body = {
            "voice": "alice",
            "input": "A long sentence to keep the fake busy. " * 3,
            "response_format": "pcm",
        }
        with (
            httpx.Client(base_url=server.url) as http,
            http.stream("POST", "/v1/audio/speech", json=body) as r,
        ):
            pieces = r.iter_bytes()
            assert len(next(pieces)) > 0
        record = vllm.completions[-1]
        assert record.done.wait(timeout=60)
        assert record.disconnected and not record.finished
    finally:
        vllm.token_delay = 0.0


def test_failure_after_audio_started_drops_the_connection_without_a_traceback(server, vllm):
    """Over real HTTP: the client gets the audio sent so far, then a broken transfer (never a short file
    that looks complete); the server logs the cause once, not an ASGI traceback."""
    import logging

    import httpx

    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Collect()
    server_log = logging.getLogger("uvicorn.error")  # where uvicorn reports exceptions from the app
    server_log.addHandler(handler)
    vllm.faults.append(Fault(error_after=10 * orpheus.CODES_PER_FRAME, message="CUDA error mid-stream"))
    body = {"model": "orpheus", "voice": "alice", "input": "This one breaks.", "response_format": "pcm"}
    received = b""
    try:
        with httpx.stream("POST", f"{server.url}/v1/audio/speech", json=body) as response:
            assert response.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):
                for chunk in response.iter_bytes():
                    received += chunk
    finally:
        server_log.removeHandler(handler)
    assert len(received) > 0  # the first chunks were delivered before the failure
    assert not any(r.exc_info for r in records), "no traceback for a failure already logged with its cause"


# --- the stock OpenAI SDK and a generation that ends early -------------------------------------------
@pytest.fixture(scope="module")
def stock_client(server):
    """The SDK as the README shows it: default max_retries (2)."""
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused") as c:
        yield c


@pytest.mark.parametrize(
    "fault, says",
    [
        (Fault(cut_after=10 * orpheus.CODES_PER_FRAME), "ended without end of speech"),
        (Fault(error_after=10 * orpheus.CODES_PER_FRAME, message="CUDA error"), "CUDA error"),
    ],
)
def test_sdk_create_gets_one_clear_error_when_generation_ends_early_and_does_not_retry(
    stock_client, vllm, fault, says
):
    before = len(vllm.completions)
    vllm.faults.append(fault)
    with pytest.raises(openai.InternalServerError) as info:  # not APIConnectionError after 3 generations
        stock_client.audio.speech.create(
            model="orpheus", voice="alice", input="This one ends early.", response_format="wav"
        )
    assert info.value.status_code == 502 and says in info.value.message
    assert "max_tokens" not in info.value.message  # the budget was not the cause
    assert len(vllm.completions) == before + 1, "the SDK generated the speech more than once"


def test_sdk_streaming_sees_a_cut_transfer_once(stock_client, vllm):
    before = len(vllm.completions)
    vllm.faults.append(Fault(cut_after=10 * orpheus.CODES_PER_FRAME))
    with (
        pytest.raises(Exception, match="peer closed connection"),  # the SDK's own httpx: a broken transfer
        stock_client.audio.speech.with_streaming_response.create(
            model="orpheus", voice="alice", input="This one ends early.", response_format="pcm"
        ) as response,
    ):
        assert response.status_code == 200  # streamed: the audio so far arrives, then the transfer breaks
        for _ in response.iter_bytes():
            pass
    assert len(vllm.completions) == before + 1


def test_a_voice_vllm_loses_twice_is_an_engine_fault_not_not_found(server, vllm, stock_client):
    # vLLM answering 404 for the adapter however often it is loaded (e.g. restarting in a loop)
    vllm.faults.extend([Fault(http_status=404, message="The model `alice` does not exist.")] * 2)
    with pytest.raises(openai.InternalServerError) as info:
        stock_client.audio.speech.create(model="orpheus", voice="alice", input="Hi.", response_format="wav")
    assert info.value.status_code == 502 and "lost voice 'alice'" in info.value.message
