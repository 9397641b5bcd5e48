"""Do two revisions of voicelab print and write the same things? Every command, on the tests' data.

A refactor's check: each command runs once per side on the same inputs, in the same run folder path, and
everything it prints (exit status, stdout, stderr) and every file it leaves is compared byte for byte.

usage (from the repository root):

    .venv/bin/python benchmarks/compare_cli_outputs.py BEFORE [AFTER] [--work DIR] [--keep] [--help-rounds N]

BEFORE and AFTER: a git revision (exported with ``git archive`` into the work folder) or a checkout folder;
AFTER defaults to this checkout's working tree (uncommitted changes included). Both sides run with this
interpreter (``.venv``, its installed dependencies) and ``PYTHONPATH=<side>/src``, through the side's own
``scripts/*.py``, with progress bars off, ``VOICELAB_*`` removed from the environment, one CPU thread
(deterministic float sums) and ``PYTHONHASHSEED=0``.

Inputs, built once by BEFORE's ``voicelab.testing`` (nothing downloaded): espeak-ng speech in
``raw_audio/narrator/`` (two recordings), a tiny random Orpheus, SNAC and Whisper checkpoint. The tiny
SNAC's noise blocks are switched off (``"noise": false`` in its config.json): with them its decoder adds
fresh random noise to every decode, so two runs of the same code would speak different audio.

The commands (``COMMANDS`` below), in order: ``--help`` of each of the six steps; prepare-audio; transcribe
with ``--no-quality``; transcribe again with the audio measures (resume: catches up the measures, writes
the review and dataset_report.png); transcribe of a second copy of the clips with ``--exclude-flagged``
(writes excluded.csv); train-lora with a held-out clip and checkpoints kept; evaluate (embedded engine),
evaluate ``--compare`` with a checkpoint, evaluate ``--all``; export-dataset; serve-vllm ``--dry-run``;
and a few bad inputs (their messages and exit codes).

Ignored, because they differ between two runs of the same code (``RUN_DEPENDENT`` names each):
timestamps (``created_at``, ISO times in text), measured durations (SNAC encode seconds, the audio
measures' seconds, the Trainer's runtimes and throughputs, in trainer_state.json and in the log lines
train-lora prints), the random ``serialization_id`` torch writes into every ``torch.save`` zip, and the
pickled ``training_args.bin`` (it holds a dated logging folder), whose other content is checked through
trainer_state.json and the adapter itself. ``benchmarks/compare_cli_outputs.py BEFORE BEFORE`` (a
revision against itself) shows that nothing else differs from run to run.

Exit status: 0 when everything is identical and every command exited as expected (0; 2 for the bad
inputs), 1 otherwise (each difference is printed as a unified diff). Each command's output is also kept in
``WORK/logs-before/`` and ``WORK/logs-after/``, and its files in ``WORK/run-before/`` and
``WORK/run-after/``, when ``--keep`` keeps the work folder.
The ``--help`` timings (median and range of ``--help-rounds`` runs, sides interleaved, wall and CPU
seconds of the whole process) are printed too; each side's median CPU seconds must stay under
``HELP_LIMIT_S`` (CPU time, because on a shared machine the wall time also counts the waits for a core).
"""

from __future__ import annotations

import argparse
import difflib
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from harness import ProcessRun, load_line, median_range, run_process

REPO = Path(__file__).resolve().parents[1]
CHARACTER = "narrator"
HELP_LIMIT_S = 0.5
HELP_ROUNDS = 5
SENTENCES = (
    "The quick brown fox jumps over the lazy dog near the river bank today.",
    1.0,
    "She sells sea shells by the sea shore every single summer morning.",
    1.0,
    "A journey of a thousand miles begins with one small step forward.",
    1.0,
    "Hello there, how are you doing on this fine and sunny afternoon?",
)
SECOND_TAKE = (
    "We walked home along the river after the long and quiet meeting.",
    1.0,
    "It was nice to meet you at last, after all these many years apart.",
)
STEPS = ("prepare_audio", "transcribe", "train_lora", "evaluate_voice", "export_dataset", "serve_vllm")
WHISPER_FAST = ("--beam-size", "1", "--temperature-increment-on-fallback", "0", "--threads", "1")
EVAL_FEW = (
    "--sentences",
    "1",
    "--max-heldout",
    "1",
    "--max-tokens",
    "70",
    "--no-progress",
    "--device",
    "cpu",
)


