"""Train an Orpheus LoRA voice from a prepared dataset into voices/CHARACTER/.

  python scripts/train_lora.py CHARACTER prepared/CHARACTER/ --device cuda --epochs 1

Reads DATASET_DIR/transcript.csv (filename,text) and the 24 kHz WAVs it names, SNAC-encodes them (cached
in DATASET_DIR/.snac_cache/), and trains a LoRA adapter vLLM can serve. Checkpoints are written to
VOICES_DIR/.checkpoints-CHARACTER/ every --save-steps and on Ctrl-C; --resume continues from the last.
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
    run_step,
    setup_logging,
)

MAX_LEARNING_RATE = 0.1  # above this LoRA training diverges; typical values are 1e-5 .. 1e-3
MAX_LORA_RANK = 512  # vLLM's largest --max-lora-rank
MIN_SEQ_LEN = 64  # the prompt scaffolding alone is ~10 tokens; anything shorter cannot hold a clip


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
    p.add_argument("--epochs", type=float, default=1.0, help="training epochs (fractions allowed)")
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
    p.add_argument("--save-steps", type=positive_int, default=500, help="checkpoint every N optimizer steps")
    p.add_argument(
        "--logging-steps", type=positive_int, default=10, help="log the loss every N optimizer steps"
    )
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
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint of this voice")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing voice / discard old checkpoints"
    )
    p.add_argument("--keep-checkpoints", action="store_true", help="keep the checkpoints after success")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Range checks argparse cannot express; each one ends the run with exit code 2."""
    if not 1 <= args.lora_rank <= MAX_LORA_RANK:
        parser.error(f"--lora-rank {args.lora_rank}: must be between 1 and {MAX_LORA_RANK} (vLLM's maximum)")
    if args.lora_alpha < 1:
        parser.error(f"--lora-alpha {args.lora_alpha}: must be a positive integer (commonly 2 x rank)")
    if not 0 < args.learning_rate <= MAX_LEARNING_RATE:
        parser.error(f"--learning-rate {args.learning_rate}: must be > 0 and <= {MAX_LEARNING_RATE}")
    if args.epochs <= 0:
        parser.error(f"--epochs {args.epochs}: must be > 0")
    if args.max_seq_len < MIN_SEQ_LEN:
        parser.error(f"--max-seq-len {args.max_seq_len}: must be >= {MIN_SEQ_LEN}")
    if args.resume and args.overwrite:
        parser.error("--resume continues the checkpoints that --overwrite would discard: pass only one")
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
    args = parser.parse_args(argv)
    check_args(parser, args)
    setup_logging(args.verbose)
    from voicelab.voice import checkpoints_dir

    checkpoints = checkpoints_dir(args.voices_dir, args.character)
    return run_step(
        lambda: _train(args),
        verbose=args.verbose,
        on_interrupt=f"aborted; the last checkpoint (if any) is in {checkpoints}: rerun with --resume",
    )


def _train(args: argparse.Namespace) -> int:
    from voicelab.models import check_base_model_source
    from voicelab.training import build

    request = request_from_args(args)
    # Everything that can be checked without torch or transformers, first: a bad name, a missing dataset
    # or an existing voice is reported in a second, not after half a minute of imports.
    build.check_request(request)
    check_base_model_source(args.base_model)  # the same message as the server's and make vllm's
    require_local_model(args.snac_model, "--snac-model", "model folder")
    build.check_devices(request)
    if args.no_progress:  # transformers' own bars too ("Loading weights")
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    result = build.train_voice(request)
    if result.interrupted:
        print(
            f"interrupted at step {result.global_step}; checkpoint saved in {result.checkpoint_dir}\n"
            f"continue with: the same command plus --resume"
        )
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
    return (
        f"voice {result.metadata.name!r} written to {result.voice_dir}\n"
        f"  clips: {stats['clips_used']} used, {stats['clips_held_out']} held out, "
        f"{stats['clips_skipped']} skipped; "
        f"{stats['audio_seconds']:.1f} s of audio, {stats['tokens']} tokens "
        f"(SNAC: {stats['snac_encoded']} encoded, {stats['snac_from_cache']} from cache)\n"
        f"  steps: {result.global_step}, final loss {loss}\n"
        f"  prompt prefix: {result.metadata.prompt_prefix!r}; "
        f"serve with --max-lora-rank >= {result.metadata.training['vllm_max_lora_rank']}"
    )


if __name__ == "__main__":
    sys.exit(main())
