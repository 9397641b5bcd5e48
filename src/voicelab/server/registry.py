"""The voice registry: which folders under ``voices/`` are servable voices, and keeping the engine in step.

``scan_voices`` is pure (filesystem in, voices and skip reasons out); ``VoiceRegistry`` holds the current
scan, diffs a rescan against it, and loads/unloads adapters in the engine so new voices go live without a
restart. A bad folder is skipped with its reason (logged once), never a crash: one broken adapter must not
take every other voice down (vLLM itself refuses to start on a bad static adapter).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicelab.engine.base import EngineError, EngineUnavailableError, TokenEngine, UnknownVoiceError, Voice
from voicelab.fileio import UnsafePathError, read_text_inside
from voicelab.model_identity import model_identity
from voicelab.voice import (
    ADAPTER_CONFIG_FILE,
    ADAPTER_WEIGHT_FILES,
    VOICE_FILE,
    InvalidVoiceNameError,
    ResolvedVoiceFiles,
    VoiceFolder,
    VoiceMetadata,
    adapter_problems,
    default_prompt_prefix,
    validate_voice_name,
    voice_folders,
)

logger = logging.getLogger(__name__)

STOPPING_SUMMARY_FIELDS = (
    "epochs",
    "early_stopping",
    "best_step",
    "best_eval_loss",
    "stopped_at_step",
    "stop_reason",
    "published_step",
)
"""From voice.json's ``stopping``: how long the voice trained and which checkpoint it is (null for voices
trained before it was recorded). ``epochs_from`` and ``stop_detail`` are prose for the log, not the API."""


class VoiceNotFoundError(LookupError):
    """A request named a voice the registry does not serve; lists the ones it does."""

    def __init__(self, name: str, available: Iterable[str]):
        self.name = name
        self.available = sorted(available)
        listed = ", ".join(self.available) if self.available else "none (train one with `make train-lora`)"
        super().__init__(f"voice {name!r} not found; available voices: {listed}")


@dataclass(frozen=True)
class VoiceEntry:
    """A servable voice: what the engine needs plus what the API shows."""

    voice: Voice
    rank: int
    fingerprint: tuple
    """Sizes and mtimes of the adapter files: a changed fingerprint means the voice was retrained."""
    metadata: VoiceMetadata | None = None

    @property
    def name(self) -> str:
        return self.voice.name

    def describe(self) -> dict[str, Any]:
        """The public view for ``GET /v1/audio/voices``: what a client picks a voice by. How much it was
        trained on and how it scored are shown; where things sit on the server (base model and dataset
        paths) and the prompt prefix stay in voice.json."""
        return {
            "id": self.name,
            "name": self.name,
            "object": "voice",
            "created_at": self.metadata.created_at if self.metadata else None,
            "training": self._training_summary(),
            "evaluation": (
                VoiceFolder(self.voice.adapter_path).read_eval_summary() if self.voice.adapter_path else None
            ),
        }

    def _training_summary(self) -> dict[str, Any]:
        meta = self.metadata
        dataset = meta.dataset if meta else {}
        training = meta.training if meta else {}
        stopping = meta.stopping if meta else {}
        return {
            "lora_rank": self.rank,
            "clips": dataset.get("clips_used"),
            "audio_seconds": dataset.get("audio_seconds"),
            "steps": training.get("steps"),
            "final_loss": meta.final_loss if meta else None,
            "final_eval_loss": meta.final_eval_loss if meta else None,
            "tags": meta.tags if meta else {},
            **{key: stopping.get(key) for key in STOPPING_SUMMARY_FIELDS},
        }


@dataclass
class ScanResult:
    voices: dict[str, VoiceEntry] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    """Folder name -> why it is not served."""


@dataclass
class ReloadReport:
    """What a rescan changed; returned by ``POST /v1/voices/reload``."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    """Voices the engine refused to load/unload -> the engine's reason (they are not served)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "removed": self.removed,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "failed": self.failed,
        }


def _same_model(recorded: Any, served: str) -> bool:
    """Equal ids, or two spellings of the same local folder (relative vs absolute, trailing slash)."""
    if not isinstance(recorded, str):
        return False
    if recorded == served:
        return True
    recorded_path, served_path = Path(recorded).expanduser(), Path(served).expanduser()
    if recorded_path.exists() and served_path.exists():
        return recorded_path.resolve() == served_path.resolve()
    return False


