"""Train an Orpheus LoRA voice from a prepared dataset into voices/CHARACTER/.

  python scripts/train_lora.py CHARACTER prepared/CHARACTER/ --device cuda

Reads DATASET_DIR/transcript.csv (filename,text) and the 24 kHz WAVs it names, SNAC-encodes them (cached
in DATASET_DIR/.snac_cache/), and trains a LoRA adapter vLLM can serve. The run chooses its own length:
epochs from the number of clips (the user guide's table), and early stopping on the held-out clips' eval
loss, publishing the checkpoint where it was lowest (--epochs N and --no-early-stop override).
Checkpoints are written to VOICES_DIR/.checkpoints-CHARACTER/ and on Ctrl-C; --resume continues from the
last (with --overwrite too, when retraining a voice: the live voice is replaced only when the run ends).
Multi-GPU: run the same command under `accelerate launch` or `torchrun --nproc_per_node N`.

Exit codes: 0 done, 1 training failed, 2 bad invocation or no usable input, 130 interrupted (resumable).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from voicelab.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    HelpFormatter,
    non_negative_int,
    positive_int,
    require_local_model,
    require_output_dir,
    run_step,
    setup_logging,
)
from voicelab.training.length import (  # pure, light
    DEFAULT_PATIENCE,
    EPOCHS_FEW,
    EPOCHS_MANY,
    EPOCHS_MEDIUM,
    FEW_CLIPS_BELOW,
    MANY_CLIPS_ABOVE,
)

MAX_LEARNING_RATE = 0.1  # above this LoRA training diverges; typical values are 1e-5 .. 1e-3
MAX_LORA_RANK = 512  # vLLM's largest --max-lora-rank
MIN_SEQ_LEN = 64  # the prompt scaffolding alone is ~10 tokens; anything shorter cannot hold a clip


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


def build_parser() -> argparse.ArgumentParser:
    from voicelab.dataset import CACHE_DIR, TRANSCRIPT_FILE
    from voicelab.voice import DEFAULT_BASE_MODEL, DEFAULT_SNAC_MODEL, VOICE_FILE

    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "character", help="voice name: letters, digits, '_' and '-' (folder and vLLM adapter name)"
    )
    p.add_argument("dataset_dir", type=Path, help=f"prepared clips folder (24 kHz WAVs + {TRANSCRIPT_FILE})")
    p.add_argument("--transcript", type=Path, help=f"transcript CSV (default: DATASET_DIR/{TRANSCRIPT_FILE})")
    p.add_argument("--voices-dir", type=Path, default=Path("voices"), help="root folder of the voices")
    p.add_argument(
        "--base-model", default=DEFAULT_BASE_MODEL, help="Orpheus checkpoint: hub id or local folder"
    )
    p.add_argument(
        "--snac-model", default=DEFAULT_SNAC_MODEL, help="SNAC 24 kHz codec: hub id or local folder"
    )
    _add_length_args(p)
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="training device")
    p.add_argument("--snac-device", choices=["cpu", "cuda"], default="cpu", help="SNAC encoder device")
    p.add_argument(
        "--snac-batch-size",
        type=positive_int,
        help="clips per SNAC encoder call (default: 8 on cuda, 1 on cpu)",
    )
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the SNAC code cache")
    p.add_argument("--cache-dir", type=Path, help=f"SNAC code cache (default: DATASET_DIR/{CACHE_DIR})")
    p.add_argument(
        "--prompt-prefix",
        help=f"text put before every transcript, recorded in {VOICE_FILE} for serving (default: 'CHARACTER: ')",
    )
    p.add_argument(
        "--drop-duplicate-frames",
        action="store_true",
        help="drop frames repeating the previous L0 code, like the official Orpheus data prep (default: keep all)",
    )
    p.add_argument(
        "--gradient-checkpointing", action="store_true", help="trade compute for activation memory"
    )
    p.add_argument(
        "--eval-clips",
        type=non_negative_int,
        help="clips held out of training for the eval loss and `make evaluate` (default: 5%%, at least 2, "
        "from 20 clips up; none below); whole source recordings when the manifest names them; 0: train on all",
    )
    p.add_argument("--seed", type=int, default=42, help="random seed (LoRA init, data order, held-out clips)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the last checkpoint of this voice (with --overwrite: of its retrain)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing voice when training ends; without --resume, discard old checkpoints",
    )
    p.add_argument("--keep-checkpoints", action="store_true", help="keep the checkpoints after success")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def _add_length_args(p: argparse.ArgumentParser) -> None:
    """How long the run trains and at what pace: epochs, steps, batches, rate, checkpoints, early stopping."""
    p.add_argument(
        "--epochs",
        type=epochs_arg,
        default=None,
        metavar="auto|N",
        help=f"training epochs (fractions allowed); auto: {EPOCHS_FEW} below {FEW_CLIPS_BELOW} clips, "
        f"{EPOCHS_MEDIUM} from {FEW_CLIPS_BELOW} to {MANY_CLIPS_ABOVE}, {EPOCHS_MANY} above {MANY_CLIPS_ABOVE} "
        "(the guide's table, on the clips trained on)",
    )
    p.add_argument(
        "--max-steps", type=positive_int, help="stop after this many optimizer steps (overrides --epochs)"
    )
    p.add_argument("--batch-size", type=positive_int, default=1, help="clips per device per step")
    p.add_argument(
        "--gradient-accumulation-steps", type=positive_int, default=1, help="batches per optimizer step"
    )
    p.add_argument("--learning-rate", type=float, default=5e-5, help="peak learning rate")
    p.add_argument(
        "--lr-scheduler",
        choices=["linear", "cosine", "constant"],
        default="linear",
        help="learning-rate schedule",
    )
    p.add_argument("--lora-rank", type=int, default=32, help="LoRA rank (serve with --max-lora-rank >= it)")
    p.add_argument("--lora-alpha", type=int, default=64, help="LoRA alpha (scale = alpha / rank)")
    p.add_argument("--max-seq-len", type=int, default=2048, help="longer clips are skipped, never truncated")
    p.add_argument(
        "--save-steps",
        type=positive_int,
        help="checkpoint every N optimizer steps (default: 500; with early stopping, at every evaluation)",
    )
    p.add_argument(
        "--logging-steps", type=positive_int, default=10, help="log the loss every N optimizer steps"
    )
    p.add_argument(
        "--eval-steps",
        type=positive_int,
        help="measure the held-out clips' eval loss every N steps (default: 4 times an epoch)",
    )
    p.add_argument(
        "--no-early-stop",
        action="store_true",
        help="train every epoch and publish the last step (default: stop when the eval loss stops "
        "improving and publish the checkpoint where it was lowest)",
    )
    p.add_argument(
        "--early-stop-patience",
        type=positive_int,
        default=DEFAULT_PATIENCE,
        help="evaluations without a new lowest eval loss before training stops",
    )


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Range checks argparse cannot express; each one ends the run with exit code 2."""
    if not 1 <= args.lora_rank <= MAX_LORA_RANK:
        parser.error(f"--lora-rank {args.lora_rank}: must be between 1 and {MAX_LORA_RANK} (vLLM's maximum)")
    if args.lora_alpha < 1:
        parser.error(f"--lora-alpha {args.lora_alpha}: must be a positive integer (commonly 2 x rank)")
    if not 0 < args.learning_rate <= MAX_LEARNING_RATE:
        parser.error(f"--learning-rate {args.learning_rate}: must be > 0 and <= {MAX_LEARNING_RATE}")
    if args.max_seq_len < MIN_SEQ_LEN:
        parser.error(f"--max-seq-len {args.max_seq_len}: must be >= {MIN_SEQ_LEN}")
    if args.no_cache and args.cache_dir:
        parser.error("--cache-dir has no effect with --no-cache")


