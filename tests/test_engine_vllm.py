"""VLLMEngine against a real local HTTP server speaking vLLM's OpenAI-compatible API (FakeVLLMServer)."""

from __future__ import annotations

import socket

import anyio
import httpx
import pytest

from voicelab import orpheus
from voicelab.engine import (
    EngineRequestError,
    EngineUnavailableError,
    SamplingParams,
    UnknownVoiceError,
    VLLMEngine,
    Voice,
)
from voicelab.engine.vllm import completion_body
from voicelab.testing.fake_vllm import FakeVLLMServer, Fault, audio_tokens_for_prompt

pytestmark = pytest.mark.anyio

PROMPT = [orpheus.START_OF_HUMAN, orpheus.BEGIN_OF_TEXT, 1, 2, 3, orpheus.END_OF_TEXT, orpheus.END_OF_HUMAN]
PROMPT += [orpheus.START_OF_AI, orpheus.START_OF_SPEECH]


@pytest.fixture
def adapter_dir(tmp_path):
    folder = tmp_path / "alice"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    return folder


@pytest.fixture
def server(adapter_dir):
    with FakeVLLMServer(base_model="orpheus-base", adapters={"alice": str(adapter_dir)}) as s:
        yield s


@pytest.fixture
def alice(adapter_dir):
    return Voice("alice", adapter_path=adapter_dir, prompt_prefix="alice: ")


async def _collect(engine, voice, params=None):
    chunks = []
    async for chunk in engine.generate(voice, PROMPT, params or SamplingParams(max_tokens=500)):
        chunks.append(chunk)
    return chunks


def test_request_body_has_every_field_vllm_needs():
    body = completion_body("alice", PROMPT, SamplingParams(seed=7))
    assert body["prompt"] == PROMPT and body["stream"] is True and body["model"] == "alice"
    assert body["max_tokens"] > 16 * 20  # never vLLM's default 16, nor a 14 s cap for long prompts
    assert body["repetition_penalty"] >= 1.1 and "repeat_penalty" not in body
    assert body["stop_token_ids"] == [orpheus.END_OF_SPEECH]
    assert body["skip_special_tokens"] is False and body["return_token_ids"] is True
    assert body["seed"] == 7
    assert completion_body("alice", PROMPT, SamplingParams(max_tokens=99))["max_tokens"] == 99


async def test_streams_token_ids_and_stops_at_end_of_speech(server, alice):
    engine = VLLMEngine(server.url)
    chunks = await _collect(engine, alice, SamplingParams(max_tokens=500, temperature=0.5))
    await engine.aclose()
    expected = audio_tokens_for_prompt(PROMPT, server.n_frames_for(PROMPT))
    assert [t for c in chunks for t in c.ids] == expected
    assert chunks[-1].finish_reason == "stop"
    sent = server.completions[-1].body
    assert sent["model"] == "alice" and sent["prompt"] == PROMPT and sent["max_tokens"] == 500
    assert sent["temperature"] == 0.5


async def test_reads_custom_token_text_with_several_tokens_per_chunk(adapter_dir, alice):
    with FakeVLLMServer(
        adapters={"alice": str(adapter_dir)}, supports_token_ids=False, tokens_per_chunk=5
    ) as s:
        engine = VLLMEngine(s.url)
        chunks = await _collect(engine, alice)
        await engine.aclose()
    assert all(c.ids is None and c.text for c in chunks)
    parser = orpheus.AudioTokenParser()
    frames = [parser.feed_text(c.text) for c in chunks]
    assert sum(len(f) for f in frames) == s.n_frames_for(PROMPT)
    assert chunks[-1].finish_reason == "stop"


async def test_base_voice_uses_the_base_model_name(server):
    engine = VLLMEngine(server.url, base_model="orpheus-base")
    await _collect(engine, Voice("base"))
    await engine.aclose()
    assert server.completions[-1].body["model"] == "orpheus-base"


async def test_max_tokens_reached_reports_length(server, alice):
    engine = VLLMEngine(server.url)
    chunks = await _collect(engine, alice, SamplingParams(max_tokens=14))
    await engine.aclose()
    assert sum(len(c.ids) for c in chunks) == 14
    assert chunks[-1].finish_reason == "length"


async def test_unknown_voice_is_404_unknown_voice_error(server):
    engine = VLLMEngine(server.url)
    with pytest.raises(UnknownVoiceError, match="bob"):
        await _collect(engine, Voice("bob", adapter_path="/nowhere"))
    await engine.aclose()


async def test_http_error_body_becomes_engine_request_error(server, alice):
    server.faults.append(Fault(http_status=500, message="CUDA out of memory"))
    engine = VLLMEngine(server.url)
    with pytest.raises(EngineRequestError, match="CUDA out of memory") as info:
        await _collect(engine, alice)
    assert info.value.status_code == 500
    await engine.aclose()


