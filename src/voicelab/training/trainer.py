"""LoRA training of an Orpheus checkpoint with peft and the Hugging Face Trainer.

The adapter is built so vLLM serves it (see ``voice.adapter_problems``): LoRA on the seven Llama
projections, no ``modules_to_save``, no DoRA, bias "none", vocabulary untouched.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicelab import orpheus, progress
from voicelab.errors import UsageError
from voicelab.training.config import LoraSettings, TrainSettings
from voicelab.voice import LORA_TARGET_MODULES, VoiceFolder

logger = logging.getLogger(__name__)

CHECKPOINTS_KEPT = 2
"""Older checkpoints are deleted as new ones are written (each holds adapter + optimizer state); with
early stopping the best one is kept too (the Trainer never rotates it away)."""
SAVE_STEPS = 500
"""Checkpoint interval without early stopping (with it, a checkpoint is saved at every evaluation)."""
EVAL_METRIC = "eval_loss"
"""What early stopping and the best checkpoint go by: the held-out clips' loss, lower is better."""
INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""Ctrl-C, and what torchrun/accelerate send their workers when they are interrupted."""


class DeviceError(UsageError):
    """The requested device is not available."""


def check_device(device: str, flag: str = "--device") -> None:
    """Raise ``DeviceError`` when ``device`` is CUDA and there is none, saying what is actually wrong."""
    import os

    import torch

    if not device.startswith("cuda") or torch.cuda.is_available():
        return
    raise DeviceError(
        cuda_unavailable_message(
            flag,
            device,
            torch_version=torch.__version__,
            cuda_build=torch.version.cuda,
            init_error=_cuda_init_error(),
            visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
        )
    )


def _cuda_init_error() -> str | None:
    """Why CUDA failed to start, in torch's words (no driver, driver too old, no device), or None."""
    import torch

    try:
        torch.cuda.init()
    except (RuntimeError, AssertionError) as e:  # a CPU build raises AssertionError
        return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return None


def cuda_unavailable_message(
    flag: str,
    device: str,
    *,
    torch_version: str,
    cuda_build: str | None,
    init_error: str | None,
    visible_devices: str | None,
) -> str:
    """What to say when ``device`` is CUDA and torch sees none: a CPU-only torch needs a CUDA build; a CUDA
    build that sees no GPU has a machine problem (hidden by CUDA_VISIBLE_DEVICES, no driver, no GPU)."""
    fallback = f"pass {flag} cpu" + (" (slow for the real 3B model)" if flag == "--device" else "")
    if cuda_build is None:
        return (
            f"{flag} {device}: this torch ({torch_version}) is a CPU-only build; install a CUDA build of "
            f"torch (README, Set-up) or {fallback}"
        )
    prefix = f"{flag} {device}: torch {torch_version} is built for CUDA {cuda_build} but sees no GPU"
    if visible_devices is not None and not visible_devices.strip():
        return f"{prefix}: CUDA_VISIBLE_DEVICES is empty, which hides every GPU; unset it, or {fallback}"
    cause = f" ({init_error})" if init_error else ""
    hidden = (
        f"; CUDA_VISIBLE_DEVICES={visible_devices} may name no GPU of this machine" if visible_devices else ""
    )
    return (
        f"{prefix}{cause}{hidden}; check that `nvidia-smi` lists a GPU (the NVIDIA driver is installed and "
        f"not older than CUDA {cuda_build} needs), or {fallback}"
    )


def multi_gpu_hint(device: str, processes: int, gpus: int) -> str | None:
    """A warning when one process sees several GPUs: the HF Trainer then wraps the model in
    ``DataParallel`` (one process driving every GPU, slower than one process per GPU), else None."""
    if not device.startswith("cuda") or processes > 1 or gpus < 2:
        return None
    return (
        f"{gpus} GPUs visible to one process: the Trainer would spread each batch over them with "
        f"DataParallel, which is slow; start one process per GPU with `torchrun --nproc_per_node {gpus} "
        "scripts/train_lora.py ...` (README, Train), or set CUDA_VISIBLE_DEVICES to one GPU"
    )


def choose_precision(device: str) -> str:
    """ "bf16" on GPUs that have it (compute capability >= 8.0), "fp16" on older GPUs, "fp32" on CPU."""
    import torch

    if device.startswith("cuda"):
        if torch.cuda.is_bf16_supported():
            logger.info("training in bf16 (as Orpheus was trained)")
            return "bf16"
        logger.warning(
            "this GPU has no bf16 support (compute capability < 8.0): training in fp16 with loss scaling; "
            "watch the loss for overflow (nan)"
        )
        return "fp16"
    logger.info("training on %s in fp32", device)
    return "fp32"


def lora_config(settings: LoraSettings, base_model: str):
    from peft import LoraConfig

    return LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(LORA_TARGET_MODULES),
        bias="none",
        use_dora=False,
        modules_to_save=None,
        task_type="CAUSAL_LM",
        base_model_name_or_path=base_model,
    )


