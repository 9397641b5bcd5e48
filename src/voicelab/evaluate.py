"""Evidence that a trained voice sounds like its character: the core of ``make evaluate``.

The voice speaks (a) the texts of the clips train-lora held out and (b) a fixed set of novel sentences,
through the engine the server uses (``voicelab.engine``: the Synthesizer over the embedded engine or
vLLM). The base model speaks the same texts without the adapter. Then:

* speaker similarity (``voicelab.quality`` voice prints) of the voice's and of the base model's audio to
  the held-out reference clips; the adapter must move the voice toward the character (the gain);
* intelligibility: Whisper's transcript of the generated audio against the input text (WER, CER, jiwer);
* naturalness: DNSMOS P.835 overall score;
* speech rate against the dataset's; runaways (a piece that hit max_tokens, audio far longer than the
  text needs) and long silences inside the audio;
* overfitting: for each novel sentence, the training clip whose SNAC codes it shares most of (frame
  n-grams); a high share means the voice replays a training clip instead of reading the text.

Every number lands in ``eval.json``; ``summary.md`` has one verdict per check against ``Thresholds``
(documented, overridable from the command line). Pure functions here; the model-running parts take the
loaded models as arguments. Heavy imports happen inside functions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import string
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voicelab import orpheus
from voicelab.errors import UsageError

logger = logging.getLogger(__name__)

EVAL_DIR = "eval"
EVAL_FILE = "eval.json"
SUMMARY_FILE = "summary.md"
SAMPLES_DIR = "samples"
SCHEMA_VERSION = 1

NOVEL_SENTENCES = (
    "Yes.",
    "Where did you put the keys?",
    "Well, I suppose that's one way to look at it.",
    "Oh no! The kettle's been whistling for ten minutes!",
    "Seven hundred and forty-two people signed the petition on Tuesday.",
    "I told her - twice, in fact - that the bridge would not hold; she crossed it anyway.",
    "Hmm... are you absolutely sure about that?",
    "The quick brown fox jumps over the lazy dog, and the dog doesn't even notice.",
    "Please call me back at five thirty, after the meeting, if you can.",
    "When the rain finally stopped, the whole street smelled of wet earth and cut grass, "
    "and for a moment nobody said a word.",
)
"""Never in any training set: varied length (one word to ~30), punctuation (? ! ... - ; ,), numbers said
as words, and contractions. Each fits in one generated piece (under the Synthesizer's piece budget)."""

MAX_REFERENCE_CLIPS = 20
"""Training clips used as the speaker reference when none were held out (more adds little to a centroid)."""
OVERLAP_NGRAM_FRAMES = 2
"""Code overlap counts runs of 2 whole SNAC frames (14 codes, ~0.17 s): one shared frame happens by chance
in silence, a shared pair of frames in different speech almost never does."""
SILENCE_FRAME_S = 0.020
SILENCE_RANGE_DB = 35.0
"""A silence is a run of 20 ms frames more than 35 dB below the sample's loud level (its 95th percentile
frame): the pause depth prepare-audio cuts at. Leading and trailing silence is not counted."""
SILENCE_LOUD_PERCENTILE = 95
WHISPER_SAMPLE_RATE = 16_000
_PUNCTUATION = str.maketrans({c: " " for c in string.punctuation + "“”‘’…—–"})


class EvaluationError(UsageError):
    """A voice that cannot be evaluated as asked (no such voice, its dataset moved, ...)."""


@dataclass(frozen=True)
class Thresholds:
    """The bar each check is held to; every one is a command-line flag of ``make evaluate``."""

    min_similarity: float = 0.75
    """Resemblyzer cosine to the held-out clips; the same speaker scores ~0.8-0.95, another ~0.5-0.7."""
    min_similarity_gain: float = 0.02
    """Voice minus base model similarity: below this the adapter did not move the voice."""
    max_wer: float = 0.15
    max_cer: float = 0.08
    min_dnsmos: float = 3.0
    """DNSMOS P.835 overall, 1-5: studio speech ~3.3-3.6, clean read speech above 3."""
    max_rate_deviation: float = 0.25
    """Generated words per second within +-25% of the dataset's."""
    max_duration_ratio: float = 2.0
    """A sample longer than twice what the dataset's speech rate needs for its words is a runaway."""
    max_silence_s: float = 1.0
    max_code_overlap: float = 0.5
    """Share of 2-frame code runs a novel sentence's audio and one training clip have in common (either way)."""


@dataclass
class Sample:
    """One generated text: what was asked, what came back, and the measurements of it."""

    id: str
    kind: str  # "heldout" or "novel"
    model: str  # "voice" or "base"
    text: str
    reference_clip: str | None = None
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)
    frames: np.ndarray = field(default_factory=lambda: np.zeros((0, 7), np.int64), repr=False)
    pieces: int = 0
    generated_tokens: int = 0
    hit_max_tokens: bool = False
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return len(self.audio) / orpheus.SAMPLE_RATE