def request_from_args(args: argparse.Namespace):
    """The ``build.TrainRequest`` the flags describe (nothing is checked or loaded here)."""
    from voicelab.training import build
    from voicelab.training.trainer import LoraSettings, TrainSettings

    return build.TrainRequest(
        name=args.character,
        dataset_dir=args.dataset_dir,
        transcript=args.transcript,
        voices_dir=args.voices_dir,
        base_model=args.base_model,
        snac_model=args.snac_model,
        prompt_prefix=args.prompt_prefix,
        drop_duplicate_frames=args.drop_duplicate_frames,
        max_seq_len=args.max_seq_len,
        snac_device=args.snac_device,
        use_cache=not args.no_cache,
        cache_dir=args.cache_dir,
        encode_batch_size=args.snac_batch_size,
        eval_clips=args.eval_clips,
        lora=LoraSettings(rank=args.lora_rank, alpha=args.lora_alpha),
        train=TrainSettings(
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            gradient_checkpointing=args.gradient_checkpointing,
            save_steps=args.save_steps,
            logging_steps=args.logging_steps,
            eval_steps=args.eval_steps,
            early_stop=not args.no_early_stop,
            patience=args.early_stop_patience,
            lr_scheduler=args.lr_scheduler,
            max_steps=args.max_steps,
            seed=args.seed,
            device=args.device,
            progress=not args.no_progress,
        ),
        resume=args.resume,
        overwrite=args.overwrite,
        keep_checkpoints=args.keep_checkpoints,
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    check_args(parser, args)
    setup_logging(args.verbose)
    from voicelab.voice import checkpoints_dir

    checkpoints = checkpoints_dir(args.voices_dir, args.character)
    return run_step(
        lambda: _train(args, argv),
        verbose=args.verbose,
        on_interrupt=f"aborted; the last checkpoint (if any) is in {checkpoints}; continue with:\n"
        f"  {resume_command(argv)}",
    )


MAKE_UNSAFE = set('"$`\\')
"""Characters that the shell (inside ARGS="...") or make would change: then the script form is printed."""


def resume_command(argv: list[str]) -> str:
    """The command that continues an interrupted run: the same arguments plus --resume, as `make` takes
    them (or as the script, when an argument holds a character the make form would mangle)."""
    import shlex

    args = list(argv) if "--resume" in argv else [*argv, "--resume"]
    joined = shlex.join(args)
    if MAKE_UNSAFE.isdisjoint(joined):
        return f'make train-lora ARGS="{joined}"'
    return f".venv/bin/python scripts/train_lora.py {joined}"


def interrupted_message(result, request, argv: list[str]) -> str:
    """What was kept, what is still live, and the exact command that continues."""
    lines = [f"interrupted at step {result.global_step}; checkpoint saved in {result.checkpoint_dir}"]
    if request.voice_dir.exists():
        lines.append(
            f"{request.voice_dir} is untouched and still served; the resumed run replaces it when it ends"
        )
    lines.append(f"continue with:\n  {resume_command(argv)}")
    return "\n".join(lines)


def _train(args: argparse.Namespace, argv: list[str]) -> int:
    from voicelab.models import check_base_model_source
    from voicelab.training import build

    request = request_from_args(args)
    # Everything that can be checked without torch or transformers, first: a bad name, a missing dataset
    # or an existing voice is reported in a second, not after half a minute of imports.
    build.check_request(request)
    require_output_dir(args.voices_dir, "--voices-dir")
    require_local_model(args.base_model, "--base-model", "model folder", folder=True, missing_ok=True)
    require_local_model(args.snac_model, "--snac-model", "model folder", folder=True)
    build.check_devices(request)
    check_base_model_source(args.base_model)  # the same message as the server's and make vllm's
    if args.no_progress:  # transformers' own bars too ("Loading weights")
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    result = build.train_voice(request)
    if result.interrupted:
        print(interrupted_message(result, request, argv))
        return EXIT_INTERRUPTED
    if result.metadata is None:  # a non-main process of a multi-process run: rank 0 reports
        return EXIT_OK
    print(format_summary(result))
    return EXIT_OK


def format_summary(result) -> str:
    stats = result.prepared.stats
    loss = f"{result.final_loss:.4f}" if result.final_loss is not None else "n/a"
    if result.metadata.final_eval_loss is not None:
        loss += (
            f", eval loss {result.metadata.final_eval_loss:.4f} on {stats['clips_held_out']} held-out clips"
        )
    excluded = f" ({stats['clips_excluded']} of them excluded)" if stats.get("clips_excluded") else ""
    return (
        f"voice {result.metadata.name!r} written to {result.voice_dir}\n"
        f"  clips: {stats['clips_used']} used, {stats['clips_held_out']} held out, "
        f"{stats['clips_skipped']} skipped{excluded}; "
        f"{stats['audio_seconds']:.1f} s of audio, {stats['tokens']} tokens "
        f"(SNAC: {stats['snac_encoded']} encoded, {stats['snac_from_cache']} from cache)\n"
        f"  steps: {result.global_step}, final loss {loss}\n"
        f"{format_stopping(result.stopping)}"
        f"  prompt prefix: {result.metadata.prompt_prefix!r}; "
        f"serve with --max-lora-rank >= {result.metadata.training['vllm_max_lora_rank']}\n"
        + "\n".join(f"  {line}" for line in _tag_lines(result.metadata.tags, stats.get("unknown_tags", {})))
    )


def _tag_lines(tags: dict, unknown: dict) -> list[str]:
    """The tags the voice was trained with, the guidance, and the unknown annotations left out."""
    from voicelab import dataset

    census = dataset.TagCensus(
        {tag: dataset.TagCount(**counts) for tag, counts in tags.items()},
        {spelled: dataset.TagCount(clips, clips) for spelled, clips in unknown.items()},
    )
    return dataset.describe_tags(census)


def format_stopping(record) -> str:
    """Two summary lines: the epochs and where they came from; where it stopped, why, what was published."""
    if record is None:
        return ""
    published = f"published step {record.published_step}"
    if record.early_stopping and record.best_eval_loss is not None:
        published += f" (the lowest eval loss, {record.best_eval_loss:.4f})"
    elif not record.early_stopping:
        published += " (the last)"
    return (
        f"  epochs: {record.epochs:g} ({record.epochs_from})\n"
        f"  stopped at step {record.stopped_at_step}: {record.stop_detail}; {published}\n"
    )


if __name__ == "__main__":
    sys.exit(main())
