"""What a trained voice is on disk, and the rules vLLM applies to its LoRA adapter.

A voice is a folder ``voices/{name}/``; ``VoiceFolder(dir)`` is its only owner: it knows every path in it
and reads and writes every file, and ``voice_folders(voices_dir)`` is the one scan of ``voices/``. Other
modules ask it (``voice.adapter_config_path``, ``voice.read_metadata()``, ``voice.eval_dir``) and never
spell a file name (``tests/test_architecture.py`` checks it).

=================================  ==============  ====================================================
file                               written by      what
=================================  ==============  ====================================================
``adapter_config.json``            train-lora      the peft LoRA adapter's configuration (vLLM reads it)
``adapter_model.safetensors``      train-lora      its weights (``adapter_model.bin`` also served)
``voice.json``                     train-lora      how it was made, and the prompt prefix serving must use
``loss_log.csv``                   train-lora      ``step,epoch,loss,eval_loss,learning_rate,grad_norm``
``loss_curve.png``                 train-lora      the training (and held-out) loss against step
``eval/``                          evaluate        ``eval.json`` (every number), ``summary.md`` (verdicts),
                                                   ``samples/*.wav``, ``compare-OTHER.md`` (``--compare``)
``eval-checkpoint-STEP/``          evaluate        the same for a checkpoint (``--compare`` with one)
=================================  ==============  ====================================================

Beside the voices, ``voices/`` holds train-lora's dot-folders (never voices): ``.staging-NAME-PID/`` (a
voice being assembled), ``.checkpoints-NAME/checkpoint-STEP/`` (for ``--resume``) and
``.replaced-NAME-PID/`` (an old voice set aside while its replacement moves in).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from voicelab import orpheus
from voicelab.errors import UsageError
from voicelab.fileio import atomic_output, write_text_atomic

logger = logging.getLogger(__name__)

ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
ADAPTER_PICKLE_FILE = "adapter_model.bin"
ADAPTER_WEIGHT_FILES = (ADAPTER_WEIGHTS_FILE, ADAPTER_PICKLE_FILE)
"""peft writes safetensors; vLLM also loads the older pickle file."""
VOICE_FILE = "voice.json"
MODEL_CARD_FILE = "README.md"
"""The placeholder model card peft writes beside an adapter ("More Information Needed"); voice.json
describes the voice, so training removes it."""
LOSS_LOG_FILE = "loss_log.csv"
LOSS_PLOT_FILE = "loss_curve.png"
EVAL_DIR = "eval"
EVAL_FILE = "eval.json"
EVAL_SUMMARY_FILE = "summary.md"
SAMPLES_DIR = "samples"
COMPARE_PREFIX = "compare-"
STAGING_PREFIX = ".staging-"
CHECKPOINTS_PREFIX = ".checkpoints-"
REPLACED_PREFIX = ".replaced-"
FILE_NAMES = (
    ADAPTER_CONFIG_FILE,
    ADAPTER_WEIGHTS_FILE,
    ADAPTER_PICKLE_FILE,
    VOICE_FILE,
    LOSS_LOG_FILE,
    LOSS_PLOT_FILE,
    EVAL_FILE,
    EVAL_SUMMARY_FILE,
    COMPARE_PREFIX,
    STAGING_PREFIX,
    CHECKPOINTS_PREFIX,
    REPLACED_PREFIX,
)
"""Every file name this module gives in ``voices/``: no other module may spell one."""
DIR_NAMES = (EVAL_DIR, SAMPLES_DIR)
"""Folder names that are common words: other modules may not use them as a whole string either."""
ENGINE_NAME = "orpheus"
DEFAULT_BASE_MODEL = "canopylabs/orpheus-tts-0.1-pretrained"
"""The user guide's base model; an adapter records the base it was trained on in ``base_model_name_or_path``."""
DEFAULT_SNAC_MODEL = "hubertsiuzdak/snac_24khz"

VOICE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # 64: MAX_VOICE_NAME_CHARS
"""A voice name is a folder name and a vLLM adapter name: letters, digits, '_' and '-' only."""

LORA_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""The seven Llama projections; vLLM serves LoRA on these."""
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""Values vLLM accepts for ``--max-lora-rank`` (its default is 16)."""


class InvalidVoiceNameError(UsageError, ValueError):
    """A voice name that is not a safe folder and vLLM adapter name."""