# --- text and code measures (pure) -----------------------------------------------------------------
def normalize_text(text: str) -> str:
    """Lower case, punctuation to spaces, single spaces: what WER should compare (not commas)."""
    return " ".join(text.lower().translate(_PUNCTUATION).split())


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> tuple[float, float]:
    """Corpus WER and CER (jiwer) of ``hypotheses`` against ``references``, both normalised first."""
    import jiwer

    refs = [normalize_text(r) for r in references]
    hyps = [normalize_text(h) for h in hypotheses]
    if not refs or not all(refs):
        raise ValueError("WER needs non-empty reference texts")
    return float(jiwer.wer(refs, hyps)), float(jiwer.cer(refs, hyps))


def _frame_ngrams(frames: np.ndarray, n: int) -> list[tuple[int, ...]]:
    flat = [tuple(int(c) for c in row) for row in np.asarray(frames).reshape(-1, orpheus.CODES_PER_FRAME)]
    return [tuple(x for frame in flat[i : i + n] for x in frame) for i in range(len(flat) - n + 1)]


def _share_in(grams: list, other: list) -> float:
    if not grams:
        return 0.0
    present = set(other)
    return sum(g in present for g in grams) / len(grams)


def code_overlap(generated: np.ndarray, clip: np.ndarray, n: int = OVERLAP_NGRAM_FRAMES) -> float:
    """How much of one is a copy of the other (0 to 1): the larger of the share of ``generated``'s runs of
    ``n`` SNAC frames found in ``clip`` and the share of ``clip``'s found in ``generated`` (a replayed
    clip followed by more audio still counts)."""
    gen, ref = _frame_ngrams(generated, n), _frame_ngrams(clip, n)
    return max(_share_in(gen, ref), _share_in(ref, gen))


def nearest_clip(generated: np.ndarray, clips: dict[str, np.ndarray]) -> tuple[str | None, float]:
    """The training clip sharing most of ``generated``'s codes, and that share."""
    best, score = None, 0.0
    for name, frames in clips.items():
        overlap = code_overlap(generated, frames)
        if best is None or overlap > score:
            best, score = name, overlap
    return best, score


def longest_silence(audio: np.ndarray, sample_rate: int = orpheus.SAMPLE_RATE) -> float:
    """Seconds of the longest silence between the first and last sound of ``audio``."""
    frame = max(1, round(SILENCE_FRAME_S * sample_rate))
    n = len(audio) // frame
    if n == 0:
        return 0.0
    power = np.mean(np.square(audio[: n * frame].reshape(n, frame), dtype=np.float64), axis=1)
    db = 10 * np.log10(np.maximum(power, 1e-20))
    loud = db >= np.percentile(db, SILENCE_LOUD_PERCENTILE) - SILENCE_RANGE_DB
    if not loud.any():
        return 0.0
    idx = np.flatnonzero(loud)
    gaps = np.diff(idx) - 1  # quiet frames between consecutive loud ones
    return float(gaps.max(initial=0) * frame / sample_rate)


def _mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(kept)) if kept else None


def _median(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.median(kept)) if kept else None


