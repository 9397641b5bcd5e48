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

from voicelab import progress
from voicelab.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    HelpFormatter,
    require_local_model,
    require_output_dir,
    run_step,
    setup_logging,
)
from voicelab.options import add_options, from_args
from voicelab.training.config import AUTO as AUTO  # light: dataclasses and constants
from voicelab.training.config import TrainRequest
from voicelab.training.config import epochs_arg as epochs_arg

MAX_LEARNING_RATE = 0.1  # above this LoRA training diverges; typical values are 1e-5 .. 1e-3
MAX_LORA_RANK = 512  # vLLM's largest --max-lora-rank
MIN_SEQ_LEN = 64  # the prompt scaffolding alone is ~10 tokens; anything shorter cannot hold a clip

HELP_ORDER = (
    # what to train, from what, into where
    "name",
    "dataset_dir",
    "transcript",
    "voices_dir",
    "base_model",
    "snac_model",
    # how long and at what pace: epochs, steps, batches, rate, checkpoints, early stopping
    "train.epochs",
    "train.max_steps",
    "train.batch_size",
    "train.gradient_accumulation_steps",
    "train.learning_rate",
    "train.lr_scheduler",
    "lora.rank",
    "lora.alpha",
    "max_seq_len",
    "train.save_steps",
    "train.logging_steps",
    "train.eval_steps",
    "train.early_stop",
    "train.patience",
    # devices, SNAC codes, data, the run itself
    "train.device",
    "snac_device",
    "encode_batch_size",
    "use_cache",
    "cache_dir",
    "prompt_prefix",
    "drop_duplicate_frames",
    "train.gradient_checkpointing",
    "eval_clips",
    "train.seed",
    "resume",
    "overwrite",
    "keep_checkpoints",
    "train.progress",
)
"""The ``TrainRequest`` fields (dotted: nested settings) in the order --help lists their flags; each flag,
default and help is declared on its field (``voicelab.training.config``)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_options(p, TrainRequest, HELP_ORDER)
    progress.add_argument(p)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def check_args(parser: argparse.ArgumentParser, request: TrainRequest) -> None:
    """Range checks argparse cannot express; each one ends the run with exit code 2."""
    lora, train = request.lora, request.train
    if not 1 <= lora.rank <= MAX_LORA_RANK:
        parser.error(f"--lora-rank {lora.rank}: must be between 1 and {MAX_LORA_RANK} (vLLM's maximum)")
    if lora.alpha < 1:
        parser.error(f"--lora-alpha {lora.alpha}: must be a positive integer (commonly 2 x rank)")
    if not 0 < train.learning_rate <= MAX_LEARNING_RATE:
        parser.error(f"--learning-rate {train.learning_rate}: must be > 0 and <= {MAX_LEARNING_RATE}")
    if request.max_seq_len < MIN_SEQ_LEN:
        parser.error(f"--max-seq-len {request.max_seq_len}: must be >= {MIN_SEQ_LEN}")
    if not request.use_cache and request.cache_dir:
        parser.error("--cache-dir has no effect with --no-cache")


def request_from_args(args: argparse.Namespace) -> TrainRequest:
    """The ``TrainRequest`` the flags describe (nothing is checked or loaded here)."""
    return from_args(TrainRequest, args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    request = request_from_args(args)
    check_args(parser, request)
    setup_logging(args.verbose)
    progress.configure(args.progress_file, "train-lora")
    return run_step(
        lambda: _train(request, argv),
        verbose=args.verbose,
        on_interrupt=f"aborted; the last checkpoint (if any) is in {request.checkpoint_dir}; continue with:\n"
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


def _train(request: TrainRequest, argv: list[str]) -> int:
    from voicelab.models import check_base_model_source
    from voicelab.training import build

    # Everything that can be checked without torch or transformers, first: a bad name, a missing dataset
    # or an existing voice is reported in a second, not after half a minute of imports.
    build.check_request(request)
    require_output_dir(request.voices_dir, "--voices-dir")
    require_local_model(request.base_model, "--base-model", "model folder", folder=True, missing_ok=True)
    require_local_model(request.snac_model, "--snac-model", "model folder", folder=True)
    build.check_devices(request)
    check_base_model_source(request.base_model)  # the same message as the server's and make vllm's
    if not request.train.progress:  # transformers' own bars too ("Loading weights")
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
