"""Dataset folder -> voice folder: the whole ``train-lora`` step, as one function.

Layout under ``voices_dir`` (``voicelab.voice`` names every folder; the registry ignores dot-folders):
the finished voice ``NAME/`` is published by one rename at the very end, from a staging dot-folder that
is removed if anything fails; the Trainer's ``checkpoint-STEP/`` folders for ``--resume`` sit in a
checkpoints dot-folder (deleted on success).

Under ``torchrun``/``accelerate launch`` every process runs this; the main process prepares the data and
broadcasts it (so all ranks train on the same examples), and only the main process writes the voice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from voicelab import __version__, dataset, models, orpheus
from voicelab.errors import UsageError
from voicelab.fileio import give_default_modes
from voicelab.model_identity import model_identity
from voicelab.training import dataset as ds
from voicelab.training import holdout, length, report, snac_codec
from voicelab.training.config import TrainRequest, TrainSettings
from voicelab.training.trainer import (
    check_device,
    choose_precision,
    multi_gpu_hint,
    save_adapter,
    train_lora,
)
from voicelab.voice import (
    LORA_TARGET_MODULES,
    VoiceFolder,
    VoiceMetadata,
    adapter_problems,
    set_aside_dir,
    smallest_vllm_rank,
    staging_dir,
    validate_voice_name,
)

logger = logging.getLogger(__name__)

MAX_SKIPPED_LOGGED = 20


class VoiceExistsError(UsageError):
    """The voice folder exists and ``--overwrite`` was not given."""


class CheckpointError(UsageError):
    """``--resume`` without a checkpoint, or stale checkpoints and neither ``--resume`` nor ``--overwrite``."""


class AdapterRejectedError(RuntimeError):
    """The saved adapter breaks a rule vLLM applies; the voice is not published."""


@dataclass
class PreparedData:
    examples: list[orpheus.TrainingExample]
    skipped: list[ds.Skipped]
    stats: dict[str, Any]
    eval_examples: list[orpheus.TrainingExample] = field(default_factory=list)
    eval_keys: list[str] = field(default_factory=list)
    """Clips held out of training (eval loss; ``make evaluate`` speaks their texts)."""
    tags: dict[str, dict[str, int]] = field(default_factory=dict)
    """The expressive tags of the training texts: ``{tag: {"clips": n, "occurrences": m}}``."""


@dataclass
class TrainResult:
    voice_dir: Path | None  # None when interrupted (nothing published)
    checkpoint_dir: Path
    interrupted: bool
    global_step: int
    final_loss: float | None
    prepared: PreparedData
    metadata: VoiceMetadata | None
    stopping: length.StopRecord | None = None
    """How long it trained, where it stopped and why, which step was published (None when interrupted)."""


# --- data ------------------------------------------------------------------------------------------
def prepare_examples(req: TrainRequest, tokenizer, *, progress: bool = True) -> PreparedData:
    """Transcript + WAVs -> training sequences (through the contract), SNAC codes cached per clip."""
    data = req.dataset.require()
    rows, skipped = ds.read_training_rows(data, data.read_exclusions())
    n_rows = len(rows) + len(skipped)  # skipped so far: empty text, malformed lines
    clips, missing = ds.resolve_clips(data, rows)
    skipped += missing

    frames, enc, encode_seconds = _encode_clips(req, clips, skipped, progress)

    examples, keys, too_long, audio_frames = [], [], [], {}
    for clip in clips:
        if clip.key not in frames:
            continue
        clip_frames = frames[clip.key]
        if req.drop_duplicate_frames:
            clip_frames = orpheus.remove_duplicate_frames(clip_frames)
        example = orpheus.training_example(
            tokenizer, clip.text, orpheus.frames_to_tokens(clip_frames), req.prefix
        )
        if len(example) > req.max_seq_len:
            too_long.append(clip.key)
            skipped.append(ds.Skipped(clip.key, f"{len(example)} tokens > --max-seq-len {req.max_seq_len}"))
            continue
        examples.append(example)
        keys.append(clip.key)
        audio_frames[clip.key] = len(clip_frames)
    _warn_too_long(too_long, req.max_seq_len)
    _log_skipped(skipped, data)
    if not examples:
        raise dataset.DatasetError(
            f"no usable clip in {req.dataset_dir}: {n_rows} rows, "
            f"{len(skipped)} skipped (see the messages above)"
        )
    _log_unknown_tags(clips)
    texts = {clip.key: clip.text for clip in clips}
    examples, eval_examples, eval_keys, train_frames = _split_held_out(
        req, keys, examples, audio_frames, texts
    )
    trained_tags = _trained_tags(texts, keys, eval_keys)
    stats = {
        "dataset_dir": str(Path(req.dataset_dir).resolve()),
        "transcript": str(data.transcript_path.resolve()),
        "rows": n_rows,
        "clips_used": len(examples),
        "clips_held_out": len(eval_examples),
        "clips_skipped": len(skipped),
        "clips_excluded": sum(s.excluded for s in skipped),
        "audio_seconds": round(train_frames * orpheus.SAMPLES_PER_FRAME / orpheus.SAMPLE_RATE, 2),
        "tokens": sum(len(e) for e in examples),
        "longest_sequence": max(len(e) for e in examples),
        "snac_encoded": enc.encoded,
        "snac_from_cache": enc.from_cache,
        "snac_encode_seconds": round(encode_seconds, 2),
        "held_out_tags": dataset.count_tags(texts[k] for k in eval_keys).as_dict(),
        "unknown_tags": _unknown_tag_clips(clips),
    }
    return PreparedData(examples, skipped, stats, eval_examples, eval_keys, trained_tags.as_dict())


def _warn_too_long(too_long: list[str], max_seq_len: int) -> None:
    if too_long:
        # never truncated: a cut sequence would lose the end-of-speech token the model must learn
        logger.warning(
            "%d clips are longer than --max-seq-len %d and are skipped (not truncated): %s",
            len(too_long),
            max_seq_len,
            ", ".join(too_long),
        )


def _trained_tags(texts: dict[str, str], keys: list[str], eval_keys: list[str]) -> dataset.TagCensus:
    """The expressive tags of the texts trained on (held-out clips not counted), logged with the guidance."""
    held = set(eval_keys)
    census = dataset.count_tags(texts[k] for k in keys if k not in held)
    for line in dataset.describe_tags(census):
        logger.info(line)
    return census


def _unknown_tag_clips(clips) -> dict[str, int]:
    """Each unknown annotation removed from the texts -> how many clips held it."""
    census = dataset.count_tags(" ".join(clip.unknown_tags) for clip in clips)
    return {spelled: count.clips for spelled, count in census.unknown.items()}


def _log_unknown_tags(clips) -> None:
    for spelled, n_clips in _unknown_tag_clips(clips).items():
        logger.warning(
            "%s; removed from %d clip text(s) for training", dataset.unknown_tag_message(spelled), n_clips
        )


def _split_held_out(
    req: TrainRequest, keys: list[str], examples: list, frames: dict[str, int], texts: dict[str, str]
):
    """(training examples, held-out examples, held-out keys, training audio frames)."""
    eval_keys = _hold_out(req, keys, {k: dataset.normalize_tags(texts[k]).tags for k in keys})
    held = set(eval_keys)
    eval_examples = [e for k, e in zip(keys, examples, strict=True) if k in held]
    train = [e for k, e in zip(keys, examples, strict=True) if k not in held]
    return train, eval_examples, eval_keys, sum(f for k, f in frames.items() if k not in held)


def _hold_out(req: TrainRequest, keys: list[str], tags: dict[str, tuple[str, ...]]) -> list[str]:
    """The clips held out for evaluation: ``--eval-clips`` or the default share, whole recordings first."""
    count = holdout.default_eval_count(len(keys)) if req.eval_clips is None else req.eval_clips
    if req.eval_clips is None and count == 0:
        logger.warning(
            "%d clips: fewer than %d, so none is held out for evaluation (no eval loss; `make evaluate` "
            "falls back to training clips as the speaker reference). Pass --eval-clips N to hold some out",
            len(keys),
            holdout.MIN_CLIPS_FOR_DEFAULT_EVAL,
        )
    try:
        chosen = holdout.choose_eval_clips(keys, count, req.train.seed, _clip_sources(req.dataset), tags)
    except holdout.HoldoutError as e:
        raise dataset.DatasetError(str(e)) from e
    if chosen:
        logger.info("holding out %d clips for evaluation: %s", len(chosen), ", ".join(chosen))
    return chosen


def _clip_sources(data: dataset.PreparedDataset) -> dict[str, str] | None:
    """Clip key -> source recording, from the manifest `make prepare-audio` writes (None without one)."""
    try:
        return data.clip_sources() or None
    except (dataset.ManifestError, OSError) as e:
        logger.warning("manifest unreadable (%s): held-out clips are drawn without regard to recordings", e)
        return None


def _encode_clips(req: TrainRequest, clips, skipped: list[ds.Skipped], progress: bool):
    """SNAC frames of ``clips`` (unreadable ones are added to ``skipped``), the encode statistics, and
    the seconds the whole phase took. SNAC is loaded only when some clip is not in the cache."""
    started = time.perf_counter()

    def load():
        return models.load_snac(req.snac_model, req.snac_device)

    snac = cache = fingerprint = None
    if req.use_cache:
        cache = snac_codec.CodeCache(req.cache_dir or req.dataset.snac_cache_dir)
        fingerprint = snac_codec.checkpoint_fingerprint(req.snac_model)
        if fingerprint is None:  # a hub id not downloaded yet: loading fetches its files
            snac = load()
            fingerprint = snac_codec.checkpoint_fingerprint(req.snac_model)
            fingerprint = fingerprint or snac_codec.weights_fingerprint(snac)

    def unreadable(key: str, error: Exception) -> None:
        skipped.append(ds.Skipped(key, f"unreadable audio: {error}"))

    frames, stats = snac_codec.encode_clips(
        [(clip.key, lambda clip=clip: ds.load_clip_audio(clip)) for clip in clips],
        snac,
        fingerprint,
        cache=cache,
        load_model=load,
        device=req.snac_device,
        batch_size=req.encode_batch_size or snac_codec.auto_batch_size(req.snac_device),
        on_error=unreadable,
        progress=progress,
    )
    return frames, stats, time.perf_counter() - started


def _log_skipped(skipped: list[ds.Skipped], data: dataset.PreparedDataset) -> None:
    """One line for the clips excluded on purpose (``-v`` lists them), a warning for each other one."""
    excluded = [s for s in skipped if s.excluded]
    if excluded:
        logger.info(
            "%d clips excluded in %s are left out (-v lists them)", len(excluded), data.excluded_path.name
        )
        for s in excluded:
            logger.debug("left out %s: %s", s.key, s.reason)
    problems = [s for s in skipped if not s.excluded]
    for s in problems[:MAX_SKIPPED_LOGGED]:
        logger.warning("skipped %s: %s", s.key or "(no filename)", s.reason)
    if len(problems) > MAX_SKIPPED_LOGGED:
        logger.warning("... and %d more skipped rows", len(problems) - MAX_SKIPPED_LOGGED)


# --- the step ----------------------------------------------------------------------------------------
_CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")
"""What the Trainer calls the folder of the checkpoint after step N."""


def checkpoint_step(folder: Path) -> int | None:
    """The step of a ``checkpoint-STEP`` folder (None for any other folder)."""
    match = _CHECKPOINT_NAME.fullmatch(Path(folder).name)
    return int(match.group(1)) if match else None


def last_checkpoint(folder: Path) -> Path | None:
    """The ``checkpoint-STEP`` folder with the highest step in ``folder`` (None when there is none)."""
    if not folder.is_dir():
        return None
    found = [
        (int(match.group(1)), path)
        for path in folder.iterdir()
        if path.is_dir() and (match := _CHECKPOINT_NAME.fullmatch(path.name))
    ]
    return max(found)[1] if found else None


def check_devices(req: TrainRequest) -> None:
    """``DeviceError`` when --device or --snac-device asks for CUDA on a machine without it (imports torch)."""
    check_device(req.train.device, "--device")
    check_device(req.snac_device, "--snac-device")


def check_request(req: TrainRequest) -> Path | None:
    """Checks that need neither torch nor transformers (so they answer at once); returns the checkpoint
    to resume from (or None)."""
    validate_voice_name(req.name)
    transcript = req.dataset.require().transcript_path
    if not transcript.is_file():
        raise dataset.DatasetError(
            f"{transcript}: transcript not found (run `make transcribe` first, or pass --transcript PATH)"
        )
    last = last_checkpoint(req.checkpoint_dir)
    if req.voice_dir.exists() and not req.overwrite:
        if req.resume and last is not None:
            raise VoiceExistsError(
                f"{req.voice_dir} already exists: to continue retraining it, pass --resume --overwrite "
                "(it stays served until the resumed run ends and replaces it)"
            )
        raise VoiceExistsError(f"{req.voice_dir} already exists: pass --overwrite to replace it")
    if req.resume:
        if last is None:
            raise CheckpointError(
                f"--resume: no checkpoint-STEP folder in {req.checkpoint_dir} to resume from"
            )
        return Path(last)
    if last is not None and not req.overwrite:
        raise CheckpointError(
            f"{req.checkpoint_dir} holds checkpoints of an unfinished run: pass --resume to continue it, "
            "or --overwrite to start again"
        )
    return None


def _distributed_state(device: str):
    from accelerate import PartialState

    return PartialState(cpu=device == "cpu")


def _share(state, value):
    """Broadcast the main process' ``value`` (data, or the exception it raised) to every process."""
    if state.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


