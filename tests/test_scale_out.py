"""Scale-out: two stand-in vLLM replicas (real processes) behind a round-robin router, one API in front.

The replicas run vLLM's filesystem LoRA resolver over one shared voices/ folder, as `make vllm
ARGS=--lora-resolver` starts them; the API runs with VOICELAB_VLLM_LORA_RESOLVER. The router is test
code, the smallest thing that behaves like nginx's default proxying: round robin, and a replica that
refuses the connection is skipped for the next one.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import soundfile as sf
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from voicelab import orpheus
from voicelab.server.app import create_app
from voicelab.server.settings import Settings
from voicelab.testing.fake_vllm import FakeVLLMServer
from voicelab.testing.server import ServerThread
from voicelab.testing.voices import write_voice_folder

REPLICA_SCRIPT = """
import sys
from voicelab.testing.fake_vllm import FakeVLLMServer
base, voices, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
server = FakeVLLMServer(base_model=base, lora_resolver_dir=voices, tokens_per_chunk=7, token_delay=delay).start()
print(server.url, flush=True)
sys.stdin.read()  # until the test closes stdin (or kills this process)
server.stop()
"""
SLOW_CHUNK_S = 0.1
"""Seconds between the kill test's token chunks (one frame each): a long text streams for seconds."""
LONG_TEXT = " ".join(["word"] * 13) + "."
"""One piece for the synthesizer (~53 text tokens with the tiny tokenizer, under its 60-token split size):
one completion of ~34 frames, ~3.4 s at SLOW_CHUNK_S, so the kill lands while it streams."""


@dataclass
class Replica:
    process: subprocess.Popen
    url: str

    def kill(self) -> None:
        """What a crashed GPU machine looks like to its peers: the process is gone, sockets reset."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


@contextmanager
def replica(base_model: str, voices_dir: Path, token_delay: float = 0.0) -> Iterator[Replica]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(
        [sys.executable, "-c", REPLICA_SCRIPT, base_model, str(voices_dir), str(token_delay)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://"), "the stand-in replica did not start"
        yield Replica(process, url)
    finally:
        if process.poll() is None:
            process.stdin.close()
            process.wait()


class UpstreamBroke(Exception):
    """The replica died mid-response: the router cuts the client's connection, as nginx does."""


@dataclass
class RoundRobin:
    """Test code, not product code: forwards each request to the next replica that accepts a connection."""

    upstreams: list[str]
    routed: list[tuple[str, int]] = field(default_factory=list)
    """(path, replica index) of every forwarded request."""

    def __post_init__(self) -> None:
        self._turn = itertools.cycle(range(len(self.upstreams)))
        self._client = httpx.AsyncClient(timeout=None)

    def app(self):
        inner = Starlette(routes=[Route("/{path:path}", self.forward, methods=["GET", "POST"])])

        async def app(scope, receive, send):
            try:
                await inner(scope, receive, send)
            except UpstreamBroke:
                return  # no end of body: the client sees a broken transfer

        return app

    async def forward(self, request: Request) -> Response:
        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        for _ in self.upstreams:
            index = next(self._turn)
            upstream = self._client.build_request(
                request.method, self.upstreams[index] + request.url.path, content=body, headers=headers
            )
            try:
                response = await self._client.send(upstream, stream=True)
            except httpx.ConnectError:
                continue  # a dead replica: try the next one
            self.routed.append((request.url.path, index))
            return StreamingResponse(
                self._relay(response),
                status_code=response.status_code,
                media_type=response.headers.get("content-type"),
            )
        return JSONResponse({"error": {"message": "no replica answered", "code": 502}}, status_code=502)

    @staticmethod
    async def _relay(response: httpx.Response):
        try:
            async for data in response.aiter_raw():
                yield data
        except httpx.TransportError as e:
            raise UpstreamBroke(str(e)) from e
        finally:
            await response.aclose()

    def replicas_for(self, path: str) -> list[int]:
        return [index for p, index in self.routed if p == path]