def finite_or_none(value: Any) -> Any:
    """JSON-safe numbers: NaN and infinities become None (recursively through dicts and lists)."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- the voice and its dataset -------------------------------------------------------------------------
@dataclass
class VoiceUnderTest:
    """A voice folder (or a checkpoint of it) and what evaluation needs from its training."""

    name: str
    label: str
    """How reports name it: the voice name, or ``NAME@checkpoint-STEP``."""
    voice_dir: Path
    adapter_dir: Path
    metadata: Any  # voicelab.voice.VoiceMetadata
    dataset_dir: Path
    eval_clips: list[str]
    reference_clips: list[Any]  # training.dataset.Clip: held-out clips, else some training clips
    training_clips: list[Any]
    reference_is_heldout: bool


def load_voice_under_test(
    voices_dir: Path, name: str, *, adapter_dir: Path | None = None, dataset_dir: Path | None = None
) -> VoiceUnderTest:
    """The voice ``voices_dir/name`` (``adapter_dir``: one of its checkpoints instead) and its dataset."""
    from voicelab import dataset
    from voicelab.fileio import resolve_inside
    from voicelab.training import dataset as ds
    from voicelab.voice import ADAPTER_CONFIG_FILE, VoiceMetadata, validate_voice_name

    validate_voice_name(name)
    folder = resolve_inside(Path(voices_dir), name)
    if not (folder / ADAPTER_CONFIG_FILE).is_file():
        raise EvaluationError(f"{folder}: no trained voice here (train one with `make train-lora`)")
    try:
        meta = VoiceMetadata.read(folder)
    except ValueError as e:
        raise EvaluationError(str(e)) from e
    adapter = Path(adapter_dir) if adapter_dir is not None else folder
    if not (adapter / ADAPTER_CONFIG_FILE).is_file():
        raise EvaluationError(f"{adapter}: no {ADAPTER_CONFIG_FILE} (not a voice or checkpoint folder)")
    data = Path(dataset_dir or meta.dataset.get("dataset_dir") or "")
    transcript = data / dataset.TRANSCRIPT_FILE
    if not transcript.is_file():
        raise EvaluationError(
            f"voice {name!r}: its dataset {data} (from voice.json) has no {dataset.TRANSCRIPT_FILE}; "
            "pass --dataset-dir with the prepared folder it was trained on"
        )
    rows, _ = ds.read_training_rows(transcript, dataset.read_exclusions(data))
    clips, _ = ds.resolve_clips(data, rows)
    held = set(meta.eval_clips)
    reference = [c for c in clips if c.name in held]
    training = [c for c in clips if c.name not in held]
    if held and not reference:
        logger.warning("voice %s: its held-out clips are no longer in %s", name, data)
    label = name if adapter_dir is None else f"{name}@{adapter.name}"
    return VoiceUnderTest(
        name=name,
        label=label,
        voice_dir=folder,
        adapter_dir=adapter,
        metadata=meta,
        dataset_dir=data,
        eval_clips=sorted(held),
        reference_clips=reference or training[:MAX_REFERENCE_CLIPS],
        training_clips=training,
        reference_is_heldout=bool(reference),
    )


def plan_texts(
    vut: VoiceUnderTest, *, sentences: int, max_heldout: int
) -> list[tuple[str, str, str, str | None]]:
    """(id, kind, text, reference clip) for each text to speak: held-out clips' texts, then novel ones."""
    items = []
    if vut.reference_is_heldout:
        for clip in vut.reference_clips[:max_heldout]:
            items.append((f"heldout_{clip.name}", "heldout", clip.text, clip.name))
    for i, text in enumerate(NOVEL_SENTENCES[:sentences]):
        items.append((f"novel_{i:02d}", "novel", text, None))
    return items


# --- generation through the serving engine ----------------------------------------------------------
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
    from tqdm.auto import tqdm

    samples = []
    for voice in voices.values():
        await recorder.load_voice(voice)
    bar = tqdm(total=len(items) * len(voices), desc="generating", unit="text", disable=not progress)
    try:
        for model, voice in voices.items():
            for sample_id, kind, text, ref in items:
                sample = Sample(id=sample_id, kind=kind, model=model, text=text, reference_clip=ref)
                samples.append(await speak(synthesizer, recorder, voice, sample, params))
                bar.update()
    finally:
        bar.close()
    return samples


