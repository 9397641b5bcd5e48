"""One evaluation, end to end: the models loaded once per run, and each voice spoken, measured, judged."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass
from typing import Any

from voicelab.evaluate.metrics import (
    dataset_speech_rate,
    dnsmos_or_none,
    finite_or_none,
    mean_of,
    measure_delivery,
    measure_intelligibility,
    measure_overfitting,
    measure_speaker,
    training_codes,
)
from voicelab.evaluate.plans import VoiceUnderTest, adapter_eval_loss, plan_texts
from voicelab.evaluate.recording import RecordingEngine, Sample, generate_all
from voicelab.evaluate.tag_check import run_tags_check, tags_summary
from voicelab.evaluate.verdicts import summarize, verdicts
from voicelab.evaluate_settings import EvalSettings

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1


@dataclass
class Runtime:
    """Models loaded once and shared by every voice evaluated in a run."""

    base_model: str
    snac_model: str
    recorder: RecordingEngine
    synthesizer: Any
    transcriber: Any
    decoder: Any

    async def aclose(self) -> None:
        await self.decoder.aclose()
        await self.recorder.engine.aclose()


async def open_runtime(settings: EvalSettings, base_model: str, snac_model: str) -> Runtime:
    """The speech stack the server uses (``voicelab.engine.build_speech_stack``: vLLM when
    ``settings.vllm_url``, else embedded), its engine recorded, and Whisper.

    Every input is checked first (the models' sources, vLLM answering), and Whisper loads before the base
    model and SNAC: a model missing offline fails at once, not after minutes of loading the others.
    Raises ``EngineUnavailableError`` when vLLM does not answer its health check.
    """
    from voicelab import transcribe as tr
    from voicelab.engine import StackSettings, build_speech_stack, require_vllm
    from voicelab.models import check_base_model_source, check_snac_source

    check_base_model_source(base_model)
    check_snac_source(snac_model)
    if settings.vllm_url:
        await require_vllm(settings.vllm_url, base_model=base_model)
    options = tr.DecodeOptions(
        language=tr.normalize_language(settings.language), beam_size=1, temperatures=(0.0,)
    )
    transcriber = await asyncio.to_thread(
        tr.load_transcriber,
        settings.whisper_backend,
        settings.whisper_model,
        device=settings.device,
        options=options,
        flag="--whisper-model",
    )
    stack = await build_speech_stack(
        StackSettings(
            base_model=base_model,
            snac_model=snac_model,
            device=settings.device,
            vllm_url=settings.vllm_url,
        ),
        wrap_engine=RecordingEngine,
    )
    recorder = stack.engine  # the RecordingEngine around the stack's engine
    return Runtime(base_model, snac_model, recorder, stack.synthesizer, transcriber, stack.decoder)  # type: ignore[arg-type]


def _voices_to_speak(vut: VoiceUnderTest, base_model: str) -> dict[str, Any]:
    from voicelab.engine import Voice

    prefix = vut.metadata.prompt_prefix
    engine_name = vut.name if vut.label == vut.name else f"{vut.name}-{vut.adapter_dir.name}"
    return {
        "voice": Voice(name=engine_name, adapter_path=vut.adapter_dir, prompt_prefix=prefix),
        "base": Voice(name=base_model, adapter_path=None, prompt_prefix=prefix),
    }


async def evaluate_voice(
    vut: VoiceUnderTest, runtime: Runtime, settings: EvalSettings
) -> tuple[dict, list[Sample]]:
    """Speak, measure, judge: the report (``eval.json``'s content without the per-sample list) and samples."""
    from voicelab.engine import SamplingParams

    params = SamplingParams(
        temperature=settings.temperature,
        top_p=settings.top_p,
        repetition_penalty=settings.repetition_penalty,
        seed=settings.seed,
        max_tokens=settings.max_tokens,
    )
    items = plan_texts(vut, sentences=settings.sentences, max_heldout=settings.max_heldout)
    voices = _voices_to_speak(vut, runtime.base_model)
    samples = await generate_all(
        runtime.synthesizer, runtime.recorder, voices, items, params, progress=settings.progress
    )
    reference = measure(vut, samples, runtime, settings)
    summary = summarize(samples, reference, settings.thresholds)
    summary["eval_loss"] = adapter_eval_loss(vut)
    tag_report, tag_samples = await run_tags_check(
        runtime.synthesizer,
        runtime.recorder,
        voices["voice"],
        params,
        runtime.transcriber,
        trained=vut.metadata.tags,
        sentences=settings.tag_sentences,
        only=settings.tags,
        progress=settings.progress,
    )
    summary.update(tags_summary(tag_report))
    report = _report(vut, runtime, settings, reference, summary, tag_report)
    return finite_or_none(report), [*samples, *tag_samples]


def measure(vut: VoiceUnderTest, samples: list[Sample], runtime: Runtime, settings: EvalSettings) -> dict:
    """Fill every sample's metrics; returns what was measured on the reference clips."""
    from voicelab.training import dataset as training_rows

    voice_samples = [s for s in samples if s.model == "voice"]
    ref_audio = [training_rows.load_clip_audio(c) for c in vut.reference_clips]
    ref_texts = [c.text for c in vut.reference_clips]
    speaker = measure_speaker(samples, ref_audio)
    measure_intelligibility(voice_samples, runtime.transcriber, progress=settings.progress)
    ref_rate = dataset_speech_rate(ref_texts, ref_audio)
    measure_delivery(voice_samples, ref_rate, progress=settings.progress)
    measure_overfitting(
        voice_samples, training_codes(vut, runtime.snac_model, settings.device, progress=settings.progress)
    )
    ref_dnsmos = [dnsmos_or_none(a) for a in ref_audio]
    return {
        "source": "held-out" if vut.reference_is_heldout else "training",
        "clips": [c.key for c in vut.reference_clips],
        "self_similarity": speaker["reference_self_similarity"],
        "speech_rate": ref_rate,
        "dnsmos": {k: mean_of((d or {}).get(k) for d in ref_dnsmos) for k in ("sig", "bak", "ovrl")},
    }


def _report(
    vut: VoiceUnderTest, runtime: Runtime, settings: EvalSettings, reference: dict, summary: dict, tags
):
    """``eval.json``'s content without the per-sample list."""
    from datetime import datetime, timezone

    from voicelab import __version__

    report = {
        "schema": SCHEMA_VERSION,
        "voice": vut.label,
        "adapter": str(vut.adapter_dir),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "voicelab_version": __version__,
        "settings": settings.public(),
        "thresholds": asdict(settings.thresholds),
        "models": {
            "base_model": runtime.base_model,
            "snac_model": runtime.snac_model,
            "whisper": f"{settings.whisper_backend}:{settings.whisper_model}",
            "speaker_encoder": "Resemblyzer GE2E (voicelab.quality)",
            "naturalness": "DNSMOS P.835 (voicelab.quality)",
        },
        "dataset_dir": str(vut.dataset_dir),
        "eval_clips": vut.eval_clips,
        "reference": reference,
        "summary": summary,
        "tags": tags,
    }
    report["checks"] = verdicts(summary, settings.thresholds)
    return report