@contextmanager
def scaled_out(tiny_orpheus_dir, tiny_snac_dir, voices_dir: Path, token_delay: float = 0.0):
    """Two replicas, the router and one API server; yields (api url, router, replicas)."""
    base = str(tiny_orpheus_dir)
    with replica(base, voices_dir, token_delay) as one, replica(base, voices_dir, token_delay) as two:
        router = RoundRobin([one.url, two.url])
        with ServerThread(router.app()) as routed:
            settings = Settings(
                voices_dir=voices_dir,
                vllm_url=routed.url,
                vllm_lora_resolver=True,
                base_model=base,
                snac_model=str(tiny_snac_dir),
            )
            with ServerThread(create_app(settings)) as api:
                yield api.url, router, [one, two]


def publish_voice(voices_dir: Path, name: str, base_model: str) -> Path:
    """As training publishes a voice: assembled in a dot-folder, then renamed into place at once."""
    staging = write_voice_folder(voices_dir, f".staging-{name}-1", base_model=base_model)
    meta = json.loads((staging / "voice.json").read_text())
    meta["name"], meta["prompt_prefix"] = name, f"{name}: "
    (staging / "voice.json").write_text(json.dumps(meta))
    return staging.rename(voices_dir / name)


def speak(api_url: str, voice: str, text: str = "Hello there.") -> httpx.Response:
    body = {"model": "orpheus", "voice": voice, "input": text, "response_format": "wav"}
    return httpx.post(f"{api_url}/v1/audio/speech", json=body, timeout=60)


def assert_whole_speech(response: httpx.Response, tokenizer, text: str, prefix: str) -> None:
    """A 200 whose WAV holds every frame the replica generated for this prompt (nothing lost or cut)."""
    assert response.status_code == 200, response.text
    samples, rate = sf.read(io.BytesIO(response.content), dtype="float32")
    n_frames = FakeVLLMServer().n_frames_for(orpheus.inference_prompt_ids(tokenizer, text, prefix))
    assert rate == orpheus.SAMPLE_RATE and len(samples) == n_frames * orpheus.SAMPLES_PER_FRAME


def served_models(replica_: Replica) -> list[str]:
    return [m["id"] for m in httpx.get(f"{replica_.url}/v1/models").json()["data"]]


@pytest.fixture
def voices_dir(tmp_path, tiny_orpheus_dir) -> Path:
    root = tmp_path / "voices"
    write_voice_folder(root, "alice", base_model=str(tiny_orpheus_dir))
    return root


def test_a_voice_published_after_start_up_is_served_by_every_replica_without_a_reload(
    tiny_orpheus_dir, tiny_snac_dir, tiny_tokenizer, voices_dir
):
    with scaled_out(tiny_orpheus_dir, tiny_snac_dir, voices_dir) as (api, router, replicas):
        publish_voice(voices_dir, "carol", str(tiny_orpheus_dir))
        first, second = speak(api, "carol"), speak(api, "carol", "And again.")
        assert_whole_speech(first, tiny_tokenizer, "Hello there.", "carol: ")
        assert_whole_speech(second, tiny_tokenizer, "And again.", "carol: ")
        assert sorted(router.replicas_for("/v1/completions")) == [0, 1]  # one request on each replica
        assert all("carol" in served_models(r) for r in replicas)  # each resolved voices/carol itself
        assert router.replicas_for("/v1/load_lora_adapter") == []  # no load call, at start-up or since
        listed = httpx.get(f"{api}/v1/audio/voices").json()["voices"]
        assert [v["id"] for v in listed] == ["alice", "carol"]


