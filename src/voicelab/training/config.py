"""What a train-lora run is asked to do: each setting declared once, with its command-line flag, default
and help (``voicelab.options``). ``cli/train_lora.py`` builds its parser from these fields and the
``TrainRequest`` from the parsed flags. Light imports only: ``--help`` reads this module.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from voicelab import dataset
from voicelab.dataset import CACHE_DIR, TRANSCRIPT_FILE
from voicelab.options import non_negative_int, option, positive_int
from voicelab.training.length import (
    DEFAULT_PATIENCE,
    EPOCHS_FEW,
    EPOCHS_MANY,
    EPOCHS_MEDIUM,
    FEW_CLIPS_BELOW,
    MANY_CLIPS_ABOVE,
)
from voicelab.voice import (
    DEFAULT_BASE_MODEL,
    DEFAULT_SNAC_MODEL,
    VOICE_FILE,
    checkpoints_dir,
    default_prompt_prefix,
)

LORA_DROPOUT = 0.0
"""No dropout: voice datasets are small and the adapter must reproduce them closely (as public Orpheus
LoRA recipes do)."""
AUTO = "auto"


def epochs_arg(text: str) -> float | None:
    """argparse ``type=`` for --epochs: ``auto`` (None: chosen from the dataset) or a number > 0."""
    if text.strip().lower() == AUTO:
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number of epochs, got {text!r}") from None
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be > 0 (or 'auto'), got {text}")
    return value


@dataclass(frozen=True)
class LoraSettings:
    rank: int = option(
        "--lora-rank", type=int, default=32, help="LoRA rank (serve with --max-lora-rank >= it)"
    )
    alpha: int = option("--lora-alpha", type=int, default=64, help="LoRA alpha (scale = alpha / rank)")
    dropout: float = LORA_DROPOUT


@dataclass(frozen=True)
class TrainSettings:
    epochs: float | None = option(  # None: ``--epochs auto`` (training.length.auto_epochs)
        "--epochs",
        type=epochs_arg,
        default=None,
        metavar="auto|N",
        help=f"training epochs (fractions allowed); auto: {EPOCHS_FEW} below {FEW_CLIPS_BELOW} clips, "
        f"{EPOCHS_MEDIUM} from {FEW_CLIPS_BELOW} to {MANY_CLIPS_ABOVE}, {EPOCHS_MANY} above {MANY_CLIPS_ABOVE} "
        "(the guide's table, on the clips trained on)",
    )
    batch_size: int = option("--batch-size", type=positive_int, default=1, help="clips per device per step")
    learning_rate: float = option("--learning-rate", type=float, default=5e-5, help="peak learning rate")
    gradient_accumulation_steps: int = option(
        "--gradient-accumulation-steps", type=positive_int, default=1, help="batches per optimizer step"
    )
    gradient_checkpointing: bool = option(
        "--gradient-checkpointing",
        action="store_true",
        default=False,
        help="trade compute for activation memory",
    )
    save_steps: int | None = option(  # None: SAVE_STEPS, or at every evaluation with early stopping
        "--save-steps",
        type=positive_int,
        default=None,
        help="checkpoint every N optimizer steps (default: 500; with early stopping, at every evaluation)",
    )
    logging_steps: int = option(
        "--logging-steps", type=positive_int, default=10, help="log the loss every N optimizer steps"
    )
    eval_steps: int | None = option(  # None: eval loss at every logging step (build sets it from the dataset)
        "--eval-steps",
        type=positive_int,
        default=None,
        help="measure the held-out clips' eval loss every N steps (default: 4 times an epoch)",
    )
    early_stop: bool = option(
        "--no-early-stop",
        action="store_false",
        default=True,
        help="train every epoch and publish the last step (default: stop when the eval loss stops "
        "improving and publish the checkpoint where it was lowest)",
    )
    patience: int = option(
        "--early-stop-patience",
        type=positive_int,
        default=DEFAULT_PATIENCE,
        help="evaluations without a new lowest eval loss before training stops",
    )
    lr_scheduler: str = option(
        "--lr-scheduler",
        choices=["linear", "cosine", "constant"],
        default="linear",
        help="learning-rate schedule",
    )
    max_steps: int | None = option(
        "--max-steps",
        type=positive_int,
        default=None,
        help="stop after this many optimizer steps (overrides --epochs)",
    )
    group_by_length: bool = True  # batches of similar lengths (only matters for batch size > 1)
    seed: int = option(
        "--seed", type=int, default=42, help="random seed (LoRA init, data order, held-out clips)"
    )
    device: str = option("--device", choices=["cuda", "cpu"], default="cuda", help="training device")
    progress: bool = option(
        "--no-progress", action="store_false", default=True, help="no progress bars (logs only)"
    )


@dataclass
class TrainRequest:
    name: str = option(
        "character", help="voice name: letters, digits, '_' and '-' (folder and vLLM adapter name)"
    )
    dataset_dir: Path = option(
        "dataset_dir", type=Path, help=f"prepared clips folder (24 kHz WAVs + {TRANSCRIPT_FILE})"
    )
    transcript: Path | None = option(
        "--transcript",
        type=Path,
        default=None,
        help=f"transcript CSV (default: DATASET_DIR/{TRANSCRIPT_FILE})",
    )
    voices_dir: Path = option(
        "--voices-dir", type=Path, default=Path("voices"), help="root folder of the voices"
    )
    base_model: str = option(
        "--base-model", default=DEFAULT_BASE_MODEL, help="Orpheus checkpoint: hub id or local folder"
    )
    snac_model: str = option(
        "--snac-model", default=DEFAULT_SNAC_MODEL, help="SNAC 24 kHz codec: hub id or local folder"
    )
    prompt_prefix: str | None = option(  # None: default_prompt_prefix(name)
        "--prompt-prefix",
        default=None,
        help=f"text put before every transcript, recorded in {VOICE_FILE} for serving (default: 'CHARACTER: ')",
    )
    drop_duplicate_frames: bool = option(
        "--drop-duplicate-frames",
        action="store_true",
        default=False,
        help="drop frames repeating the previous L0 code, like the official Orpheus data prep (default: keep all)",
    )
    max_seq_len: int = option(
        "--max-seq-len", type=int, default=2048, help="longer clips are skipped, never truncated"
    )
    snac_device: str = option(
        "--snac-device", choices=["cpu", "cuda"], default="cpu", help="SNAC encoder device"
    )
    use_cache: bool = option(
        "--no-cache", action="store_false", default=True, help="neither read nor write the SNAC code cache"
    )
    cache_dir: Path | None = option(  # None: the dataset's SNAC code cache
        "--cache-dir", type=Path, default=None, help=f"SNAC code cache (default: DATASET_DIR/{CACHE_DIR})"
    )
    encode_batch_size: int | None = option(  # None: snac_codec.auto_batch_size(snac_device)
        "--snac-batch-size",
        type=positive_int,
        default=None,
        help="clips per SNAC encoder call (default: 8 on cuda, 1 on cpu)",
    )
    eval_clips: int | None = option(  # clips held out for eval loss; None: holdout.default_eval_count
        "--eval-clips",
        type=non_negative_int,
        default=None,
        help="clips held out of training for the eval loss and `make evaluate` (default: 5%%, at least 2, "
        "from 20 clips up; none below); whole source recordings when the manifest names them; 0: train on all",
    )
    lora: LoraSettings = field(default_factory=LoraSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    resume: bool = option(
        "--resume",
        action="store_true",
        default=False,
        help="continue from the last checkpoint of this voice (with --overwrite: of its retrain)",
    )
    overwrite: bool = option(
        "--overwrite",
        action="store_true",
        default=False,
        help="replace an existing voice when training ends; without --resume, discard old checkpoints",
    )
    keep_checkpoints: bool = option(
        "--keep-checkpoints", action="store_true", default=False, help="keep the checkpoints after success"
    )

    @property
    def prefix(self) -> str:
        return default_prompt_prefix(self.name) if self.prompt_prefix is None else self.prompt_prefix

    @property
    def voice_dir(self) -> Path:
        return Path(self.voices_dir) / self.name

    @property
    def checkpoint_dir(self) -> Path:
        return checkpoints_dir(self.voices_dir, self.name)

    @property
    def dataset(self) -> dataset.PreparedDataset:
        """The prepared dataset, with ``transcript`` when one was given."""
        return dataset.PreparedDataset(self.dataset_dir, self.transcript)
