"""The production engine: a vLLM OpenAI-compatible server, the base model plus each voice as a LoRA adapter.

One shared ``httpx.AsyncClient`` (connection pool) for all requests. vLLM behaviour this relies on:
prompts are sent as token ids, ``max_tokens`` is always explicit (vLLM's
default is 16), errors may arrive after the 200 header as an SSE ``data: {"error": ...}`` event, and
generated ids come back as ``token_ids`` (newer vLLM, ``return_token_ids``) or as ``<custom_token_N>`` text.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any

import httpx

from voicelab import orpheus
from voicelab.engine.base import (
    EngineRequestError,
    EngineUnavailableError,
    SamplingParams,
    TokenChunk,
    UnknownVoiceError,
    Voice,
)
from voicelab.voice import ADAPTER_CONFIG_FILE

logger = logging.getLogger(__name__)

_SSE_DATA = "data:"
_SSE_DONE = "[DONE]"


def completion_body(model: str, prompt_ids: list[int], params: SamplingParams) -> dict[str, Any]:
    """The ``/v1/completions`` request body for one generation (pure; the tests pin its fields).

    ``max_tokens`` falls back to a generous budget when the caller gave none: the prompt's text cannot be
    recovered from ids here, so the budget is derived from the prompt length
    (``orpheus.max_new_tokens_for_prompt``), never vLLM's default 16.
    """
    max_tokens = params.max_tokens
    if max_tokens is None:
        max_tokens = orpheus.max_new_tokens_for_prompt(prompt_ids)
    body: dict[str, Any] = {
        "model": model,
        "prompt": list(prompt_ids),
        "stream": True,
        "max_tokens": int(max_tokens),
        "temperature": params.temperature,
        "top_p": params.top_p,
        "repetition_penalty": params.repetition_penalty,
        "stop_token_ids": list(params.stop_token_ids),
        # Orpheus' audio tokens are added special tokens: keep them in the text for older vLLM.
        "skip_special_tokens": False,
        "return_token_ids": True,
    }
    if params.seed is not None:
        body["seed"] = params.seed
    return body


def _error_message(response_body: bytes | str | dict) -> str:
    """The ``message`` of an OpenAI-style error (``{"error": {...}}`` or a flat ``{"object": "error"}``)."""
    data = response_body
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            text = data.decode(errors="replace") if isinstance(data, bytes) else data
            return text.strip()[:500] or "(empty body)"
    if isinstance(data, dict):
        inner = data.get("error", data)
        if isinstance(inner, dict):
            return str(inner.get("message") or inner)
        return str(inner)
    return str(data)


SSE_CONTENT_TYPE = "text/event-stream"


class VLLMEngine:
    """``TokenEngine`` over HTTP to vLLM. ``base_url`` like ``http://127.0.0.1:8000`` (no ``/v1``).

    ``client``: an ``httpx.AsyncClient`` to share (tests pass one); otherwise one is created and closed by
    ``aclose``. ``timeout`` bounds connecting and each read (seconds), not a whole generation.
    ``base_model``: the name vLLM serves the base under, used for voices without an adapter.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        client: httpx.AsyncClient | None = None,
        base_model: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.base_model = base_model
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout))
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def _model_for(self, voice: Voice) -> str:
        if voice.adapter_path is not None:
            return voice.name
        return self.base_model or voice.name

    async def generate(
        self, voice: Voice, prompt_ids: list[int], params: SamplingParams
    ) -> AsyncIterator[TokenChunk]:
        """Stream the generation; closing this iterator closes the HTTP stream, which makes vLLM abort it."""
        body = completion_body(self._model_for(voice), prompt_ids, params)
        url = f"{self.base_url}/v1/completions"
        try:
            async with self._client.stream("POST", url, json=body, headers=self._headers) as response:
                if response.status_code != 200:
                    await self._raise_for_status(response, voice)
                content_type = response.headers.get("content-type", "")
                if not content_type.startswith(SSE_CONTENT_TYPE):
                    raise EngineRequestError(
                        f"{self.base_url} answered a streaming completion with {content_type or 'no content type'}"
                        f", not {SSE_CONTENT_TYPE}: is VOICELAB_VLLM_URL the address of vLLM?",
                        status_code=HTTPStatus.BAD_GATEWAY,
                    )
                async for line in response.aiter_lines():
                    chunk = self._parse_event(line, voice)
                    if chunk is _DONE:
                        return
                    if chunk is not None:
                        yield chunk
        except httpx.TimeoutException as e:
            raise EngineUnavailableError(
                f"vLLM at {self.base_url} did not answer in time ({type(e).__name__}); "
                "check that it is running and not overloaded"
            ) from e
        except httpx.TransportError as e:
            raise EngineUnavailableError(
                f"cannot reach vLLM at {self.base_url} ({type(e).__name__}: {e}); start it or fix the URL"
            ) from e

    def _parse_event(self, line: str, voice: Voice) -> TokenChunk | object | None:
        if not line.startswith(_SSE_DATA):
            return None  # blank separators, comments, other SSE fields
        data = line[len(_SSE_DATA) :].strip()
        if data == _SSE_DONE:
            return _DONE
        try:
            event = json.loads(data)
        except json.JSONDecodeError as e:
            raise EngineRequestError(f"vLLM sent an unreadable stream event: {data[:200]!r}") from e
        if not isinstance(event, dict):
            raise EngineRequestError(f"vLLM sent an unexpected stream event: {data[:200]!r}")
        if "error" in event or event.get("object") == "error":
            raise EngineRequestError(
                f"vLLM failed while generating for voice {voice.name!r}: {_error_message(event)}"
            )
        choices = event.get("choices") or []
        if not choices:
            return None  # e.g. a usage-only chunk
        choice = choices[0]
        ids = choice.get("token_ids")
        finish = choice.get("finish_reason")
        if ids is not None:
            if not (isinstance(ids, list) and all(isinstance(t, int) for t in ids)):
                raise EngineRequestError(f"vLLM sent malformed token_ids: {str(ids)[:200]}")
            return TokenChunk(ids=tuple(ids), finish_reason=finish)
        return TokenChunk(text=choice.get("text") or "", finish_reason=finish)

    async def _raise_for_status(self, response: httpx.Response, voice: Voice) -> None:
        message = _error_message(await response.aread())
        if response.status_code == 404:
            raise UnknownVoiceError(
                f"vLLM does not serve voice {voice.name!r} ({message}); load its adapter first, or with "
                "the LoRA resolver check that the folder is in vLLM's voices folder and that its "
                f"{ADAPTER_CONFIG_FILE} base_model_name_or_path is the model vLLM serves"
            )
        raise EngineRequestError(
            f"vLLM answered {response.status_code} for voice {voice.name!r}: {message}",
            status_code=response.status_code,
        )

    async def health(self) -> bool:
        try:
            response = await self._client.get(f"{self.base_url}/health", headers=self._headers)
        except httpx.HTTPError as e:
            logger.warning("vLLM health check at %s failed: %s", self.base_url, e)
            return False
        return response.status_code == 200

    async def list_models(self) -> list[dict]:
        """``GET /v1/models``: the base (``parent`` None) and each loaded adapter."""
        response = await self._request("GET", "/v1/models")
        return response.json().get("data", [])

    async def load_voice(self, voice: Voice) -> None:
        """Runtime-load the voice's adapter (vLLM needs ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``).

        Loading a name vLLM already has is not an error. The path must be readable by the vLLM process.
        """
        if voice.adapter_path is None:
            return
        body = {"lora_name": voice.name, "lora_path": str(voice.adapter_path)}
        response = await self._request("POST", "/v1/load_lora_adapter", json=body, check=False)
        if response.status_code == 200:
            logger.info("vLLM loaded adapter %s from %s", voice.name, voice.adapter_path)
            return
        message = _error_message(response.content)
        if response.status_code == 400 and "already" in message.lower():
            return
        raise EngineRequestError(
            f"vLLM could not load voice {voice.name!r} from {voice.adapter_path}: {message} "
            "(is runtime LoRA loading enabled, is the rank within --max-lora-rank, is the path visible "
            "to the vLLM process?)",
            status_code=response.status_code,
        )

    async def unload_voice(self, name: str) -> None:
        response = await self._request(
            "POST", "/v1/unload_lora_adapter", json={"lora_name": name}, check=False
        )
        if response.status_code == 200:
            return
        message = _error_message(response.content)
        if response.status_code == 404:
            raise UnknownVoiceError(f"vLLM has no adapter named {name!r}: {message}")
        raise EngineRequestError(
            f"vLLM could not unload {name!r}: {message}", status_code=response.status_code
        )

    async def _request(self, method: str, path: str, *, check: bool = True, **kwargs) -> httpx.Response:
        try:
            response = await self._client.request(
                method, f"{self.base_url}{path}", headers=self._headers, **kwargs
            )
        except httpx.TimeoutException as e:
            raise EngineUnavailableError(f"vLLM at {self.base_url} did not answer {path} in time") from e
        except httpx.TransportError as e:
            raise EngineUnavailableError(
                f"cannot reach vLLM at {self.base_url} ({e}); start it or fix the URL"
            ) from e
        if check and response.status_code != 200:
            raise EngineRequestError(
                f"vLLM answered {response.status_code} to {path}: {_error_message(response.content)}",
                status_code=response.status_code,
            )
        return response

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


_DONE = object()