def train_voice(req: TrainRequest, *, extra_callbacks=()) -> TrainResult:
    """Run the whole step. Raises the specific errors above (nothing written to voices/ for bad input)."""
    resume_from = check_request(req)
    check_devices(req)
    state = _distributed_state(req.train.device)
    progress = req.train.progress and state.is_main_process
    if not state.is_main_process:  # one copy of each progress line, not one per process
        logging.getLogger("voicelab").setLevel(max(logging.WARNING, logging.getLogger("voicelab").level))
    import torch

    if hint := multi_gpu_hint(req.train.device, state.num_processes, torch.cuda.device_count()):
        logger.warning(hint)
    prepared = _prepare_on_main(req, state, models.load_tokenizer(req.base_model), progress)
    logger.info(
        "%d clips (%.1f s of audio, %d tokens) ready; %d skipped",
        prepared.stats["clips_used"],
        prepared.stats["audio_seconds"],
        prepared.stats["tokens"],
        prepared.stats["clips_skipped"],
    )

    plan = plan_length(req, prepared, state.num_processes)
    train = replace(req.train, epochs=plan.epochs, eval_steps=plan.eval_steps, early_stop=plan.early_stopping)
    precision = choose_precision(req.train.device)
    model = models.load_base_model(req.base_model, dtype=precision)
    if req.overwrite and resume_from is None and state.is_main_process and req.checkpoint_dir.exists():
        shutil.rmtree(req.checkpoint_dir)
    state.wait_for_everyone()
    outcome = train_lora(
        model,
        prepared.examples,
        train,
        req.lora,
        base_model=req.base_model,
        precision=precision,
        checkpoint_dir=req.checkpoint_dir,
        resume_from=resume_from,
        extra_callbacks=extra_callbacks,
        eval_examples=prepared.eval_examples,
    )
    losses = report.loss_points(outcome.log_history)
    final_loss = next((p.loss for p in reversed(losses) if p.loss is not None), outcome.train_loss)
    if outcome.interrupted:
        # the caller reports it (train-lora prints where the checkpoint is and the command that resumes)
        logger.debug("interrupted at step %d; checkpoint in %s", outcome.global_step, req.checkpoint_dir)
        return TrainResult(None, req.checkpoint_dir, True, outcome.global_step, final_loss, prepared, None)

    record = _stop_record(plan, outcome, losses)
    metadata = None
    if state.is_main_process:
        run = _Run(train, precision, outcome.global_step, resume_from, record)
        metadata = _metadata(req, prepared, run, losses, final_loss)
        _publish(req, outcome.model, metadata, losses, record.published_step)
        if not req.keep_checkpoints:
            shutil.rmtree(req.checkpoint_dir, ignore_errors=True)
    state.wait_for_everyone()
    return TrainResult(
        req.voice_dir, req.checkpoint_dir, False, outcome.global_step, final_loss, prepared, metadata, record
    )