BAD_INPUT = "bad: "
"""Commands labelled so are bad inputs: they must exit 2 (``UsageError``); every other command exits 0."""


def expected_exit(label: str) -> int:
    return 2 if label.startswith(BAD_INPUT) else 0


def commands(models: Path) -> list[tuple[str, list[str]]]:
    """(label, [script, args...]) in run order; paths are relative to the run folder."""
    tiny = ["--base-model", str(models / "orpheus"), "--snac-model", str(models / "snac")]
    whisper = ["--model", str(models / "whisper.pt"), "--device", "cpu", "--no-progress", *WHISPER_FAST]
    prepared, second = f"prepared/{CHARACTER}", "prepared/second"
    train = ["--max-steps", "2", "--save-steps", "1", "--eval-clips", "1", "--keep-checkpoints"]
    evaluate = ["--whisper-model", str(models / "whisper.pt"), *EVAL_FEW]
    return [
        *[(f"{step} --help", [step, "--help"]) for step in STEPS],
        ("prepare-audio", ["prepare_audio", f"raw_audio/{CHARACTER}", prepared]),
        ("prepare-audio (second)", ["prepare_audio", f"raw_audio/{CHARACTER}", second]),
        ("transcribe --no-quality", ["transcribe", prepared, *whisper, "--no-quality"]),
        ("transcribe (resume, quality)", ["transcribe", prepared, *whisper]),
        (
            "transcribe --exclude-flagged",
            ["transcribe", second, *whisper, "--exclude-flagged", "--speaker-threshold", "0.99"],
        ),
        (
            "train-lora",
            ["train_lora", CHARACTER, prepared, *tiny, "--device", "cpu", "--no-progress", *train],
        ),
        ("evaluate", ["evaluate_voice", CHARACTER, *evaluate]),
        (
            "evaluate --compare checkpoint",
            [
                "evaluate_voice",
                CHARACTER,
                "--compare",
                f"voices/.checkpoints-{CHARACTER}/checkpoint-2",  # the last step: always kept
                *evaluate,
            ],
        ),
        ("evaluate --all", ["evaluate_voice", "--all", *evaluate]),
        ("export-dataset", ["export_dataset", prepared, f"exports/{CHARACTER}"]),
        ("serve-vllm --dry-run", ["serve_vllm", "--dry-run", "--base-model", str(models / "orpheus")]),
        ("bad: transcribe a missing folder", ["transcribe", "prepared/nobody", *whisper]),
        ("bad: train-lora an existing voice", ["train_lora", CHARACTER, prepared, *tiny, "--device", "cpu"]),
        ("bad: evaluate an unknown voice", ["evaluate_voice", "nobody", *evaluate]),
        ("bad: export a missing folder", ["export_dataset", "prepared/nobody", "exports/nobody"]),
    ]


# --- what may differ between two runs of the same code -----------------------------------------------
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d|Z)?")
RUN_DEPENDENT: dict[str, str] = {
    "ISO timestamps": "created_at in voice.json and eval.json, and the time line of summary.md / evaluate's output",
    "dataset.snac_encode_seconds": "voice.json: how long SNAC encoding took",
    "audio measures seconds": "transcribe's 'audio measures ... for N clips in X s ... (Y s waited for)'",
    "trainer runtime": "*_runtime, *_per_second and total_flos in trainer_state.json and train-lora's log lines",
    "torch serialization_id": "the random id torch.save writes into each checkpoint zip (.pt/.pth/.bin)",
    "training_args.bin": "the Trainer's pickled arguments: they hold a dated logging_dir",
}


TRAINER_TIMING = re.compile(r"('\w+(?:_runtime|_per_second)': )'[^']*'")


def normalise_text(text: str) -> str:
    text = ISO_TIME.sub("<time>", text)
    text = TRAINER_TIMING.sub(r"\1'<run-dependent>'", text)
    text = re.sub(r"\([\d.]+ s waited for\)", "(<s> s waited for)", text)
    return re.sub(
        r"(audio measures \(speaker, DNSMOS, speech time\) for \d+ clips in )[\d.]+ s", r"\1<s> s", text
    )


def _json_without(data, paths: list[tuple[str, ...]]):
    for path in paths:
        node = data
        for key in path[:-1]:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict) and path[-1] in node:
            node[path[-1]] = "<run-dependent>"
    return data