def base_model_refusal(recorded: Any, metadata: VoiceMetadata | None, served: str) -> str | None:
    """Why a voice trained on ``recorded`` cannot be served on ``served``, or None when it is the same model.

    The same path or hub id is the same model. Otherwise the content decides: the fingerprint in voice.json
    (or of ``recorded``, when that folder is on this machine) against the served model's, and failing a
    fingerprint on either side, the hub ids.
    """
    if _same_model(recorded, served):
        return None
    here = model_identity(served)
    trained_fingerprint = metadata.base_model_fingerprint if metadata else None
    trained_hub_id = metadata.base_model_hub_id if metadata else None
    if isinstance(recorded, str) and (trained_fingerprint is None or trained_hub_id is None):
        there = model_identity(recorded)  # an older voice.json, or the recorded folder is here too
        trained_fingerprint = trained_fingerprint or there.fingerprint
        trained_hub_id = trained_hub_id or there.hub_id
    head = f"trained on base model {recorded!r}, but {served!r} is served"
    if trained_fingerprint and here.fingerprint:
        if trained_fingerprint == here.fingerprint:
            logger.debug("base model %r is served as %r: same content", recorded, served)
            return None
        return (
            f"{head}, and they hold different models (config or weights differ): serve the model it was "
            f"trained on (VOICELAB_BASE_MODEL, make vllm --base-model) or retrain the voice"
        )
    if trained_hub_id and trained_hub_id == here.hub_id:
        return None
    if here.fingerprint is None:
        return (
            f"{head}, which is neither a model folder nor in the Hugging Face cache on this machine, so its "
            "content cannot be compared: point VOICELAB_BASE_MODEL at a local copy or download it first"
        )
    return (
        f"{head}; {VOICE_FILE} records no fingerprint of its base model (trained by an older voicelab) and "
        f"{recorded!r} is not on this machine, so they cannot be compared: serve it with "
        f"VOICELAB_BASE_MODEL={recorded} or retrain the voice"
    )


def inspect_voice_folder(
    folder: Path, root: Path, *, base_model: str | None, max_lora_rank: int | None
) -> VoiceEntry | str:
    """One folder -> a ``VoiceEntry``, or the reason it cannot be served (a str)."""
    name = folder.name
    try:
        validate_voice_name(name)
        # Every file is resolved inside voices/: a symlink pointing out (the folder, its config, weights or
        # voice.json) would let anything on disk be loaded as an adapter or read as a voice's settings.
        files = VoiceFolder(folder).resolve_files(root)
    except (InvalidVoiceNameError, UnsafePathError) as e:
        return str(e)
    config = _servable_config(files, max_lora_rank)
    if isinstance(config, str):
        return config
    found = _metadata_and_prefix(files, name)
    if isinstance(found, str):
        return found
    metadata, prefix = found
    if base_model is not None:
        refused = base_model_refusal(config.get("base_model_name_or_path"), metadata, base_model)
        if refused:
            return refused
    voice = Voice(name=name, adapter_path=files.folder, prompt_prefix=prefix)
    fingerprint = VoiceFolder(folder).fingerprint()
    return VoiceEntry(voice=voice, rank=int(config["r"]), fingerprint=fingerprint, metadata=metadata)


def _servable_config(files: ResolvedVoiceFiles, max_lora_rank: int | None) -> dict | str:
    """The adapter's config when vLLM would serve it, else the reason it would not."""
    if not files.adapter_config.is_file():
        return f"no {ADAPTER_CONFIG_FILE} (not a trained voice)"
    try:
        config = json.loads(read_text_inside(files.adapter_config.parent, files.adapter_config.name))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, UnsafePathError) as e:
        return f"unreadable {ADAPTER_CONFIG_FILE}: {e}"
    if not isinstance(config, dict):
        return f"{ADAPTER_CONFIG_FILE} is not a JSON object"
    if not any(w.is_file() for w in files.weights):
        return f"no adapter weights ({' or '.join(ADAPTER_WEIGHT_FILES)}); training did not finish?"
    problems = adapter_problems(config, max_lora_rank=max_lora_rank)
    return "; ".join(problems) if problems else config


