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
  n-grams); a high share means the voice replays a training clip instead of reading the text;
* expressive tags (``tag_check``): per tag, rendered, ignored or read aloud.

Every number lands in ``eval.json``; ``summary.md`` has one verdict per check against ``Thresholds``
(documented, overridable from the command line). The files are ``voicelab.voice.VoiceFolder``'s.

The package, by job: ``plans`` (the voice under test and the texts it speaks), ``recording`` (generation
through the engine, frames recorded), ``metrics`` (the measures, pure functions and the steps applying
them), ``verdicts`` (thresholds, headline numbers, one verdict per check), ``report`` (summary.md, the
comparison table, the files), ``runtime`` (models loaded once per run, one voice end to end),
``tag_check`` (the tags check: each tag spoken with and without it, and judged). Heavy
imports happen inside functions. The names below are the package's public interface.
"""

from voicelab.evaluate.metrics import (
    code_overlap,
    dnsmos_or_none,
    error_rates,
    finite_or_none,
    longest_silence,
    measure_delivery,
    measure_intelligibility,
    measure_overfitting,
    measure_speaker,
    nearest_clip,
    normalize_text,
)
from voicelab.evaluate.plans import (
    NOVEL_SENTENCES,
    EvaluationError,
    VoiceUnderTest,
    load_voice_under_test,
    plan_texts,
)
from voicelab.evaluate.recording import RecordingEngine, Sample
from voicelab.evaluate.report import compare_table, render_summary, write_outputs
from voicelab.evaluate.runtime import Runtime, evaluate_voice, open_runtime
from voicelab.evaluate.verdicts import summarize, verdicts
from voicelab.evaluate_settings import EvalSettings, Thresholds

__all__ = [
    "NOVEL_SENTENCES",
    "EvalSettings",
    "EvaluationError",
    "RecordingEngine",
    "Runtime",
    "Sample",
    "Thresholds",
    "VoiceUnderTest",
    "code_overlap",
    "compare_table",
    "dnsmos_or_none",
    "error_rates",
    "evaluate_voice",
    "finite_or_none",
    "load_voice_under_test",
    "longest_silence",
    "measure_delivery",
    "measure_intelligibility",
    "measure_overfitting",
    "measure_speaker",
    "nearest_clip",
    "normalize_text",
    "open_runtime",
    "plan_texts",
    "render_summary",
    "summarize",
    "verdicts",
    "write_outputs",
]