def _trainer_state(data):
    for entry in data.get("log_history", []):
        for key in list(entry):
            if key.endswith(("_runtime", "_per_second")):
                entry[key] = "<run-dependent>"
    data["total_flos"] = "<run-dependent>"
    return data


def _torch_zip(raw: bytes) -> bytes:
    """The members of a torch.save zip, in order, without the random serialization_id."""
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        parts = [
            name.encode() + b"\0" + z.read(name)
            for name in z.namelist()
            if not name.endswith("/.data/serialization_id")
        ]
    return b"\0\0".join(parts)


def comparable(relative: str, raw: bytes) -> bytes:
    """A file's bytes with only its run-dependent parts (``RUN_DEPENDENT``) blanked."""
    name = Path(relative).name
    if name == "training_args.bin":
        return b"<run-dependent>"
    if name.endswith((".pt", ".pth", ".bin")) and zipfile.is_zipfile(io.BytesIO(raw)):
        return _torch_zip(raw)
    if name in ("voice.json", "eval.json", "trainer_state.json"):
        data = json.loads(raw)
        if name == "voice.json":
            data = _json_without(data, [("created_at",), ("dataset", "snac_encode_seconds")])
        elif name == "eval.json":
            data = _json_without(data, [("created_at",)])
        else:
            data = _trainer_state(data)
        return json.dumps(data, indent=1, sort_keys=True).encode()
    if name.endswith((".md", ".csv", ".txt", ".jsonl", ".json")):
        return normalise_text(raw.decode("utf-8", errors="replace")).encode()
    return raw


# --- running one side ---------------------------------------------------------------------------------
@dataclass
class Side:
    label: str
    root: Path


def export_side(spec: str, work: Path, label: str) -> Side:
    """A checkout folder as is, or a git revision exported into ``work/label``."""
    if Path(spec).is_dir():
        return Side(f"{label} ({spec})", Path(spec).resolve())
    target = work / label
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", spec], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(target, filter="data")
    return Side(f"{label} ({spec})", target)


def environment(side: Side) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICELAB_")}
    env.update(
        PYTHONPATH=str(side.root / "src"),
        PYTHONHASHSEED="0",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        COLUMNS="100",  # argparse wraps --help to the terminal width
    )
    return env


def build_inputs(side: Side, models: Path, raw: Path) -> None:
    """Tiny models and espeak-ng recordings, by ``side``'s voicelab.testing (deterministic seeds)."""
    code = (
        "import json, sys, torch; from pathlib import Path; from snac import SNAC; from voicelab import testing\n"
        "m, r = Path(sys.argv[1]), Path(sys.argv[2])\n"
        "testing.build_tiny_orpheus(m / 'orpheus'); testing.build_tiny_whisper(m / 'whisper.pt')\n"
        # the tiny SNAC of voicelab.testing, without the noise blocks (see the module docstring)
        "config = {**testing.TINY_SNAC_CONFIG, 'noise': False}; torch.manual_seed(0); (m / 'snac').mkdir()\n"
        "(m / 'snac' / 'config.json').write_text(json.dumps(config, indent=2))\n"
        "torch.save(SNAC(**config).state_dict(), m / 'snac' / 'pytorch_model.bin')\n"
        f"testing.speak({list(SENTENCES)!r}, r / 'take1.wav'); testing.speak({list(SECOND_TAKE)!r}, r / 'take2.wav')\n"
    )
    subprocess.run([sys.executable, "-c", code, str(models), str(raw)], env=environment(side), check=True)