class TokenDataset:
    """Training examples as the dicts the Trainer and its length-grouping sampler read."""

    def __init__(self, examples: Sequence[orpheus.TrainingExample]):
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        e = self.examples[i]
        return {"input_ids": e.input_ids, "labels": e.labels}


def collate(features: Sequence[dict[str, list[int]]]) -> dict[str, Any]:
    """Right-pad through the contract (pad id, label -100, mask 0) -> LongTensors (B, T)."""
    import torch

    batch = orpheus.pad_batch([orpheus.TrainingExample(f["input_ids"], f["labels"]) for f in features])
    return {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}


def make_interrupt_callback():
    """A Trainer callback: on Ctrl-C/SIGTERM, finish the step, save a checkpoint, stop (a second Ctrl-C aborts)."""
    import torch
    from transformers import TrainerCallback

    class InterruptCallback(TrainerCallback):
        def __init__(self) -> None:
            self.requested = False
            self.interrupted = False
            self._previous: dict[int, Any] = {}

        def _handle(self, signum, frame) -> None:
            if self.requested:  # second signal: the user really wants out now
                raise KeyboardInterrupt
            self.requested = True
            logger.warning("interrupt received: saving a checkpoint after this step (press again to abort)")

        def on_train_begin(self, args, state, control, **kwargs):
            for sig in INTERRUPT_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)

        def on_train_end(self, args, state, control, **kwargs):
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
            self._previous.clear()

        def on_step_end(self, args, state, control, **kwargs):
            stop = self.requested
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                # any rank interrupted stops all of them at the same step (else the others wait forever)
                flag = torch.tensor([float(stop)], device=args.device)
                torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
                stop = bool(flag.item())
            if stop:
                self.interrupted = True
                control.should_save = True
                control.should_training_stop = True
            if stop or state.global_step >= state.max_steps:
                # the loss log always ends with the last step, even on runs shorter than --logging-steps
                control.should_log = True
                control.should_evaluate = args.eval_strategy != "no"
            return control

    return InterruptCallback()


@dataclass
class TrainOutcome:
    model: Any  # the unwrapped PeftModel; with early stopping, holding the best checkpoint's adapter
    log_history: list[dict]
    global_step: int
    interrupted: bool
    train_loss: float | None
    max_steps: int = 0
    """The steps the run was planned to take (epochs x steps per epoch, or --max-steps)."""
    best_step: int | None = None
    """With early stopping: the step of the lowest eval loss, whose checkpoint ``model`` holds."""
    best_eval_loss: float | None = None


def train_lora(
    model,
    examples: Sequence[orpheus.TrainingExample],
    settings: TrainSettings,
    lora: LoraSettings,
    *,
    base_model: str,
    precision: str,
    checkpoint_dir: Path,
    resume_from: Path | None = None,
    extra_callbacks: Sequence[Any] = (),
    eval_examples: Sequence[orpheus.TrainingExample] = (),
) -> TrainOutcome:
    """Wrap ``model`` with a fresh LoRA adapter and train it on ``examples``; ``eval_examples`` (held-out
    clips) are scored every ``eval_steps`` and at the end (``eval_loss`` in the log history).

    Checkpoints go to ``checkpoint_dir/checkpoint-STEP`` every ``save_steps`` (and on interrupt);
    ``resume_from`` continues from one of them (weights, optimizer, scheduler, data position, and the
    best-so-far record of early stopping). With ``settings.early_stop`` and held-out clips, the Trainer's
    own early stopping runs (``EarlyStoppingCallback``, ``load_best_model_at_end``): the returned model
    holds the adapter of the checkpoint with the lowest eval loss.
    """
    from transformers import Trainer

    if settings.epochs is None and not settings.max_steps:
        raise ValueError("epochs not resolved: training.length.plan_length turns --epochs auto into a number")
    peft_model = _with_fresh_lora(model, lora, base_model, settings.seed)
    early_stop = settings.early_stop and bool(eval_examples)
    args = _training_args(settings, precision, checkpoint_dir, bool(eval_examples), early_stop)
    interrupt = make_interrupt_callback()
    trainer = Trainer(
        model=peft_model,
        args=args,
        train_dataset=TokenDataset(examples),
        eval_dataset=TokenDataset(eval_examples) if eval_examples else None,
        data_collator=collate,
        callbacks=[
            interrupt,
            *_early_stopping_callbacks(settings, early_stop),
            *progress.trainer_callbacks(),
            *extra_callbacks,
        ],
    )
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    return _outcome(trainer, result, interrupt, early_stop)


def _with_fresh_lora(model, lora: LoraSettings, base_model: str, seed: int):
    """``model`` wrapped in a new LoRA adapter, its matrices drawn from ``seed``."""
    from peft import get_peft_model
    from transformers import set_seed

    model.config.use_cache = False  # the KV cache is useless in training and clashes with checkpointing
    # The Trainer seeds only when it is built, after the LoRA matrices are drawn: seed their init here too,
    # so --seed makes a run reproducible whatever used the global RNG before.
    set_seed(seed)
    peft_model = get_peft_model(model, lora_config(lora, base_model))
    n_trainable, n_total = peft_model.get_nb_trainable_parameters()
    logger.info(
        "LoRA r=%d alpha=%d: %d trainable of %d parameters", lora.rank, lora.alpha, n_trainable, n_total
    )
    return peft_model