def test_a_voice_the_resolver_refuses_is_an_engine_error_saying_what_to_fix(
    tiny_orpheus_dir, tiny_snac_dir, voices_dir
):
    # The same weights spelt another way: the API accepts it, vLLM's resolver compares exact strings.
    other_spelling = os.path.relpath(tiny_orpheus_dir)
    with scaled_out(tiny_orpheus_dir, tiny_snac_dir, voices_dir) as (api, _router, replicas):
        write_voice_folder(voices_dir, "dave", base_model=other_spelling)
        response = speak(api, "dave")
        # The API lists the voice, so this is the deployment's fault, not the client's: a 5xx, with the fix.
        assert response.status_code == 502
        error = response.json()["error"]
        assert error["code"] == "engine_lost_voice" and "base_model_name_or_path" in error["message"]
        assert all("dave" not in served_models(r) for r in replicas)


def sse_events(response: httpx.Response) -> Iterator[dict]:
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield json.loads(line[len("data: ") :])


def test_a_replica_killed_mid_stream_ends_that_stream_with_an_error_and_the_other_keeps_serving(
    tiny_orpheus_dir, tiny_snac_dir, tiny_tokenizer, voices_dir
):
    body = {"model": "orpheus", "voice": "alice", "input": LONG_TEXT, "stream_format": "sse"}
    body["response_format"] = "pcm"
    slow = SLOW_CHUNK_S
    with scaled_out(tiny_orpheus_dir, tiny_snac_dir, voices_dir, token_delay=slow) as (api, router, replicas):
        with httpx.stream("POST", f"{api}/v1/audio/speech", json=body, timeout=60) as response:
            assert response.status_code == 200
            events = sse_events(response)
            first = next(events)
            assert first["type"] == "speech.audio.delta" and base64.b64decode(first["audio"])
            victim = router.replicas_for("/v1/completions")[-1]
            replicas[victim].kill()
            rest = list(events)
        assert len(router.replicas_for("/v1/completions")) == 1  # the text was one piece, one completion
        assert rest[-1]["type"] == "error"
        assert rest[-1]["error"]["code"] == "engine_unavailable"
        assert all(e["type"] != "speech.audio.done" for e in rest)

        for _ in range(3):
            assert_whole_speech(speak(api, "alice", "Hi."), tiny_tokenizer, "Hi.", "alice: ")
        survivor = 1 - victim
        assert router.replicas_for("/v1/completions")[-3:] == [survivor] * 3
        assert httpx.get(f"{api}/health").status_code == 200


class LoadCallsForbidden:
    """An engine that fails the test if the registry sends it a load or unload."""

    async def load_voice(self, voice):
        raise AssertionError(f"load_voice({voice.name}) sent although vLLM resolves adapters itself")

    async def unload_voice(self, name):
        raise AssertionError(f"unload_voice({name}) sent although vLLM resolves adapters itself")


def test_resolver_registry_sends_no_load_calls_and_finds_new_folders_on_first_use(tmp_path, caplog):
    import anyio

    from voicelab.server.registry import VoiceNotFoundError, VoiceRegistry

    base = "orpheus-base"
    write_voice_folder(tmp_path, "alice", base_model=base)
    registry = VoiceRegistry(tmp_path, base_model=base, max_lora_rank=64, engine_resolves=True)
    engine = LoadCallsForbidden()
    report = anyio.run(registry.reload, engine)
    assert report.added == ["alice"] and not report.failed
    anyio.run(registry.ensure_loaded, engine, registry.get("alice"))

    publish_voice(tmp_path, "carol", base)
    assert registry.get("carol").voice.prompt_prefix == "carol: "
    assert registry.names() == ["alice", "carol"]

    write_voice_folder(tmp_path, "wide", base_model=base, rank=128)  # above max_lora_rank: not served
    for name in ("wide", "nobody", "../alice", ".staging-carol-1"):
        with pytest.raises(VoiceNotFoundError):
            registry.get(name)
    assert "rank" in caplog.text and "wide" in caplog.text

    (tmp_path / "alice" / "adapter_config.json").unlink()  # removed: the next rescan drops it, no unload
    report = anyio.run(registry.reload, engine)
    assert report.removed == ["alice"] and registry.names() == ["carol"]