# --- measurements ------------------------------------------------------------------------------------
def measure_speaker(samples: Sequence[Sample], reference_audio: Sequence[np.ndarray]) -> dict[str, Any]:
    """Each sample's similarity to the reference clips' voice (their dominant speaker's centroid)."""
    from voicelab import quality

    ref_emb = quality.speaker_embeddings(list(reference_audio), orpheus.SAMPLE_RATE)
    centroid = quality.dominant_speaker(ref_emb)
    voiced = [s for s in samples if len(s.audio)]
    if voiced:
        emb = quality.speaker_embeddings([s.audio for s in voiced], orpheus.SAMPLE_RATE)
        for sample, sim in zip(voiced, quality.cosine_similarity(emb, centroid), strict=True):
            sample.metrics["speaker_similarity"] = float(sim)
    return {"reference_self_similarity": _mean(quality.cosine_similarity(ref_emb, centroid).tolist())}


def measure_intelligibility(samples: Sequence[Sample], transcriber, *, progress: bool = True) -> None:
    """Whisper's transcript of each sample, and its WER/CER against the text it was asked to say."""
    from tqdm.auto import tqdm

    from voicelab.audio import resample

    for sample in tqdm(samples, desc="transcribing", unit="sample", disable=not progress):
        heard = ""
        if len(sample.audio):
            audio16 = resample(sample.audio, orpheus.SAMPLE_RATE, WHISPER_SAMPLE_RATE).astype(np.float32)
            heard = transcriber.transcribe_batch([audio16])[0].text
        sample.metrics["transcript"] = heard.strip()
        if normalize_text(sample.text):  # a text of punctuation alone has no words to miss
            sample.metrics["wer"], sample.metrics["cer"] = error_rates([sample.text], [heard])


def dnsmos_or_none(audio: np.ndarray) -> dict[str, float] | None:
    """DNSMOS P.835 of one clip as a dict, or None for a clip without sound."""
    from voicelab import quality

    if not len(audio) or not np.any(audio):
        return None
    return asdict(quality.dnsmos(audio, orpheus.SAMPLE_RATE))


def dataset_speech_rate(texts: Sequence[str], audios: Sequence[np.ndarray]) -> float | None:
    """Median words per second of speech over the reference clips."""
    from voicelab import quality

    rates = [
        quality.speech_rate(t, quality.speech_seconds(a, orpheus.SAMPLE_RATE))
        for t, a in zip(texts, audios, strict=True)
    ]
    return _median(rates)


def measure_delivery(
    samples: Sequence[Sample], reference_rate: float | None, *, progress: bool = True
) -> None:
    """Per sample: DNSMOS, speech rate, length against what the text needs, longest inner silence."""
    from tqdm.auto import tqdm

    from voicelab import quality

    for sample in tqdm(samples, desc="scoring", unit="sample", disable=not progress):
        speech = quality.speech_seconds(sample.audio, orpheus.SAMPLE_RATE) if len(sample.audio) else 0.0
        words = len(sample.text.split())
        expected = words / reference_rate if reference_rate else None
        sample.metrics.update(
            seconds=sample.seconds,
            speech_seconds=speech,
            speech_rate=quality.speech_rate(sample.text, speech),
            duration_ratio=sample.seconds / expected if expected else None,
            longest_silence_s=longest_silence(sample.audio),
            dnsmos=dnsmos_or_none(sample.audio),
        )


def measure_overfitting(samples: Sequence[Sample], training_codes: dict[str, np.ndarray]) -> None:
    """For each novel sentence, the training clip whose codes it shares most of."""
    for sample in samples:
        if sample.kind != "novel":
            continue
        name, overlap = nearest_clip(sample.frames, training_codes) if training_codes else (None, None)
        sample.metrics.update(nearest_training_clip=name, code_overlap=overlap)