async def test_error_event_after_200_header_raises(server, alice):
    server.faults.append(Fault(error_after=10, message="engine died"))
    engine = VLLMEngine(server.url)
    got = []
    with pytest.raises(EngineRequestError, match="engine died"):
        async for chunk in engine.generate(alice, PROMPT, SamplingParams(max_tokens=500)):
            got.append(chunk)
    assert sum(len(c.ids) for c in got) == 10  # what came before the error was delivered
    await engine.aclose()


async def test_stream_cut_without_end_of_speech_has_no_finish_reason(server, alice):
    server.faults.append(Fault(cut_after=21))
    engine = VLLMEngine(server.url)
    chunks = await _collect(engine, alice)
    await engine.aclose()
    assert sum(len(c.ids) for c in chunks) == 21
    assert all(c.finish_reason is None for c in chunks)


async def test_connection_refused_is_engine_unavailable():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    engine = VLLMEngine(f"http://127.0.0.1:{port}", timeout=2.0)
    with pytest.raises(EngineUnavailableError, match="cannot reach vLLM"):
        await _collect(engine, Voice("base"))
    assert await engine.health() is False
    await engine.aclose()


async def test_read_timeout_is_engine_unavailable(adapter_dir, alice):
    with FakeVLLMServer(adapters={"alice": str(adapter_dir)}, token_delay=1.0) as s:
        engine = VLLMEngine(s.url, timeout=0.2)
        with pytest.raises(EngineUnavailableError, match="did not answer in time"):
            await _collect(engine, alice)
        await engine.aclose()


async def test_closing_the_consumer_disconnects_upstream(adapter_dir, alice):
    with FakeVLLMServer(adapters={"alice": str(adapter_dir)}, token_delay=0.02, frames_per_prompt=200) as s:
        engine = VLLMEngine(s.url)
        tokens = engine.generate(alice, PROMPT, SamplingParams(max_tokens=5000))
        async for chunk in tokens:
            if chunk.ids:
                break
        await tokens.aclose()
        record = s.completions[-1]
        assert await anyio.to_thread.run_sync(
            record.done.wait, 5
        )  # the server notices the hang-up, not a test time limit
        await engine.aclose()
    assert record.disconnected and not record.finished
    assert record.tokens_sent < 200 * orpheus.CODES_PER_FRAME


async def test_health_and_runtime_adapter_loading(server, tmp_path):
    engine = VLLMEngine(server.url)
    assert await engine.health() is True
    server.healthy = False
    assert await engine.health() is False

    bob_dir = tmp_path / "bob"
    bob_dir.mkdir()
    (bob_dir / "adapter_config.json").write_text("{}")
    bob = Voice("bob", adapter_path=bob_dir)
    await engine.load_voice(bob)
    await engine.load_voice(bob)  # already loaded: fine
    models = {m["id"]: m for m in await engine.list_models()}
    assert models["orpheus-base"]["parent"] is None
    assert models["bob"]["root"] == str(bob_dir) and models["bob"]["parent"] == "orpheus-base"
    loads = [r.body for r in server.requests if r.path == "/v1/load_lora_adapter"]
    assert loads[0] == {"lora_name": "bob", "lora_path": str(bob_dir)}

    await engine.unload_voice("bob")
    with pytest.raises(UnknownVoiceError, match="bob"):
        await engine.unload_voice("bob")
    with pytest.raises(EngineRequestError, match="could not load voice") as info:
        await engine.load_voice(Voice("carol", adapter_path=tmp_path / "missing"))
    assert info.value.status_code == 404
    (tmp_path / "junk").mkdir()
    with pytest.raises(EngineRequestError) as info:
        await engine.load_voice(Voice("junk", adapter_path=tmp_path / "junk"))
    assert info.value.status_code == 400
    await engine.aclose()


async def test_api_key_is_sent_and_shared_client_is_not_closed(adapter_dir, alice):
    with FakeVLLMServer(adapters={"alice": str(adapter_dir)}, api_key="sekrit") as s:
        async with httpx.AsyncClient() as client:
            denied = VLLMEngine(s.url, client=client)
            with pytest.raises(EngineRequestError) as info:
                await _collect(denied, alice)
            assert info.value.status_code == 401
            engine = VLLMEngine(s.url, api_key="sekrit", client=client)
            assert await _collect(engine, alice)
            await engine.aclose()
            assert not client.is_closed


@pytest.mark.anyio
async def test_a_reply_that_is_not_an_event_stream_names_the_likely_cause():
    # e.g. VOICELAB_VLLM_URL pointing at some other HTTP service that answers 200 with JSON
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"hello": "world"}))
    async with httpx.AsyncClient(transport=transport) as client:
        engine = VLLMEngine("http://127.0.0.1:9", client=client)
        with pytest.raises(EngineRequestError, match="VOICELAB_VLLM_URL") as info:
            async for _ in engine.generate(Voice("alice"), [1, 2, 3], SamplingParams(max_tokens=50)):
                pass
    assert "max_tokens" not in str(info.value) and info.value.status_code == 502
