"""A real local HTTP server that answers like vLLM's OpenAI-compatible API, for offline tests.

Usage::

    with FakeVLLMServer(base_model="orpheus-base", adapters={"alice": "/voices/alice"}) as server:
        engine = VLLMEngine(server.url)            # server.url == "http://127.0.0.1:<port>"
        server.faults.append(Fault(http_status=500))  # the next /v1/completions answers 500
        ...
        server.completions[-1].disconnected         # did the client hang up mid-stream?

Endpoints (behaviour follows vLLM's documentation of its OpenAI-compatible server):

* ``POST /v1/completions`` with ``stream: true``: SSE ``data: {json}`` lines, then ``data: [DONE]``.
  ``prompt`` must be a list of token ids. The generated audio tokens are a deterministic function of the
  prompt (``audio_tokens_for_prompt``): valid Orpheus audio tokens, ``frames_per_prompt`` frames (default
  ``4 + len(prompt) // 2``, so longer text gives longer audio), codes 0 and 4095 included. The end-of-speech
  token is a stop token, so like vLLM it is not returned: the last chunk carries ``finish_reason: "stop"``.
  If ``max_tokens`` runs out first, ``finish_reason: "length"``. Without ``max_tokens`` vLLM's default 16
  applies. When the request sets ``return_token_ids`` (and ``supports_token_ids`` is True) each chunk
  carries ``token_ids``; the ``text`` is always the ``<custom_token_N>`` spelling. ``tokens_per_chunk``
  tokens go in each chunk; ``token_delay`` seconds pass between chunks.
* ``GET /v1/models``: the base (``parent`` None) and each loaded adapter (``root`` = path, ``parent`` = base).
* ``GET /health``: 200 with an empty body (503 when ``healthy`` is False).
* ``POST /v1/load_lora_adapter`` ``{"lora_name", "lora_path"}``: 200 plain text; JSON 400 when the name is
  already loaded or the folder has no ``adapter_config.json``; JSON 404 when the folder does not exist.
  ``POST /v1/unload_lora_adapter`` ``{"lora_name"}``: 200 plain text, or JSON 404 when not loaded.
* A completion for a model that is neither the base nor a loaded adapter: 404 JSON error, unless
  ``lora_resolver_dir`` is set: then, like vLLM's filesystem LoRA resolver plugin
  (``VLLM_PLUGINS=lora_filesystem_resolver``, ``VLLM_LORA_RESOLVER_CACHE_DIR``), the folder
  ``<dir>/<model>/`` is loaded on this first request when its ``adapter_config.json`` says ``peft_type``
  LORA and ``base_model_name_or_path`` equals the base model exactly; it is then listed by ``/v1/models``.
* ``api_key``: when set, ``/v1/*`` needs ``Authorization: Bearer <key>`` (401 otherwise), as vLLM.

Faults: append ``Fault`` objects to ``server.faults``; each ``/v1/completions`` request takes the first one.

Records: ``server.requests`` (every request: method, path, JSON body) and ``server.completions`` (one
``CompletionRecord`` per streaming completion: body, tokens sent, whether it finished, and whether the
client disconnected before the end).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from voicelab import orpheus
from voicelab.voice import ADAPTER_CONFIG_FILE, VoiceFolder

VLLM_DEFAULT_MAX_TOKENS = 16  # what vLLM uses when a request omits max_tokens
MALFORMED_TOKEN_ID = 9906  # a Llama-3 text token ("Hello"): not an audio token
MALFORMED_TEXT = "Hello"


@dataclass
class Fault:
    """One scripted misbehaviour for the next completion request (set exactly one field)."""

    http_status: int | None = None
    """Answer with this HTTP status and an OpenAI-style ``{"error": {...}}`` body."""
    error_after: int | None = None
    """Send this many tokens, then an SSE ``data: {"error": {...}}`` event (after the 200 header)."""
    cut_after: int | None = None
    """Send this many tokens, then ``[DONE]`` without end of speech or a finish reason."""
    malformed_after: int | None = None
    """Send this many tokens, then a token that is not an audio token (a text-vocabulary id)."""
    message: str = "scripted failure"


@dataclass
class RecordedRequest:
    method: str
    path: str
    body: Any
    headers: dict[str, str]


@dataclass
class CompletionRecord:
    body: dict
    tokens_sent: int = 0
    finished: bool = False
    disconnected: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    """Set when the server stops handling this stream (finished, failed or disconnected)."""


def audio_tokens_for_prompt(prompt: list[int], n_frames: int) -> list[int]:
    """Deterministic valid Orpheus audio tokens for a prompt: ``n_frames`` frames, codes 0 and 4095 included."""
    rng = np.random.default_rng(sum((i + 1) * int(t) for i, t in enumerate(prompt)) % (2**32))
    frames = rng.integers(0, orpheus.CODEBOOK_SIZE, (n_frames, orpheus.CODES_PER_FRAME))
    if n_frames:
        frames[0, 0] = 0  # the public reference mishandles code 0: make sure every test meets it
        frames[-1, -1] = orpheus.CODEBOOK_SIZE - 1
    return orpheus.frames_to_tokens(frames).tolist()


def _error_body(message: str, err_type: str, code: int) -> dict:
    return {"error": {"message": message, "type": err_type, "param": None, "code": code}}


class FakeVLLMServer:
    """See the module docstring. A context manager; the server runs in a background thread."""

    def __init__(
        self,
        *,
        base_model: str = "orpheus-base",
        adapters: dict[str, str] | None = None,
        frames_per_prompt: int | None = None,
        tokens_per_chunk: int = 1,
        token_delay: float = 0.0,
        supports_token_ids: bool = True,
        api_key: str | None = None,
        lora_resolver_dir: str | Path | None = None,
    ) -> None:
        self.base_model = base_model
        self.lora_resolver_dir = Path(lora_resolver_dir) if lora_resolver_dir is not None else None
        self.adapters: dict[str, str] = dict(adapters or {})
        self.frames_per_prompt = frames_per_prompt
        self.tokens_per_chunk = tokens_per_chunk
        self.token_delay = token_delay
        self.supports_token_ids = supports_token_ids
        self.api_key = api_key
        self.healthy = True
        self.faults: deque[Fault] = deque()
        self.requests: list[RecordedRequest] = []
        self.completions: list[CompletionRecord] = []
        self.url = ""
        self._server = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> FakeVLLMServer:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(self._app(), log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="fake-vllm", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10  # start-up of a local server, not a test time limit
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("fake vLLM server did not start")
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeVLLMServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- behaviour -------------------------------------------------------------------------------------
    def n_frames_for(self, prompt: list[int]) -> int:
        if self.frames_per_prompt is not None:
            return self.frames_per_prompt
        return 4 + len(prompt) // 2

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/health", self._health, methods=["GET"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/v1/load_lora_adapter", self._load_adapter, methods=["POST"]),
                Route("/v1/unload_lora_adapter", self._unload_adapter, methods=["POST"]),
                Route("/v1/completions", self._completions, methods=["POST"]),
            ]
        )

    async def _record(self, request: Request) -> Any:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw.decode(errors="replace")
        self.requests.append(RecordedRequest(request.method, request.url.path, body, dict(request.headers)))
        return body

    def _unauthorized(self, request: Request) -> Response | None:
        if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse(_error_body("Unauthorized", "Unauthorized", 401), status_code=401)
        return None

    async def _health(self, request: Request) -> Response:
        await self._record(request)
        return Response(status_code=200 if self.healthy else 503)

    async def _models(self, request: Request) -> Response:
        await self._record(request)
        if denied := self._unauthorized(request):
            return denied
        data = [{"id": self.base_model, "object": "model", "root": self.base_model, "parent": None}]
        data += [
            {"id": name, "object": "model", "root": path, "parent": self.base_model}
            for name, path in self.adapters.items()
        ]
        return JSONResponse({"object": "list", "data": data})

    async def _load_adapter(self, request: Request) -> Response:
        body = await self._record(request)
        if denied := self._unauthorized(request):
            return denied
        name, path = (body or {}).get("lora_name"), (body or {}).get("lora_path")
        if not name or not path:
            return JSONResponse(
                _error_body("lora_name and lora_path are required", "BadRequestError", 400), 400
            )
        if name in self.adapters:
            msg = f"The lora adapter '{name}' has already been loaded."
            return JSONResponse(_error_body(msg, "InvalidUserInput", 400), 400)
        if not Path(path).exists():
            msg = f"Loading lora {name} failed: No adapter found for {path}"
            return JSONResponse(_error_body(msg, "NotFoundError", 404), 404)
        if not VoiceFolder(path).has_adapter():
            msg = f"Loading lora {name} failed: invalid adapter at {path} (no {ADAPTER_CONFIG_FILE})"
            return JSONResponse(_error_body(msg, "BadRequestError", 400), 400)
        self.adapters[name] = str(path)
        return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")

    async def _unload_adapter(self, request: Request) -> Response:
        body = await self._record(request)
        if denied := self._unauthorized(request):
            return denied
        name = (body or {}).get("lora_name")
        if name not in self.adapters:
            msg = f"The lora adapter '{name}' cannot be found."
            return JSONResponse(_error_body(msg, "NotFoundError", 404), 404)
        del self.adapters[name]
        return PlainTextResponse(f"Success: LoRA adapter '{name}' removed successfully.")

    async def _completions(self, request: Request) -> Response:
        body = await self._record(request)
        if denied := self._unauthorized(request):
            return denied
        fault = self.faults.popleft() if self.faults else Fault()
        if fault.http_status is not None:
            return JSONResponse(
                _error_body(fault.message, "InternalServerError", fault.http_status), fault.http_status
            )
        if not isinstance(body, dict):
            return JSONResponse(_error_body("body must be a JSON object", "BadRequestError", 400), 400)
        model = body.get("model")
        if model != self.base_model and model not in self.adapters and not self._resolve(model):
            msg = f"The model `{model}` does not exist. Valid aliases: {self.base_model}."
            return JSONResponse(_error_body(msg, "NotFoundError", 404), 404)
        prompt = body.get("prompt")
        if not (isinstance(prompt, list) and all(isinstance(t, int) for t in prompt)):
            msg = "this fake expects prompt as a list of token ids"
            return JSONResponse(_error_body(msg, "BadRequestError", 400), 400)
        record_ = CompletionRecord(body=body)
        self.completions.append(record_)
        return StreamingResponse(self._events(body, prompt, fault, record_), media_type="text/event-stream")

    def _resolve(self, model: Any) -> bool:
        """vLLM's filesystem resolver: load ``<dir>/<model>`` if it is a LoRA of this exact base model."""
        if self.lora_resolver_dir is None or not isinstance(model, str) or not model:
            return False
        path = self.lora_resolver_dir / model
        try:
            config = VoiceFolder(path).read_adapter_config()
        except (OSError, json.JSONDecodeError):
            return False
        if config.get("peft_type") != "LORA" or config.get("base_model_name_or_path") != self.base_model:
            return False
        self.adapters[model] = str(path)
        return True

    async def _events(self, body: dict, prompt: list[int], fault: Fault, record: CompletionRecord):
        audio = audio_tokens_for_prompt(prompt, self.n_frames_for(prompt))
        max_tokens = body.get("max_tokens") or VLLM_DEFAULT_MAX_TOKENS
        finish = "stop"
        if len(audio) + 1 > max_tokens:  # the end of speech would be token number len(audio) + 1
            audio, finish = audio[:max_tokens], "length"
        stop_after = None
        for limit in (fault.error_after, fault.cut_after, fault.malformed_after):
            if limit is not None:
                stop_after = limit
                audio = audio[:limit]
        want_ids = bool(body.get("return_token_ids")) and self.supports_token_ids
        request_id = f"cmpl-{len(self.completions)}"

        def chunk(tokens: list[int], finish_reason: str | None, text: str | None = None) -> str:
            choice: dict[str, Any] = {
                "index": 0,
                "text": "".join(orpheus.token_spelling(t) for t in tokens) if text is None else text,
                "logprobs": None,
                "finish_reason": finish_reason,
            }
            if want_ids:
                choice["token_ids"] = tokens
            event = {
                "id": request_id,
                "object": "text_completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [choice],
            }
            return f"data: {json.dumps(event)}\n\n"

        try:
            step = max(1, self.tokens_per_chunk)
            for i in range(0, len(audio), step):
                if self.token_delay:
                    await asyncio.sleep(self.token_delay)
                part = audio[i : i + step]
                last = i + step >= len(audio) and stop_after is None
                yield chunk(part, finish if last else None)
                record.tokens_sent += len(part)
            if not audio and stop_after is None:
                yield chunk([], finish)
            if fault.error_after is not None:
                yield f"data: {json.dumps(_error_body(fault.message, 'InternalServerError', 500))}\n\n"
            elif fault.malformed_after is not None:
                yield chunk([MALFORMED_TOKEN_ID], None, text=MALFORMED_TEXT)  # text where audio belongs
            yield "data: [DONE]\n\n"
            record.finished = True
        except (asyncio.CancelledError, GeneratorExit):
            record.disconnected = True
            raise
        finally:
            if not record.finished:
                record.disconnected = True
            record.done.set()