def training_codes(vut: VoiceUnderTest, snac_model: str, device: str, *, progress: bool = True) -> dict:
    """SNAC frames of every training clip, from the dataset's code cache when train-lora filled it (the
    codec is loaded only for clips the cache lacks)."""
    from voicelab import dataset, models
    from voicelab.training import dataset as ds
    from voicelab.training import snac_codec

    def load():
        return models.load_snac(snac_model, device)

    snac, fingerprint = None, snac_codec.checkpoint_fingerprint(snac_model)
    if fingerprint is None:  # a hub id not downloaded yet: loading fetches its files
        snac = load()
        fingerprint = snac_codec.checkpoint_fingerprint(snac_model) or snac_codec.weights_fingerprint(snac)
    frames, _ = snac_codec.encode_clips(
        [(c.name, lambda c=c: ds.load_clip_audio(c)) for c in vut.training_clips],
        snac,
        fingerprint,
        cache=snac_codec.CodeCache(vut.dataset_dir / dataset.CACHE_DIR),
        load_model=load,
        device=device,
        batch_size=snac_codec.auto_batch_size(device),
        on_error=lambda name, e: logger.warning("training clip %s unreadable: %s", name, e),
        progress=progress,
    )
    return frames


# --- summary, verdicts, files ----------------------------------------------------------------------------
def summarize(samples: Sequence[Sample], reference: dict[str, Any], th: Thresholds) -> dict[str, Any]:
    """The headline numbers of one evaluation (what ``GET /v1/audio/voices`` shows)."""
    voice = [s for s in samples if s.model == "voice"]
    base = [s for s in samples if s.model == "base"]
    sim = _mean(s.metrics.get("speaker_similarity") for s in voice)
    base_sim = _mean(s.metrics.get("speaker_similarity") for s in base)
    heard = [s for s in voice if "wer" in s.metrics]
    wer, cer = (
        error_rates([s.text for s in heard], [s.metrics["transcript"] for s in heard])
        if heard
        else (None, None)
    )
    rate = _median(s.metrics.get("speech_rate") for s in voice)
    ref_rate = reference.get("speech_rate")
    novel = [s for s in voice if s.metrics.get("code_overlap") is not None]
    closest = max(novel, key=lambda s: s.metrics["code_overlap"], default=None)

    def dns(key: str) -> float | None:
        return _mean((s.metrics.get("dnsmos") or {}).get(key) for s in voice)

    return {
        "speaker_similarity": sim,
        "base_speaker_similarity": base_sim,
        "similarity_gain": sim - base_sim if sim is not None and base_sim is not None else None,
        "wer": wer,
        "cer": cer,
        "dnsmos_ovrl": dns("ovrl"),
        "dnsmos_sig": dns("sig"),
        "dnsmos_bak": dns("bak"),
        "speech_rate": rate,
        "dataset_speech_rate": ref_rate,
        "speech_rate_ratio": rate / ref_rate if rate is not None and ref_rate else None,
        "samples": len(voice),
        "hit_max_tokens": sum(s.hit_max_tokens for s in voice),
        "too_long": sum((s.metrics.get("duration_ratio") or 0) > th.max_duration_ratio for s in voice),
        "long_silences": sum(s.metrics.get("longest_silence_s", 0) > th.max_silence_s for s in voice),
        "longest_silence_s": max((s.metrics.get("longest_silence_s", 0.0) for s in voice), default=None),
        "max_code_overlap": closest.metrics["code_overlap"] if closest else None,
        "closest_training_clip": closest.metrics["nearest_training_clip"] if closest else None,
        "overfit_sentences": sum(s.metrics["code_overlap"] > th.max_code_overlap for s in novel),
    }


ADVICE = {
    "similarity": "train longer or on more clips of the character; check the dataset is one speaker "
    "(transcript_review.csv)",
    "gain": "the adapter barely changed the voice: more epochs, a higher learning rate or rank, more data",
    "intelligibility": "mumbled or wrong words: fewer epochs or a lower learning rate (overtrained), "
    "check the transcripts match the audio, more data",
    "naturalness": "noisy or distorted output: clean the dataset (drop noisy clips), fewer epochs",
    "rate": "speaking too fast or slow: more data with the character's natural pace; check clip trimming",
    "runaway": "the voice rambles past the text: fewer epochs, a lower learning rate; check transcripts "
    "cover each clip's whole speech",
    "silence": "long pauses: trim silences in the dataset (make prepare-audio), fewer epochs",
    "overfitting": "the voice replays a training clip: fewer epochs, a lower learning rate, more data",
}


def _check(name: str, value, ok: bool | None, threshold: str, advice: str) -> dict[str, Any]:
    verdict = "n/a" if ok is None else ("pass" if ok else "FAIL")
    return {"check": name, "value": value, "threshold": threshold, "verdict": verdict, "advice": advice}


