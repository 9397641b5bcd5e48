"""Generation through the serving engine, recorded: each text spoken as a ``Sample`` (audio and codes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voicelab import orpheus
from voicelab.progress import progress_bar


@dataclass
class Sample:
    """One generated text: what was asked, what came back, and the measurements of it."""

    id: str
    kind: str  # "heldout" or "novel"
    model: str  # "voice" or "base"
    text: str
    reference_key: str | None = None
    """The held-out clip whose text this is (None for a novel sentence)."""
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)
    frames: np.ndarray = field(
        default_factory=lambda: np.zeros((0, orpheus.CODES_PER_FRAME), np.int64), repr=False
    )
    pieces: int = 0
    generated_tokens: int = 0
    hit_max_tokens: bool = False
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return len(self.audio) / orpheus.SAMPLE_RATE


class RecordingEngine:
    """Wraps a ``TokenEngine``: passes everything through and keeps the audio frames each generation
    produced, so the overfitting check compares codes, not re-encoded audio."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.frames: list[np.ndarray] = []

    async def generate(self, voice, prompt_ids, params):
        parser = orpheus.AudioTokenParser()
        collected: list[np.ndarray] = []
        try:
            async for chunk in self.engine.generate(voice, prompt_ids, params):
                if not parser.ended:
                    collected.append(
                        parser.feed_ids(chunk.ids)
                        if chunk.ids is not None
                        else parser.feed_text(chunk.text or "")
                    )
                yield chunk
        finally:
            kept = [np.asarray(f).reshape(-1, orpheus.CODES_PER_FRAME) for f in collected]
            self.frames.append(
                np.concatenate(kept) if kept else np.zeros((0, orpheus.CODES_PER_FRAME), np.int64)
            )

    def __getattr__(self, name):  # health, load_voice, unload_voice, aclose
        return getattr(self.engine, name)


async def speak(synthesizer, recorder: RecordingEngine, voice, sample: Sample, params) -> Sample:
    """Generate ``sample.text`` as ``voice``; records the audio, frames, pieces and runaway status."""
    from voicelab.engine import IncompleteGenerationError, Usage

    usage = Usage()
    recorder.frames = []
    chunks: list[np.ndarray] = []
    try:
        async for chunk in synthesizer.stream(voice, sample.text, params, usage=usage):
            chunks.append(chunk)
    except IncompleteGenerationError as e:
        sample.hit_max_tokens = e.reason == IncompleteGenerationError.LENGTH
        sample.error = str(e)
    sample.audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    sample.frames = (
        np.concatenate(recorder.frames)
        if recorder.frames
        else np.zeros((0, orpheus.CODES_PER_FRAME), np.int64)
    )
    sample.pieces = usage.pieces
    sample.generated_tokens = usage.generated_tokens
    return sample


async def generate_all(
    synthesizer, recorder, voices: dict[str, Any], items, params, *, progress=True
) -> list[Sample]:
    """Every planned text spoken by each of ``voices`` ({"voice": adapter, "base": no adapter})."""
    samples = []
    for voice in voices.values():
        await recorder.load_voice(voice)
    bar = progress_bar(
        total=len(items) * len(voices), desc="generating", unit="text", disable=None if progress else True
    )
    try:
        for model, voice in voices.items():
            for sample_id, kind, text, ref in items:
                sample = Sample(id=sample_id, kind=kind, model=model, text=text, reference_key=ref)
                samples.append(await speak(synthesizer, recorder, voice, sample, params))
                bar.update()
    finally:
        bar.close()
    return samples