def run_side(
    side: Side, run_dir: Path, models: Path, raw: Path, logs: Path
) -> tuple[dict[str, bytes], list[str]]:
    """Every command's output and every file left, keyed ``out:LABEL`` and ``file:PATH``, and the commands
    that did not exit as expected. Each command's output is also written to ``logs/``."""
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.rmtree(logs, ignore_errors=True)
    (run_dir / "raw_audio").mkdir(parents=True)
    logs.mkdir(parents=True)
    shutil.copytree(raw, run_dir / "raw_audio" / CHARACTER)
    found: dict[str, bytes] = {}
    failed = []
    for label, (script, *args) in commands(models):
        began = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(side.root / "scripts" / f"{script}.py"), *args],
            cwd=run_dir,
            env=environment(side),
            capture_output=True,
            text=True,
        )
        print(
            f"  {side.label}: {label}: exit {proc.returncode} ({time.perf_counter() - began:.1f} s)",
            flush=True,
        )
        text = f"exit {proc.returncode}\n--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}"
        (logs / f"{re.sub(r'[^A-Za-z0-9_-]+', '_', label)}.txt").write_text(text, encoding="utf-8")
        found[f"out:{label}"] = normalise_text(text).encode()
        if proc.returncode != expected_exit(label):
            failed.append(f"{side.label}: {label} exited {proc.returncode}, not {expected_exit(label)}")
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        relative = path.relative_to(run_dir).as_posix()
        found[f"file:{relative}"] = comparable(relative, path.read_bytes())
    return found, failed


def diff(before: dict[str, bytes], after: dict[str, bytes]) -> list[str]:
    problems = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if a == b:
            continue
        if a is None or b is None:
            problems.append(f"{key}: only {'after' if a is None else 'before'}")
            continue
        try:
            lines = difflib.unified_diff(
                a.decode().splitlines(), b.decode().splitlines(), "before", "after", lineterm="", n=2
            )
            problems.append(f"{key}: differs\n" + "\n".join(lines))
        except UnicodeDecodeError:
            problems.append(f"{key}: binary content differs ({len(a)} vs {len(b)} bytes)")
    return problems


def help_times(sides: list[Side], rounds: int) -> dict[tuple[str, str], list[ProcessRun]]:
    """Wall and CPU seconds of ``scripts/STEP.py --help`` (the whole process), sides interleaved per round."""
    times: dict[tuple[str, str], list[ProcessRun]] = {}
    for r in range(rounds):
        order = sides if r % 2 == 0 else sides[::-1]
        for step in STEPS:
            for side in order:
                command = [sys.executable, str(side.root / "scripts" / f"{step}.py"), "--help"]
                times.setdefault((side.label, step), []).append(run_process(command, env=environment(side)))
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("before", help="git revision or checkout folder")
    parser.add_argument("after", nargs="?", default=str(REPO), help="git revision or checkout folder")
    parser.add_argument("--work", type=Path, default=Path("/tmp/voicelab-compare"), help="scratch folder")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (both sides' files)")
    parser.add_argument("--help-rounds", type=int, default=HELP_ROUNDS, help="--help timing rounds (0: skip)")
    args = parser.parse_args(argv)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    print(load_line("before"))
    sides = [export_side(args.before, work, "before"), export_side(args.after, work, "after")]
    models, raw = work / "models", work / "raw"
    shutil.rmtree(models, ignore_errors=True)
    shutil.rmtree(raw, ignore_errors=True)
    build_inputs(sides[0], models, raw)
    results, problems = [], []
    for side in sides:
        name = side.label.split()[0]
        found, failed = run_side(side, work / "run", models, raw, work / f"logs-{name}")
        results.append(found)
        problems += failed
        shutil.rmtree(work / f"run-{name}", ignore_errors=True)
        os.replace(work / "run", work / f"run-{name}")
    problems += diff(*results)
    print(f"compared {len(set(results[0]) | set(results[1]))} outputs and files")
    print("ignored as run-dependent: " + "; ".join(f"{k} ({v})" for k, v in RUN_DEPENDENT.items()))
    for problem in problems:
        print(problem)
    slow = _report_help(sides, args.help_rounds)
    print(load_line("after"))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print("identical" if not problems else f"{len(problems)} difference(s)")
    return 0 if not problems and not slow else 1


def _report_help(sides: list[Side], rounds: int) -> list[str]:
    if rounds <= 0:
        return []
    times = help_times(sides, rounds)
    slow = []
    for (label, step), runs in sorted(times.items(), key=lambda item: (item[0][1], item[0][0])):
        wall, cpu = [r.wall_s for r in runs], [r.cpu_s for r in runs]
        print(f"--help {step:15s} {label:30s} wall s {median_range(wall)}, CPU s {median_range(cpu)}")
        if statistics.median(cpu) >= HELP_LIMIT_S:
            slow.append(f"{label} {step}")
    if slow:
        print(f"--help at or over {HELP_LIMIT_S} CPU s: {', '.join(slow)}")
    return slow


if __name__ == "__main__":
    sys.exit(main())