def _prepare_on_main(req: TrainRequest, state, tokenizer, progress: bool) -> PreparedData:
    """The main process prepares the examples and every process gets them (or the error, raised on all)."""
    prepared: PreparedData | Exception | None = None
    if state.is_main_process:
        try:
            prepared = prepare_examples(req, tokenizer, progress=progress)
        except (UsageError, orpheus.ContractError) as e:
            prepared = e
    prepared = _share(state, prepared)
    if isinstance(prepared, Exception):
        raise prepared
    return prepared


def plan_length(req: TrainRequest, prepared: PreparedData, processes: int) -> length.LengthPlan:
    """``--epochs auto``, the evaluation interval and early stopping, resolved for this dataset."""
    n_train = len(prepared.examples)
    plan = length.plan_length(
        epochs=req.train.epochs,
        max_steps=req.train.max_steps,
        n_train=n_train,
        n_held_out=len(prepared.eval_examples),
        epoch_steps=length.steps_per_epoch(
            n_train, req.train.batch_size, req.train.gradient_accumulation_steps, processes
        ),
        eval_steps=req.train.eval_steps,
        early_stop=req.train.early_stop,
        patience=req.train.patience,
        eval_clips_asked=req.eval_clips,
    )
    if plan.early_stopping and req.train.save_steps:
        logger.warning(
            "--save-steps %d is not used with early stopping: a checkpoint is saved at every evaluation "
            "(every %d steps) so the best one can be published",
            req.train.save_steps,
            plan.eval_steps,
        )
    return plan