def _metadata_and_prefix(files: ResolvedVoiceFiles, name: str) -> tuple[VoiceMetadata | None, str] | str:
    """voice.json (None without one) and the prompt prefix to serve with, or why the voice is skipped."""
    if not files.metadata.exists():
        prefix = default_prompt_prefix(name)
        logger.warning(
            "voice %s has no %s; assuming the training prompt prefix %r (retrain or add %s if it speaks noise)",
            name,
            VOICE_FILE,
            prefix,
            VOICE_FILE,
        )
        return None, prefix
    try:
        metadata = VoiceMetadata.read(files.metadata.parent)
    except ValueError as e:
        # Without its voice.json the prompt prefix used in training is unknown; guessing one would
        # make the voice speak noise with no error, so a broken file skips the voice.
        return str(e)
    if metadata.name != name:
        logger.warning("voice %s: %s names it %r; serving it as %r", name, VOICE_FILE, metadata.name, name)
    return metadata, metadata.prompt_prefix


def scan_voices(
    voices_dir: Path | str, *, base_model: str | None = None, max_lora_rank: int | None = None
) -> ScanResult:
    """Every ``voices_dir/*/`` folder -> servable voices plus skipped folders with reasons.

    ``base_model``: adapters trained on another base are skipped. ``max_lora_rank``: larger ranks are
    skipped. A missing ``voices_dir`` is an empty registry (a fresh checkout has trained nothing yet).
    """
    result = ScanResult()
    root = Path(voices_dir).expanduser()
    if not root.is_dir():
        return result
    root = root.resolve()
    for voice in voice_folders(root):  # dotfiles, README.md, stray files: not voice folders
        found = inspect_voice_folder(voice.dir, root, base_model=base_model, max_lora_rank=max_lora_rank)
        if isinstance(found, str):
            result.skipped[voice.name] = found
        else:
            result.voices[voice.name] = found
    return result