def verdicts(summary: dict[str, Any], th: Thresholds) -> list[dict[str, Any]]:
    """One verdict per check: "pass", "FAIL", or "n/a" (the number could not be measured)."""
    s = summary

    def at_least(key, bound):
        return None if s[key] is None else s[key] >= bound

    def at_most(key, bound):
        return None if s[key] is None else s[key] <= bound

    ratio = s["speech_rate_ratio"]
    rate_ok = None if ratio is None else abs(ratio - 1) <= th.max_rate_deviation
    runaways = s["hit_max_tokens"] + s["too_long"]
    return [
        _check(
            "speaker similarity",
            s["speaker_similarity"],
            at_least("speaker_similarity", th.min_similarity),
            f">= {th.min_similarity}",
            ADVICE["similarity"],
        ),
        _check(
            "similarity gain over the base model",
            s["similarity_gain"],
            at_least("similarity_gain", th.min_similarity_gain),
            f">= {th.min_similarity_gain}",
            ADVICE["gain"],
        ),
        _check(
            "word error rate",
            s["wer"],
            at_most("wer", th.max_wer),
            f"<= {th.max_wer}",
            ADVICE["intelligibility"],
        ),
        _check(
            "character error rate",
            s["cer"],
            at_most("cer", th.max_cer),
            f"<= {th.max_cer}",
            ADVICE["intelligibility"],
        ),
        _check(
            "DNSMOS overall",
            s["dnsmos_ovrl"],
            at_least("dnsmos_ovrl", th.min_dnsmos),
            f">= {th.min_dnsmos}",
            ADVICE["naturalness"],
        ),
        _check("speech rate / dataset's", ratio, rate_ok, f"1 +- {th.max_rate_deviation}", ADVICE["rate"]),
        _check(
            "runaways (max_tokens hit or too long)",
            runaways,
            runaways == 0,
            f"0 (too long: > {th.max_duration_ratio} x the text's time)",
            ADVICE["runaway"],
        ),
        _check(
            "long silences",
            s["long_silences"],
            s["long_silences"] == 0,
            f"none > {th.max_silence_s} s",
            ADVICE["silence"],
        ),
        _check(
            "overfitting (code overlap with a training clip)",
            s["max_code_overlap"],
            at_most("max_code_overlap", th.max_code_overlap),
            f"<= {th.max_code_overlap}",
            ADVICE["overfitting"],
        ),
    ]


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def render_summary(report: dict[str, Any]) -> str:
    """``summary.md``: one verdict line per check, then what the numbers mean."""
    s = report["summary"]
    lines = [
        f"# Evaluation of {report['voice']}",
        "",
        f"{report['created_at']}; engine {report['settings']['engine']}; base model {report['models']['base_model']}; "
        f"reference: {len(report['reference']['clips'])} {report['reference']['source']} clips; "
        f"{s['samples']} texts spoken.",
        "",
        "| check | value | threshold | verdict |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {c['check']} | {_fmt(c['value'])} | {c['threshold']} | {c['verdict']} |" for c in report["checks"]
    ]
    lines += [
        "",
        f"Speaker similarity: voice {_fmt(s['speaker_similarity'])}, base model {_fmt(s['base_speaker_similarity'])}, "
        f"reference clips among themselves {_fmt(report['reference'].get('self_similarity'))}.",
        f"Speech rate {_fmt(s['speech_rate'])} words/s (dataset {_fmt(s['dataset_speech_rate'])}); "
        f"DNSMOS sig {_fmt(s['dnsmos_sig'])}, bak {_fmt(s['dnsmos_bak'])} "
        f"(reference clips: ovrl {_fmt((report['reference'].get('dnsmos') or {}).get('ovrl'))}).",
        f"Closest training clip to a novel sentence: {s['closest_training_clip'] or 'n/a'} "
        f"(code overlap {_fmt(s['max_code_overlap'])}).",
    ]
    failed = [c for c in report["checks"] if c["verdict"] == "FAIL"]
    if failed:
        lines += ["", "What to try:"] + [f"- {c['check']}: {c['advice']}" for c in failed]
    return "\n".join(lines) + "\n"