def validate_voice_name(name: str) -> str:
    """Return ``name`` if it is a safe folder/adapter name, else raise with what is allowed."""
    if not VOICE_NAME_RE.fullmatch(name or ""):
        raise InvalidVoiceNameError(
            f"invalid voice name {name!r}: use 1-64 letters, digits, '_' or '-' "
            "(it becomes a folder under voices/ and a vLLM adapter name)"
        )
    return name


_NOT_IN_A_NAME = re.compile(r"[^A-Za-z0-9_-]+")
MAX_VOICE_NAME_CHARS = 64


def suggest_voice_name(text: str) -> str:
    """A valid voice name close to ``text``: each run of other characters becomes ``_``
    (``"Old Keeper"`` -> ``"Old_Keeper"``), cut to the allowed length; ``"voice"`` when nothing is left."""
    name = _NOT_IN_A_NAME.sub("_", text).strip("_")[:MAX_VOICE_NAME_CHARS]
    return name or "voice"


def default_prompt_prefix(name: str) -> str:
    """The prefix training puts before each transcript: the multi-speaker convention ``"{name}: "``."""
    return f"{name}: "


@dataclass
class VoiceMetadata:
    """Contents of ``voice.json``."""

    name: str
    base_model: str
    prompt_prefix: str
    engine: str = ENGINE_NAME
    snac_model: str = DEFAULT_SNAC_MODEL
    sample_rate: int = orpheus.SAMPLE_RATE
    drop_duplicate_frames: bool = False
    dataset: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    final_loss: float | None = None
    final_eval_loss: float | None = None
    """The last eval loss logged; with early stopping the published step's is ``published_eval_loss``."""
    eval_clips: list[str] = field(default_factory=list)
    """Clips held out of training (``make evaluate`` uses them as the speaker reference)."""
    tags: dict[str, dict[str, int]] = field(default_factory=dict)
    """The expressive tags the voice was trained with: ``{"laugh": {"clips": n, "occurrences": m}}``
    (training clips only; a tag missing here was never seen, so the voice may read it aloud)."""
    stopping: dict[str, Any] = field(default_factory=dict)
    """How long training ran and which step is this adapter: the epochs and how they were chosen, early
    stopping's settings, the best step and its eval loss, the step training stopped at, why
    (``stop_reason``: ``early_stopped`` or ``completed``; ``stop_detail`` in words) and ``published_step``
    (``voicelab.training.length.StopRecord``; empty for voices trained before it was recorded)."""
    created_at: str | None = None
    voicelab_version: str | None = None
    base_model_fingerprint: str | None = None
    """The base model's content (``voicelab.model_identity``): the same model at another path is accepted."""
    base_model_hub_id: str | None = None

    @property
    def published_eval_loss(self) -> float | None:
        """The held-out eval loss of the adapter as published: the best checkpoint's when early stopping
        chose it, else the last one logged."""
        if self.stopping.get("early_stopping") and self.stopping.get("best_eval_loss") is not None:
            return self.stopping["best_eval_loss"]
        return self.final_eval_loss

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VoiceMetadata:
        known = {f for f in cls.__dataclass_fields__}
        missing = [k for k in ("name", "base_model", "prompt_prefix") if k not in data]
        if missing:
            raise ValueError(f"voice.json lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def read(cls, folder: Path) -> VoiceMetadata:
        """``voice.json`` of the voice in ``folder``; ``ValueError`` naming the file when it is unusable."""
        from voicelab.fileio import UnsafePathError, read_text_inside  # no symlink out of the folder

        path = Path(folder) / VOICE_FILE
        try:
            return cls.from_dict(json.loads(read_text_inside(folder, VOICE_FILE)))
        except (OSError, json.JSONDecodeError, ValueError, TypeError, UnsafePathError) as e:
            raise ValueError(f"{path}: unreadable voice.json ({e})") from e


def smallest_vllm_rank(rank: int) -> int:
    """The smallest ``--max-lora-rank`` value vLLM allows that fits ``rank``."""
    for allowed in VLLM_LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise ValueError(f"LoRA rank {rank} is above vLLM's largest --max-lora-rank ({VLLM_LORA_RANKS[-1]})")


def adapter_problems(
    config: dict[str, Any],
    *,
    max_lora_rank: int | None = None,
    base_model: str | None = None,
) -> list[str]:
    """Reasons vLLM would refuse this ``adapter_config.json`` (empty list: it will load).

    Rules from vLLM's LoRA loading: LoRA only; no ``modules_to_save`` (no resized/trained embeddings or
    lm_head); no DoRA; bias "none"; targets among the Llama projections; rank within ``--max-lora-rank``.
    ``base_model``, when given, must equal ``base_model_name_or_path``.
    """
    problems = []
    peft_type = str(config.get("peft_type", "")).upper()
    if peft_type != "LORA":
        problems.append(f"peft_type is {config.get('peft_type')!r}, vLLM serves only LORA adapters")
    if config.get("modules_to_save"):
        problems.append(
            f"modules_to_save={config['modules_to_save']!r}: vLLM cannot load adapters that train whole "
            "modules (retrain without modules_to_save)"
        )
    if config.get("use_dora"):
        problems.append("use_dora=true: vLLM does not serve DoRA adapters")
    if config.get("bias", "none") != "none":
        problems.append(f"bias={config.get('bias')!r}: vLLM needs bias 'none'")
    targets = config.get("target_modules") or []
    if isinstance(targets, str):
        problems.append(f"target_modules is a pattern ({targets!r}); list the Llama projections instead")
    else:
        unknown = sorted(set(targets) - set(LORA_TARGET_MODULES))
        if unknown:
            problems.append(f"target_modules {unknown} are not Llama projections vLLM serves LoRA on")
    rank = config.get("r")
    if not isinstance(rank, int) or rank < 1:
        problems.append(f"rank r={rank!r} is not a positive integer")
    elif max_lora_rank is not None and rank > max_lora_rank:
        problems.append(f"rank {rank} is above the served --max-lora-rank {max_lora_rank}")
    elif rank > VLLM_LORA_RANKS[-1]:
        problems.append(f"rank {rank} is above vLLM's largest --max-lora-rank {VLLM_LORA_RANKS[-1]}")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        problems.append("rank_pattern/alpha_pattern are set; vLLM support for them is unreliable")
    if base_model is not None and config.get("base_model_name_or_path") != base_model:
        problems.append(
            f"trained on base model {config.get('base_model_name_or_path')!r}, but {base_model!r} is served"
        )
    return problems


# ------------------------------------------------------------------------------------------- loss_log.csv

LOSS_LOG_FIELDS = ("step", "epoch", "loss", "eval_loss", "learning_rate", "grad_norm")
"""``eval_loss``: loss on the held-out clips (blank when none were held out or not scored at that step)."""
LOSS_FORMAT = ".6f"


@dataclass(frozen=True)
class LossPoint:
    """One row of ``loss_log.csv``."""

    step: int
    epoch: float
    loss: float | None
    """Training loss (None at a step where only the eval loss was logged)."""
    learning_rate: float | None = None
    grad_norm: float | None = None
    eval_loss: float | None = None


def _blank(value: float | None, fmt: str = ".6g") -> str:
    return "" if value is None else format(value, fmt)


def _write_loss_log(path: Path, points: Sequence[LossPoint]) -> Path:
    with atomic_output(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(LOSS_LOG_FIELDS)
        for p in points:
            writer.writerow(
                [
                    p.step,
                    f"{p.epoch:.4f}",
                    _blank(p.loss, LOSS_FORMAT),
                    _blank(p.eval_loss, LOSS_FORMAT),
                    _blank(p.learning_rate),
                    _blank(p.grad_norm),
                ]
            )
    return path


def _read_loss_log(path: Path) -> list[LossPoint]:
    def number(row: dict, key: str) -> float | None:
        return float(row[key]) if row.get(key) else None

    with Path(path).open(newline="", encoding="utf-8") as f:
        return [
            LossPoint(
                step=int(row["step"]),
                epoch=float(row["epoch"]),
                loss=number(row, "loss"),
                learning_rate=number(row, "learning_rate"),
                grad_norm=number(row, "grad_norm"),
                eval_loss=number(row, "eval_loss"),
            )
            for row in csv.DictReader(f)
        ]


# ------------------------------------------------------------------------------------------------- eval/

PRIVATE_SUMMARY_KEYS = ("closest_training_clip",)
"""Left out of the public voice list: a dataset clip's key is a training detail (it is in eval.json)."""


CHECK_FIELDS = ("check", "value", "threshold", "verdict", "advice")
"""What each check of ``eval.json`` says: its name, the number, the bar, the verdict, what to try."""


@dataclass(frozen=True)
class EvalView:
    """What the studio shows of an evaluation: the summary text, the numbers, the pictures' names."""

    summary: str | None
    numbers: dict[str, Any] | None
    pictures: list[str]


# ---------------------------------------------------------------------------------------- the folder object


class VoiceFolder:
    """The folder ``voices/NAME/`` (see the module docstring): its paths, and every read and write."""

    def __init__(self, folder: Path | str):
        self.dir = Path(folder)

    def __repr__(self) -> str:
        return f"VoiceFolder({str(self.dir)!r})"

    @property
    def name(self) -> str:
        return self.dir.name

    # --- the adapter -----------------------------------------------------------------------------
    @property
    def adapter_config_path(self) -> Path:
        return self.dir / ADAPTER_CONFIG_FILE

    @property
    def adapter_weights_path(self) -> Path:
        return self.dir / ADAPTER_WEIGHTS_FILE

    @property
    def adapter_weight_paths(self) -> list[Path]:
        """Every weights file name vLLM loads (safetensors first)."""
        return [self.dir / name for name in ADAPTER_WEIGHT_FILES]

    def has_adapter(self) -> bool:
        """True when ``adapter_config.json`` is here: a trained voice (or a checkpoint of one)."""
        return self.adapter_config_path.is_file()

    def read_adapter_config(self) -> Any:
        """``adapter_config.json`` as parsed JSON (``OSError``/``ValueError`` when it cannot be; a symlink
        out of the folder: ``UnsafePathError``)."""
        from voicelab.fileio import read_text_inside

        return json.loads(read_text_inside(self.dir, ADAPTER_CONFIG_FILE))

    def remove_model_card(self) -> None:
        (self.dir / MODEL_CARD_FILE).unlink(missing_ok=True)

    def fingerprint(self) -> tuple:
        """Sizes and mtimes of the adapter files and voice.json: it changes when the voice is retrained."""
        parts = []
        for name in (ADAPTER_CONFIG_FILE, *ADAPTER_WEIGHT_FILES, VOICE_FILE):
            path = self.dir / name
            if path.is_file():
                stat = path.stat()
                parts.append((name, stat.st_size, stat.st_mtime_ns))
        return tuple(parts)

    def resolve_files(self, root: Path) -> ResolvedVoiceFiles:
        """Every file of the voice resolved inside ``root`` (``voices/``): a symlink pointing out (the
        folder, its config, weights or voice.json) raises ``UnsafePathError``."""
        from voicelab.fileio import resolve_inside

        name = self.name
        return ResolvedVoiceFiles(
            folder=resolve_inside(root, name),
            adapter_config=resolve_inside(root, f"{name}/{ADAPTER_CONFIG_FILE}"),
            weights=[resolve_inside(root, f"{name}/{w}") for w in ADAPTER_WEIGHT_FILES],
            metadata=resolve_inside(root, f"{name}/{VOICE_FILE}"),
        )

    # --- voice.json ------------------------------------------------------------------------------
    @property
    def metadata_path(self) -> Path:
        return self.dir / VOICE_FILE

    def read_metadata(self) -> VoiceMetadata:
        return VoiceMetadata.read(self.dir)

    def write_metadata(self, metadata: VoiceMetadata) -> None:
        write_text_atomic(self.metadata_path, metadata.to_json())

    # --- the loss files --------------------------------------------------------------------------
    @property
    def loss_log_path(self) -> Path:
        return self.dir / LOSS_LOG_FILE

    @property
    def loss_curve_path(self) -> Path:
        return self.dir / LOSS_PLOT_FILE

    def write_loss_log(self, points: Sequence[LossPoint]) -> Path:
        """``loss_log.csv``, atomically."""
        return _write_loss_log(self.loss_log_path, points)

    def read_loss_log(self) -> list[LossPoint]:
        """The points of ``loss_log.csv`` (logs written before the ``eval_loss`` column read as without it)."""
        return _read_loss_log(self.loss_log_path)

    def write_loss_curve(self, draw: Callable[[Path], None]) -> Path:
        """``draw(tmp)`` writes the PNG to a temporary path, which then replaces ``loss_curve.png``."""
        with atomic_output(self.loss_curve_path) as tmp:
            draw(tmp)
        return self.loss_curve_path

    # --- eval/ -----------------------------------------------------------------------------------
    @property
    def eval_dir(self) -> Path:
        """``eval/``: the last ``make evaluate`` of the voice."""
        return self.dir / EVAL_DIR

    def checkpoint_eval_dir(self, checkpoint: str) -> Path:
        """``eval-checkpoint-STEP/``: the evaluation of one of the voice's checkpoints (never inside it)."""
        return self.dir / f"{EVAL_DIR}-{checkpoint}"

    @property
    def eval_json_path(self) -> Path:
        return self.eval_dir / EVAL_FILE

    @property
    def eval_summary_path(self) -> Path:
        """``eval/summary.md``: one verdict per check, for a person to read."""
        return self.eval_dir / EVAL_SUMMARY_FILE

    @staticmethod
    def sample_file(model: str, sample_id: str) -> str:
        """Where one generated sample goes, relative to its eval folder (as ``eval.json`` records it)."""
        return f"{SAMPLES_DIR}/{model}_{sample_id}.wav"

    def write_evaluation(
        self,
        eval_dir: Path,
        report: Mapping[str, Any],
        summary: str,
        samples: Mapping[str, Any],
        sample_rate: int,
    ) -> Path:
        """``eval.json`` (``report``), ``summary.md`` and ``samples/*.wav`` (``samples``: ``sample_file``
        -> float32 audio) under ``eval_dir``; old samples are replaced. Returns the ``eval.json`` path."""
        from voicelab.audio import write_wav

        samples_dir = Path(eval_dir) / SAMPLES_DIR
        if samples_dir.exists():
            shutil.rmtree(samples_dir)
        samples_dir.mkdir(parents=True)
        for file, audio in samples.items():
            write_wav(Path(eval_dir) / file, audio, sample_rate)
        numbers = Path(eval_dir) / EVAL_FILE
        write_text_atomic(numbers, json.dumps(report, indent=2, allow_nan=False) + "\n")
        write_text_atomic(Path(eval_dir) / EVAL_SUMMARY_FILE, summary)
        return numbers

    def write_comparison(self, other: str, table: str) -> Path:
        """``eval/compare-OTHER.md``: the side-by-side table of ``--compare``."""
        out = self.eval_dir / f"{COMPARE_PREFIX}{other}.md"
        write_text_atomic(out, table)
        return out

    def read_eval_summary(self) -> dict[str, Any] | None:
        """The headline numbers and verdicts of the voice's last evaluation (None when it has none or it is
        unreadable); read through ``fileio.open_inside`` so a planted symlink cannot leak another file."""
        from voicelab.fileio import UnsafePathError, read_text_inside

        try:
            data = json.loads(read_text_inside(self.dir, f"{EVAL_DIR}/{EVAL_FILE}"))
            public = {k: v for k, v in data["summary"].items() if k not in PRIVATE_SUMMARY_KEYS}
            return {
                "created_at": data["created_at"],
                **public,
                "verdicts": {c["check"]: c["verdict"] for c in data["checks"]},
            }
        except (UnsafePathError, OSError, ValueError, KeyError, TypeError):
            return None

    def read_eval_checks(self) -> dict[str, Any] | None:
        """The last evaluation's checks (``CHECK_FIELDS`` each) and when it ran; None without one, or when
        ``eval.json`` is unreadable or points out of the voice folder."""
        data = self._read_inside(f"{EVAL_DIR}/{EVAL_FILE}")
        if not isinstance(data, dict) or not isinstance(data.get("checks"), list):
            return None
        checks = [{k: c.get(k) for k in CHECK_FIELDS} for c in data["checks"] if isinstance(c, dict)]
        return {"created_at": data.get("created_at"), "checks": checks}

    def read_card(self) -> dict[str, Any]:
        """What the studio's voice card adds to the public voice list: the prompt prefix serving uses, the
        base model without a server path (its hub id, or its folder's name), whether a loss curve exists,
        and the last evaluation's checks. Every file read through ``fileio.open_inside``."""
        from voicelab.models import looks_like_local_path

        meta = self._read_inside(VOICE_FILE)
        meta = meta if isinstance(meta, dict) else {}
        base = meta.get("base_model_hub_id") or meta.get("base_model")
        if base and not meta.get("base_model_hub_id") and looks_like_local_path(base):
            base = f"{Path(str(base)).name} (a folder)"
        return {
            "prompt_prefix": meta.get("prompt_prefix"),
            "base_model": base or None,
            "loss_curve": self.safe_loss_curve() is not None,
            "evaluation": self.read_eval_checks(),
        }

    def safe_loss_curve(self) -> Path | None:
        """``loss_curve.png`` resolved inside the folder; None when there is none (or it points out)."""
        from voicelab.fileio import UnsafePathError, resolve_inside

        try:
            path = resolve_inside(self.dir, LOSS_PLOT_FILE)
        except UnsafePathError:
            return None
        return path if path.is_file() else None

    def open_loss_curve(self):
        """``loss_curve.png`` opened through ``fileio.open_inside`` (binary; the caller closes it):
        ``FileNotFoundError`` without one, ``UnsafePathError`` when it points out of the folder."""
        from voicelab.fileio import open_inside

        return open_inside(self.dir, LOSS_PLOT_FILE)

    def _read_inside(self, relative: str) -> Any:
        """A JSON file of the folder read through ``fileio.read_text_inside``; None when absent, unreadable
        or a symlink out of the folder."""
        from voicelab.fileio import UnsafePathError, read_text_inside

        try:
            return json.loads(read_text_inside(self.dir, relative))
        except FileNotFoundError:
            return None
        except (UnsafePathError, OSError, ValueError) as e:
            logger.warning("%s/%s: unreadable (%s); not shown", self.dir, relative, e)
            return None

    def safe_eval_dir(self) -> Path:
        """``eval/`` resolved inside the voice folder (``UnsafePathError`` when it points out)."""
        from voicelab.fileio import resolve_inside

        return resolve_inside(self.dir, EVAL_DIR) if self.eval_dir.exists() else self.eval_dir

    def read_eval_view(self, picture_suffixes: Sequence[str]) -> EvalView | None:
        """The evaluation as the studio shows it (None without one); an unreadable eval.json is left out.

        Every file is read through ``fileio.open_inside``: one that is a symlink out of the folder raises
        ``UnsafePathError`` instead of being read. Pictures whose name no answer can carry are not listed.
        """
        from voicelab.fileio import name_problem, read_text_inside

        folder = self.safe_eval_dir()
        if not folder.is_dir():
            return None
        try:
            parsed = json.loads(read_text_inside(folder, EVAL_FILE))
        except FileNotFoundError:
            parsed = None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            logger.warning("%s/%s: unreadable (%s); not shown", folder, EVAL_FILE, e)
            parsed = None
        try:
            summary = read_text_inside(folder, EVAL_SUMMARY_FILE, errors="replace")
        except FileNotFoundError:
            summary = None
        pictures = (
            p
            for p in folder.iterdir()
            if name_problem(p.name) is None and p.suffix.lower() in picture_suffixes
        )
        return EvalView(
            summary=summary, numbers=parsed, pictures=sorted(p.name for p in pictures if p.is_file())
        )


@dataclass(frozen=True)
class ResolvedVoiceFiles:
    """A voice's files with every symlink resolved, each checked to be inside ``voices/``."""

    folder: Path
    adapter_config: Path
    weights: list[Path]
    metadata: Path


def voice_folders(voices_dir: Path | str) -> list[VoiceFolder]:
    """The one scan of ``voices/``: every sub-folder that may be a voice (dot-folders and stray files are
    not), sorted by name. A missing ``voices_dir`` has none (a fresh checkout has trained nothing yet)."""
    root = Path(voices_dir)
    if not root.is_dir():
        return []
    return [VoiceFolder(p) for p in sorted(root.iterdir()) if not p.name.startswith(".") and p.is_dir()]


def trained_voices(voices_dir: Path | str) -> Iterator[VoiceFolder]:
    """The folders of ``voice_folders`` that hold an adapter."""
    return (v for v in voice_folders(voices_dir) if v.has_adapter())


# --------------------------------------------------------------------------------- voices/ around the voices


def checkpoints_dir(voices_dir: Path | str, name: str) -> Path:
    """``.checkpoints-NAME/``: train-lora's Trainer checkpoints of voice ``name`` (for ``--resume``)."""
    return Path(voices_dir) / f"{CHECKPOINTS_PREFIX}{name}"


def staging_dir(voices_dir: Path | str, name: str) -> Path:
    """``.staging-NAME-PID/``: where this process assembles voice ``name`` before publishing it."""
    return Path(voices_dir) / f"{STAGING_PREFIX}{name}-{os.getpid()}"


def set_aside_dir(voice_dir: Path) -> Path:
    """``.replaced-NAME-PID/``: where an old voice waits while its replacement is renamed into place."""
    return voice_dir.with_name(f"{REPLACED_PREFIX}{voice_dir.name}-{os.getpid()}")