class VoiceRegistry:
    """The voices being served, kept in step with ``voices_dir`` and the engine.

    ``reload(engine)`` rescans and loads added/retrained adapters, unloads removed ones. Reloads are
    serialised by a lock; lookups read an immutable snapshot, so requests never see a half-applied reload.

    ``engine_resolves``: the engine finds ``voices_dir/NAME`` itself (vLLM's filesystem LoRA resolver over
    the same folder, possibly many replicas behind a router). Then no load or unload is ever sent, and a
    voice folder that appears after the last scan is served on its first request (``get``).
    """

    def __init__(
        self,
        voices_dir: Path | str,
        *,
        base_model: str | None,
        max_lora_rank: int | None,
        snac_model: str | None = None,
        engine_resolves: bool = False,
    ):
        self.voices_dir = Path(voices_dir)
        self.engine_resolves = engine_resolves
        self.base_model = base_model
        self.max_lora_rank = max_lora_rank
        self.snac_model = snac_model
        """The codec the server decodes with; a voice trained on another one is served with a warning."""
        self._codec_warned: set[str] = set()
        self._voices: Mapping[str, VoiceEntry] = {}
        self.skipped: dict[str, str] = {}
        self._reported: dict[str, str] = {}
        self._loaded: set[str] = set()
        self._lock = asyncio.Lock()

    @property
    def voices(self) -> Mapping[str, VoiceEntry]:
        return self._voices

    def names(self) -> list[str]:
        return sorted(self._voices)

    def get(self, name: str) -> VoiceEntry:
        """The voice called ``name``; raises ``VoiceNotFoundError`` listing the voices served."""
        entry = self._voices.get(name)
        if entry is None and self.engine_resolves:
            entry = self._discover(name)
        if entry is None:
            raise VoiceNotFoundError(name, self._voices)
        return entry

    def _discover(self, name: str) -> VoiceEntry | None:
        """A voice folder added since the last scan (resolver mode): inspect just that folder."""
        try:
            validate_voice_name(name)
        except InvalidVoiceNameError:
            return None
        root = self.voices_dir.expanduser()
        if not (root / name).is_dir():
            return None
        root = root.resolve()
        found = inspect_voice_folder(
            root / name, root, base_model=self.base_model, max_lora_rank=self.max_lora_rank
        )
        if isinstance(found, str):
            if self._reported.get(name) != found:
                logger.warning("skipping voice folder %s: %s", root / name, found)
                self._reported[name] = found
            return None
        self._warn_codec_mismatch(ScanResult(voices={name: found}))
        self._voices = {**self._voices, name: found}  # a new snapshot: readers never see a partial one
        logger.info("voice %s: found on first request; the engine loads it itself", name)
        return found

    def is_loaded(self, name: str) -> bool:
        return name in self._loaded

    def scan(self) -> ScanResult:
        result = scan_voices(self.voices_dir, base_model=self.base_model, max_lora_rank=self.max_lora_rank)
        for name, reason in result.skipped.items():
            if self._reported.get(name) != reason:  # once per folder and reason, not on every reload
                logger.warning("skipping voice folder %s: %s", self.voices_dir / name, reason)
        self._reported = dict(result.skipped)
        self._warn_codec_mismatch(result)
        return result

    def _warn_codec_mismatch(self, result: ScanResult) -> None:
        # Codes from another SNAC decode to noise without any error. The same codec may be spelt as a hub id
        # in one place and a local folder in the other, so this warns rather than refusing the voice.
        if self.snac_model is None:
            return
        for name, entry in result.voices.items():
            trained = entry.metadata.snac_model if entry.metadata else None
            if trained is None or _same_model(trained, self.snac_model) or name in self._codec_warned:
                continue
            self._codec_warned.add(name)
            logger.warning(
                "voice %s was trained with SNAC %r but the server decodes with %r: if it sounds like noise, "
                "set VOICELAB_SNAC_MODEL to the codec used in training",
                name,
                trained,
                self.snac_model,
            )

    async def reload(self, engine: TokenEngine) -> ReloadReport:
        """Rescan ``voices_dir`` and bring the engine in step. Engine failures are reported, not raised."""
        async with self._lock:
            result = await asyncio.to_thread(self.scan)
            report = ReloadReport(skipped=dict(result.skipped))
            old = self._voices
            new = dict(result.voices)
            for name in sorted(set(old) - set(new)):
                report.removed.append(name)
                await self._unload(engine, name, report)
            for name, entry in sorted(new.items()):
                before = old.get(name)
                if before is None:
                    report.added.append(name)
                elif before.fingerprint != entry.fingerprint or before.voice != entry.voice:
                    report.updated.append(name)
                    await self._unload(engine, name, report)
                else:
                    report.unchanged.append(name)
                    if name in self._loaded:
                        continue
                if not await self._load(engine, entry, report):
                    del new[name]
            self._voices = new
            self.skipped = result.skipped
            logger.info(
                "voices: %d served (%s); added %s, removed %s, updated %s, failed %s",
                len(new),
                ", ".join(sorted(new)) or "none",
                report.added,
                report.removed,
                report.updated,
                list(report.failed),
            )
            return report

    async def ensure_loaded(self, engine: TokenEngine, entry: VoiceEntry) -> None:
        """Load a served voice the engine lost (e.g. vLLM restarted after the API). Raises EngineError."""
        if entry.name in self._loaded or self.engine_resolves:
            return
        async with self._lock:
            if entry.name not in self._loaded:
                await engine.load_voice(entry.voice)
                self._loaded.add(entry.name)

    def mark_unloaded(self, name: str) -> None:
        self._loaded.discard(name)

    async def _load(self, engine: TokenEngine, entry: VoiceEntry, report: ReloadReport) -> bool:
        if self.engine_resolves:
            return True  # the engine loads voices_dir/NAME on its first request
        try:
            await engine.load_voice(entry.voice)
        except EngineError as e:
            # Kept as served when the engine is merely unreachable: ensure_loaded retries on first use.
            logger.warning("voice %s: engine did not load it: %s", entry.name, e)
            report.failed[entry.name] = str(e)
            return isinstance(e, EngineUnavailableError)
        self._loaded.add(entry.name)
        return True

    async def _unload(self, engine: TokenEngine, name: str, report: ReloadReport) -> None:
        self._loaded.discard(name)
        if self.engine_resolves:
            logger.warning(
                "voice %s changed or was removed: vLLM replicas keep the adapter they already resolved until "
                "they restart or get POST /v1/unload_lora_adapter (publish a retrained voice under a new name)",
                name,
            )
            return
        try:
            await engine.unload_voice(name)
        except UnknownVoiceError:
            pass  # the engine never had it (e.g. it was restarted): already in the wanted state
        except EngineError as e:
            logger.warning("voice %s: engine did not unload it: %s", name, e)
            report.failed[name] = str(e)