def sample_record(sample: Sample, file: str | None) -> dict[str, Any]:
    return {
        "id": sample.id,
        "kind": sample.kind,
        "model": sample.model,
        "text": sample.text,
        "reference_clip": sample.reference_clip,
        "file": file,
        "frames": len(sample.frames),
        "pieces": sample.pieces,
        "generated_tokens": sample.generated_tokens,
        "hit_max_tokens": sample.hit_max_tokens,
        "error": sample.error,
        **sample.metrics,
    }


def write_outputs(eval_dir: Path, report: dict[str, Any], samples: Sequence[Sample]) -> Path:
    """``eval.json``, ``summary.md`` and ``samples/*.wav`` under ``eval_dir`` (old samples replaced)."""
    import shutil

    from voicelab.audio import write_wav
    from voicelab.fileio import write_text_atomic

    samples_dir = Path(eval_dir) / SAMPLES_DIR
    if samples_dir.exists():
        shutil.rmtree(samples_dir)
    samples_dir.mkdir(parents=True)
    records = []
    for sample in samples:
        file = None
        if len(sample.audio):
            file = f"{SAMPLES_DIR}/{sample.model}_{sample.id}.wav"
            write_wav(Path(eval_dir) / file, sample.audio, orpheus.SAMPLE_RATE)
        records.append(sample_record(sample, file))
    report = finite_or_none({**report, "samples": records})
    write_text_atomic(Path(eval_dir) / EVAL_FILE, json.dumps(report, indent=2, allow_nan=False) + "\n")
    write_text_atomic(Path(eval_dir) / SUMMARY_FILE, render_summary(report))
    return Path(eval_dir) / EVAL_FILE


PRIVATE_SUMMARY_KEYS = ("closest_training_clip",)
"""Left out of the public voice list: a dataset clip's name is a training detail (it is in eval.json)."""


def read_eval_summary(voice_dir: Path) -> dict[str, Any] | None:
    """The headline numbers and verdicts of a voice's last evaluation (None when it has none or it is
    unreadable); read through ``resolve_inside`` so a planted symlink cannot leak another file."""
    from voicelab.fileio import UnsafePathError, resolve_inside

    try:
        path = resolve_inside(Path(voice_dir), f"{EVAL_DIR}/{EVAL_FILE}")
        data = json.loads(path.read_text(encoding="utf-8"))
        public = {k: v for k, v in data["summary"].items() if k not in PRIVATE_SUMMARY_KEYS}
        return {
            "created_at": data["created_at"],
            **public,
            "verdicts": {c["check"]: c["verdict"] for c in data["checks"]},
        }
    except (UnsafePathError, OSError, ValueError, KeyError, TypeError):
        return None