def _stop_record(plan: length.LengthPlan, outcome, losses) -> length.StopRecord:
    """With early stopping the Trainer's best checkpoint (the one published); without, the lowest eval
    loss logged, for information (the last step is published)."""
    best_step, best_loss = outcome.best_step, outcome.best_eval_loss
    if not plan.early_stopping:
        scored = [p for p in losses if p.eval_loss is not None]
        best = min(scored, key=lambda p: p.eval_loss, default=None)  # the earliest of equal losses
        best_step, best_loss = (best.step, best.eval_loss) if best else (None, None)
    record = length.stop_record(
        plan,
        stopped_at=outcome.global_step,
        max_steps=outcome.max_steps,
        best_step=best_step,
        best_eval_loss=best_loss,
    )
    logger.info("stopped at step %d: %s", record.stopped_at_step, record.stop_detail)
    return record


@dataclass(frozen=True)
class _Run:
    """What the run was (resolved settings, precision) and how it ended, for voice.json."""

    train: TrainSettings
    precision: str
    steps: int
    resumed_from: Path | None
    stopping: length.StopRecord


def _metadata(req: TrainRequest, prepared: PreparedData, run: _Run, losses, final_loss) -> VoiceMetadata:
    training = {
        **{f"lora_{k}": v for k, v in asdict(req.lora).items()},
        **{k: v for k, v in asdict(run.train).items() if k != "progress"},
        "lora_target_modules": list(LORA_TARGET_MODULES),
        "max_seq_len": req.max_seq_len,
        "eval_clips": len(prepared.eval_keys),
        "precision": run.precision,
        "steps": run.steps,
        "resumed_from": str(run.resumed_from) if run.resumed_from else None,
        "vllm_max_lora_rank": smallest_vllm_rank(req.lora.rank),
    }
    base = model_identity(req.base_model)  # recorded so a copy of the model at another path is accepted
    return VoiceMetadata(
        name=req.name,
        base_model=req.base_model,
        prompt_prefix=req.prefix,
        base_model_fingerprint=base.fingerprint,
        base_model_hub_id=base.hub_id,
        snac_model=req.snac_model,
        sample_rate=orpheus.SAMPLE_RATE,
        drop_duplicate_frames=req.drop_duplicate_frames,
        dataset=prepared.stats,
        training=training,
        final_loss=final_loss,
        final_eval_loss=next((p.eval_loss for p in reversed(losses) if p.eval_loss is not None), None),
        eval_clips=list(prepared.eval_keys),
        tags=prepared.tags,
        stopping=run.stopping.to_dict(),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        voicelab_version=__version__,
    )


