"""The embedded engine: transformers + peft in this process (machines without vLLM, and tests).

The base model is loaded once, at construction (so a bad path fails at start-up, not on the first
request). Each voice's LoRA adapter is loaded on first use and kept: several adapters share one base
through peft's ``load_adapter``/``set_adapter``. The active adapter is global state of the model, so
generations run one at a time under a lock, each in a worker thread that streams ids back to the event
loop as they are sampled. Sampling follows vLLM's: repetition penalty over prompt and output, then
temperature, then top-p; generation stops at ``params.stop_token_ids`` (not returned, as in vLLM) or at
``max_tokens``.

``constrain_audio=True`` (the default) masks, at every step, all ids but the audio tokens valid at that
frame position (and the stop ids at frame boundaries): a trained voice loses nothing, and an undertrained
or random model still produces decodable audio instead of a contract error.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from voicelab import models, orpheus
from voicelab.engine.base import (
    EngineError,
    EngineRequestError,
    SamplingParams,
    TokenChunk,
    UnknownVoiceError,
    Voice,
)
from voicelab.voice import ADAPTER_CONFIG_FILE, VoiceFolder

logger = logging.getLogger(__name__)

_END = object()


class LocalEngine:
    """``TokenEngine`` running the Orpheus base model (+ LoRA adapters) with transformers and peft.

    ``base_model``: hub id or folder, loaded (tokenizer and model) with ``voicelab.models``, which raises
    ``ModelLoadError`` for one that is not Orpheus. ``dtype``: a torch dtype (or its name, e.g.
    ``"bfloat16"``); None keeps float32 on CPU and picks bfloat16 on GPUs that have it. ``tokenizer``: the
    base model's checked tokenizer, for whoever builds this engine's prompts.
    """

    def __init__(
        self,
        base_model: str | Path,
        *,
        device: str = "cpu",
        dtype=None,
        constrain_audio: bool = True,
    ) -> None:
        import torch

        self.device = torch.device(device)
        dtype = models.resolve_dtype(dtype, str(self.device))
        # the prompts this engine is given are built with the base model's tokenizer: check its contract
        # here too, so an engine built outside the server refuses a non-Orpheus checkpoint as well
        self.tokenizer = models.load_tokenizer(base_model)
        self.model = models.load_base_model(base_model, dtype=dtype, device=str(self.device)).eval()
        # transformers 5 renamed past_key_values -> cache and num_logits_to_keep -> logits_to_keep.
        forward_args = inspect.signature(self.model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in forward_args else "past_key_values"
        self._logits_kwarg = "logits_to_keep" if "logits_to_keep" in forward_args else "num_logits_to_keep"
        self.base_model = str(base_model)
        self.constrain_audio = constrain_audio
        self._peft = None  # PeftModel wrapping self.model once the first adapter is loaded
        self._adapters: dict[str, str] = {}
        self._lock = threading.Lock()  # active adapter and the model's compute are shared state
        self._closed = False
        logger.info("local engine: %s loaded on %s (%s)", base_model, self.device, dtype)

    # --- voices ------------------------------------------------------------------------------------------
    async def load_voice(self, voice: Voice) -> None:
        if voice.adapter_path is None:
            return
        await asyncio.to_thread(self._load_adapter, voice.name, Path(voice.adapter_path))

    def _load_adapter(self, name: str, path: Path) -> None:
        from peft import PeftModel

        with self._lock:
            if self._adapters.get(name) == str(path):
                return
            if not VoiceFolder(path).has_adapter():
                raise EngineRequestError(
                    f"voice {name!r}: no {ADAPTER_CONFIG_FILE} in {path}; train the voice or fix its folder",
                    status_code=404,
                )
            try:
                if self._peft is None:
                    self._peft = PeftModel.from_pretrained(self.model, str(path), adapter_name=name)
                    self._peft.eval()
                else:
                    if name in self._adapters:
                        self._peft.delete_adapter(name)
                    self._peft.load_adapter(str(path), adapter_name=name)
            except (OSError, ValueError, RuntimeError, KeyError) as e:
                raise EngineRequestError(f"voice {name!r}: could not load the adapter in {path}: {e}") from e
            self._adapters[name] = str(path)
            logger.info("local engine: adapter %s loaded from %s", name, path)

    async def unload_voice(self, name: str) -> None:
        await asyncio.to_thread(self._unload_adapter, name)

    def _unload_adapter(self, name: str) -> None:
        with self._lock:
            if name not in self._adapters:
                raise UnknownVoiceError(
                    f"no adapter named {name!r} is loaded (loaded: {sorted(self._adapters)})"
                )
            remaining = [n for n in self._adapters if n != name]
            if remaining:
                self._peft.set_adapter(remaining[0])  # peft refuses to delete the active adapter
                self._peft.delete_adapter(name)
            else:  # last adapter: take LoRA out of the base entirely
                self.model = self._peft.unload()
                self._peft = None
            del self._adapters[name]

    @property
    def loaded_voices(self) -> list[str]:
        return sorted(self._adapters)

    # --- generation ----------------------------------------------------------------------------------------
    async def generate(
        self, voice: Voice, prompt_ids: list[int], params: SamplingParams
    ) -> AsyncIterator[TokenChunk]:
        """Yield one ``TokenChunk`` per sampled id, then a last empty chunk with the finish reason."""
        if self._closed:
            raise EngineError("the local engine is closed")
        if voice.adapter_path is not None and self._adapters.get(voice.name) != str(voice.adapter_path):
            await self.load_voice(voice)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()

        def emit(item) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the event loop is gone (shutdown): nobody is listening any more
                cancel.set()

        def work() -> None:
            try:
                self._generate_sync(voice, list(prompt_ids), params, emit, cancel)
            except BaseException as e:  # handed to the consumer, re-raised there
                emit(e)
            finally:
                emit(_END)

        worker = threading.Thread(target=work, name=f"local-gen-{voice.name}", daemon=True)
        worker.start()
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise EngineRequestError(
                        f"local generation for voice {voice.name!r} failed: {item}"
                    ) from item
                yield item
        finally:
            cancel.set()  # a consumer that stops listening stops the sampling loop at the next token

    def _generate_sync(
        self, voice: Voice, prompt_ids: list[int], params: SamplingParams, emit, cancel
    ) -> None:
        import torch
        from transformers import DynamicCache

        max_tokens = params.max_tokens or orpheus.max_new_tokens_for_prompt(prompt_ids)
        stop_ids = set(params.stop_token_ids)
        with self._lock, torch.inference_mode(), self._voice_context(voice) as model:
            generator = torch.Generator(device=self.device)
            if params.seed is not None:
                generator.manual_seed(params.seed)
            else:
                generator.seed()
            seen = torch.zeros(orpheus.VOCAB_SIZE, dtype=torch.bool, device=self.device)
            seen[torch.tensor(prompt_ids, device=self.device)] = True
            input_ids = torch.tensor([prompt_ids], device=self.device)
            cache = DynamicCache()  # filled in place by every forward call
            step_kwargs = {self._cache_kwarg: cache, "use_cache": True, self._logits_kwarg: 1}
            finish = "length"
            for step in range(max_tokens):
                if cancel.is_set():
                    finish = None
                    break
                logits = model(input_ids=input_ids, **step_kwargs).logits[0, -1].float()
                token = self._sample(logits, seen, step, stop_ids, params, generator)
                if token in stop_ids:
                    finish = "stop"
                    break
                seen[token] = True
                emit(TokenChunk(ids=(token,)))
                input_ids = torch.tensor([[token]], device=self.device)
            if cancel.is_set():
                finish = None
            emit(TokenChunk(ids=(), finish_reason=finish))

    def _sample(self, logits, seen, step: int, stop_ids: set[int], params: SamplingParams, generator) -> int:
        """One id from ``(VOCAB_SIZE,)`` float32 logits: penalty, temperature, top-p, as vLLM does."""
        import torch

        if self.constrain_audio:
            # Sample among the ids allowed at this frame position only: same distribution as masking the
            # rest to -inf, and ~40x less work than sorting the whole 156,940-wide vocabulary.
            position = step % orpheus.CODES_PER_FRAME
            allowed = orpheus.audio_token_range(position)
            candidates = torch.arange(allowed.start, allowed.stop, device=logits.device)
            if position == 0 and stop_ids:
                candidates = torch.cat([candidates, torch.tensor(sorted(stop_ids), device=logits.device)])
        else:
            candidates = torch.arange(len(logits), device=logits.device)
        logits = logits[candidates]
        if params.repetition_penalty != 1.0:  # as in vLLM/HF: shrink the logits of ids already present
            present = seen[candidates]
            penal = logits[present]
            logits[present] = torch.where(
                penal > 0, penal / params.repetition_penalty, penal * params.repetition_penalty
            )
        if params.temperature <= 0:
            return int(candidates[torch.argmax(logits)])
        probs = torch.softmax(logits / params.temperature, dim=-1)
        if params.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= params.top_p
            sorted_probs[outside] = 0.0
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
        return int(candidates[torch.multinomial(probs, 1, generator=generator)])

    @contextlib.contextmanager
    def _voice_context(self, voice: Voice):
        if voice.adapter_path is None:
            if self._peft is None:
                yield self.model
            else:
                with self._peft.disable_adapter():
                    yield self._peft
            return
        if voice.name not in self._adapters:
            raise UnknownVoiceError(f"voice {voice.name!r} is not loaded (loaded: {sorted(self._adapters)})")
        self._peft.set_adapter(voice.name)
        yield self._peft

    async def health(self) -> bool:
        return not self._closed

    async def aclose(self) -> None:
        self._closed = True