def _outcome(trainer, result, interrupt, early_stop: bool) -> TrainOutcome:
    """What the finished (or interrupted) Trainer leaves: the unwrapped model, its log, where it stopped."""
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    state = trainer.state
    best = early_stop and state.best_model_checkpoint is not None
    return TrainOutcome(
        model=unwrapped,
        log_history=list(state.log_history),
        global_step=int(state.global_step),
        interrupted=interrupt.interrupted,
        train_loss=float(result.training_loss) if result.training_loss is not None else None,
        max_steps=int(state.max_steps),
        best_step=int(state.best_global_step) if best else None,
        best_eval_loss=float(state.best_metric) if best else None,
    )


def _training_args(
    settings: TrainSettings, precision: str, checkpoint_dir: Path, evaluate: bool, early_stop: bool
):
    from transformers import TrainingArguments

    grouped = settings.group_by_length and settings.batch_size * settings.gradient_accumulation_steps > 1
    return TrainingArguments(
        output_dir=str(checkpoint_dir),
        num_train_epochs=settings.epochs or 1.0,  # None only with max_steps, which then decides
        max_steps=settings.max_steps if settings.max_steps else -1,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler,
        weight_decay=0.0,
        logging_steps=settings.logging_steps,
        save_total_limit=CHECKPOINTS_KEPT,
        seed=settings.seed,
        use_cpu=settings.device == "cpu",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        **_checkpointing_args(settings.gradient_checkpointing),
        # similar lengths in a batch: little compute wasted on padding
        train_sampling_strategy="group_by_length" if grouped else "random",
        remove_unused_columns=False,
        dataloader_pin_memory=settings.device != "cpu",
        ddp_find_unused_parameters=False,  # every LoRA matrix is used in every step
        report_to="none",
        disable_tqdm=not settings.progress,
        **_eval_args(settings, evaluate),
        **_save_args(settings, early_stop),
    )


def _eval_args(settings: TrainSettings, enabled: bool) -> dict[str, Any]:
    """Eval loss on the held-out clips every ``eval_steps`` (default: every logging step)."""
    if not enabled:
        return {"eval_strategy": "no"}
    return {
        "eval_strategy": "steps",
        "eval_steps": settings.eval_steps or settings.logging_steps,
        "per_device_eval_batch_size": settings.batch_size,
        "prediction_loss_only": True,
    }


def _save_args(settings: TrainSettings, early_stop: bool) -> dict[str, Any]:
    """Checkpoints every ``save_steps``; with early stopping, at every evaluation (so the best one exists)
    and the Trainer keeps the best, reloads it at the end, and carries its record across ``--resume``."""
    if not early_stop:
        return {"save_strategy": "steps", "save_steps": settings.save_steps or SAVE_STEPS}
    return {
        "save_strategy": "steps",
        "save_steps": settings.eval_steps or settings.logging_steps,
        "load_best_model_at_end": True,
        "metric_for_best_model": EVAL_METRIC,
        "greater_is_better": False,
        # the patience count survives Ctrl-C + --resume along with the best-so-far checkpoint
        "restore_callback_states_from_checkpoint": True,
    }


def _early_stopping_callbacks(settings: TrainSettings, early_stop: bool) -> list[Any]:
    if not early_stop:
        return []
    from transformers import EarlyStoppingCallback

    return [EarlyStoppingCallback(early_stopping_patience=settings.patience)]


def _checkpointing_args(enabled: bool) -> dict[str, Any]:
    """Activation checkpointing under whichever name the installed transformers uses (renamed in v5)."""
    from transformers import TrainingArguments

    if not enabled:
        return {}
    # non-reentrant checkpointing works with frozen embeddings (no enable_input_require_grads needed)
    kwargs = {"use_reentrant": False}
    if "activation_checkpointing" in TrainingArguments.__dataclass_fields__:
        return {"activation_checkpointing": True, "activation_checkpointing_kwargs": kwargs}
    return {"gradient_checkpointing": True, "gradient_checkpointing_kwargs": kwargs}


def save_adapter(peft_model, out_dir: Path, base_model: str) -> dict:
    """Write the adapter (config + safetensors weights) into ``out_dir``; returns the config as written."""
    peft_model.peft_config["default"].base_model_name_or_path = base_model
    # the vocabulary is never changed, so never save embedding layers (peft's "auto" may probe the hub)
    peft_model.save_pretrained(str(out_dir), safe_serialization=True, save_embedding_layers=False)
    voice = VoiceFolder(out_dir)
    voice.remove_model_card()
    return voice.read_adapter_config()