def _publish(req: TrainRequest, peft_model, metadata: VoiceMetadata, losses, published_step: int) -> None:
    """Assemble the voice in a staging dot-folder, check it, then rename it into place."""
    staging = staging_dir(req.voices_dir, req.name)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    voice = VoiceFolder(staging)
    try:
        config = save_adapter(peft_model, staging, req.base_model)
        problems = adapter_problems(config, base_model=req.base_model)
        if problems:
            raise AdapterRejectedError("the trained adapter would not load in vLLM: " + "; ".join(problems))
        voice.write_metadata(metadata)
        voice.write_loss_log(losses)
        title = f"{req.name}: LoRA loss"
        voice.write_loss_curve(
            lambda tmp: report.plot_loss(tmp, losses, title, published_step=published_step)
        )
        give_default_modes(
            staging
        )  # safetensors writes its file 0600: a vLLM run as another user must read it
        _replace_dir(staging, req.voice_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.debug("voice written to %s", req.voice_dir)  # the command's summary says it


def _replace_dir(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``; an existing ``target`` is set aside first and deleted only afterwards."""
    old = None
    if target.exists():
        old = set_aside_dir(target)
        os.replace(target, old)
    try:
        os.replace(new, target)
    except OSError:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        with contextlib.suppress(OSError):
            shutil.rmtree(old)