# --- one evaluation, end to end ------------------------------------------------------------------------
@dataclass
class EvalSettings:
    voices_dir: Path = Path("voices")
    base_model: str | None = None  # None: the voice's own (voice.json)
    snac_model: str | None = None
    device: str = "cpu"
    vllm_url: str | None = None
    whisper_model: str = "medium"
    whisper_backend: str = "openai-whisper"
    language: str = "en"
    sentences: int = len(NOVEL_SENTENCES)
    max_heldout: int = 10
    temperature: float = 0.6
    top_p: float = 0.9
    repetition_penalty: float = 1.1
    seed: int = 42
    max_tokens: int | None = None
    """Per generated piece; None: the budget the server uses, derived from the text."""
    thresholds: Thresholds = field(default_factory=Thresholds)
    progress: bool = True

    def public(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in asdict(self).items() if k not in ("thresholds", "progress")},
            "voices_dir": str(self.voices_dir),
            "engine": "vllm" if self.vllm_url else "local",
        }


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
    """Tokenizer, SNAC decoder, engine (vLLM when ``settings.vllm_url``, else embedded) and Whisper.

    Raises ``EngineUnavailableError`` when vLLM does not answer its health check.
    """
    from voicelab import transcribe as tr
    from voicelab.engine import (
        EngineUnavailableError,
        LocalEngine,
        StreamingSnacDecoder,
        Synthesizer,
        VLLMEngine,
    )
    from voicelab.models import check_base_model_source, check_snac_source, load_tokenizer

    # Every input is checked (vLLM answering included), and Whisper loaded, before the base model and
    # SNAC: a model missing offline fails now, not after minutes of loading the others.
    check_base_model_source(base_model)
    check_snac_source(snac_model)
    engine = None
    if settings.vllm_url:
        engine = VLLMEngine(settings.vllm_url, base_model=base_model)
        if not await engine.health():
            await engine.aclose()
            raise EngineUnavailableError(
                f"vLLM at {settings.vllm_url} is not reachable (no answer on /health): start it with "
                "`make vllm`, check --vllm-url, or leave --vllm-url out to use the embedded engine"
            )
    options = tr.DecodeOptions(
        language=tr.normalize_language(settings.language), beam_size=1, temperatures=(0.0,)
    )
    try:
        transcriber = await asyncio.to_thread(
            tr.load_transcriber,
            settings.whisper_backend,
            settings.whisper_model,
            device=settings.device,
            options=options,
            flag="--whisper-model",
        )
    except BaseException:
        if engine is not None:
            await engine.aclose()
        raise
    if engine is None:
        engine = await asyncio.to_thread(LocalEngine, base_model, device=settings.device)
    recorder = RecordingEngine(engine)
    tokenizer = await asyncio.to_thread(load_tokenizer, base_model)
    decoder = await asyncio.to_thread(StreamingSnacDecoder, snac_model, settings.device)
    return Runtime(
        base_model, snac_model, recorder, Synthesizer(recorder, tokenizer, decoder), transcriber, decoder
    )


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
    from datetime import datetime, timezone

    from voicelab import __version__
    from voicelab.engine import SamplingParams
    from voicelab.training import dataset as ds

    th = settings.thresholds
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
    voice_samples = [s for s in samples if s.model == "voice"]
    ref_audio = [ds.load_clip_audio(c) for c in vut.reference_clips]
    ref_texts = [c.text for c in vut.reference_clips]
    speaker = measure_speaker(samples, ref_audio)
    measure_intelligibility(voice_samples, runtime.transcriber, progress=settings.progress)
    ref_rate = dataset_speech_rate(ref_texts, ref_audio)
    measure_delivery(voice_samples, ref_rate, progress=settings.progress)
    measure_overfitting(
        voice_samples, training_codes(vut, runtime.snac_model, settings.device, progress=settings.progress)
    )
    ref_dnsmos = [dnsmos_or_none(a) for a in ref_audio]
    reference = {
        "source": "held-out" if vut.reference_is_heldout else "training",
        "clips": [c.name for c in vut.reference_clips],
        "self_similarity": speaker["reference_self_similarity"],
        "speech_rate": ref_rate,
        "dnsmos": {k: _mean((d or {}).get(k) for d in ref_dnsmos) for k in ("sig", "bak", "ovrl")},
    }
    summary = summarize(samples, reference, th)
    summary["eval_loss"] = vut.metadata.final_eval_loss
    report = {
        "schema": SCHEMA_VERSION,
        "voice": vut.label,
        "adapter": str(vut.adapter_dir),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "voicelab_version": __version__,
        "settings": settings.public(),
        "thresholds": asdict(th),
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
    }
    report["checks"] = verdicts(summary, th)
    return finite_or_none(report), samples


def compare_table(reports: Sequence[dict[str, Any]]) -> str:
    """Markdown table of the headline numbers and verdicts of several evaluations side by side."""
    labels = [r["voice"] for r in reports]
    lines = ["| | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    keys = [
        "speaker_similarity",
        "base_speaker_similarity",
        "similarity_gain",
        "wer",
        "cer",
        "dnsmos_ovrl",
        "speech_rate",
        "speech_rate_ratio",
        "hit_max_tokens",
        "too_long",
        "long_silences",
        "max_code_overlap",
        "eval_loss",
    ]
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(_fmt(r["summary"].get(key)) for r in reports) + " |")
    for i, check in enumerate(reports[0]["checks"]):
        lines.append(f"| {check['check']} | " + " | ".join(r["checks"][i]["verdict"] for r in reports) + " |")
    return "\n".join(lines) + "\n"
