"""What ``make evaluate`` speaks: the voice under test, its held-out and training clips, and the texts."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicelab.dataset import PreparedDataset
from voicelab.errors import UsageError
from voicelab.evaluate_settings import NOVEL_SENTENCES
from voicelab.voice import ADAPTER_CONFIG_FILE, VOICE_FILE, VoiceFolder, validate_voice_name

logger = logging.getLogger(__name__)

MAX_REFERENCE_CLIPS = 20
"""Training clips used as the speaker reference when none were held out (more adds little to a centroid)."""


class EvaluationError(UsageError):
    """A voice that cannot be evaluated as asked (no such voice, its dataset moved, ...)."""


@dataclass
class VoiceUnderTest:
    """A voice folder (or a checkpoint of it) and what evaluation needs from its training."""

    name: str
    label: str
    """How reports name it: the voice name, or ``NAME@checkpoint-STEP``."""
    voice_dir: Path
    adapter_dir: Path
    metadata: Any  # voicelab.voice.VoiceMetadata
    dataset_dir: Path
    eval_clips: list[str]
    reference_clips: list[Any]  # training.dataset.Clip: held-out clips, else some training clips
    training_clips: list[Any]
    reference_is_heldout: bool

    @property
    def folder(self) -> VoiceFolder:
        return VoiceFolder(self.voice_dir)

    @property
    def dataset(self) -> PreparedDataset:
        return PreparedDataset(self.dataset_dir)

    @property
    def eval_dir(self) -> Path:
        """Where its evaluation goes: the voice's ``eval/``, or its own folder for a checkpoint (never
        inside the checkpoint)."""
        if self.label == self.name:
            return self.folder.eval_dir
        return self.folder.checkpoint_eval_dir(self.adapter_dir.name)


def load_voice_under_test(
    voices_dir: Path, name: str, *, adapter_dir: Path | None = None, dataset_dir: Path | None = None
) -> VoiceUnderTest:
    """The voice ``voices_dir/name`` (``adapter_dir``: one of its checkpoints instead) and its dataset."""
    from voicelab.fileio import resolve_inside

    validate_voice_name(name)
    voice = VoiceFolder(resolve_inside(Path(voices_dir), name))
    if not voice.has_adapter():
        raise EvaluationError(f"{voice.dir}: no trained voice here (train one with `make train-lora`)")
    try:
        meta = voice.read_metadata()
    except ValueError as e:
        raise EvaluationError(str(e)) from e
    adapter = VoiceFolder(adapter_dir) if adapter_dir is not None else voice
    if not adapter.has_adapter():
        raise EvaluationError(f"{adapter.dir}: no {ADAPTER_CONFIG_FILE} (not a voice or checkpoint folder)")
    data = PreparedDataset(Path(dataset_dir or meta.dataset.get("dataset_dir") or ""))
    if not data.has_transcript():
        raise EvaluationError(
            f"voice {name!r}: its dataset {data.dir} (from {VOICE_FILE}) has no {data.transcript_path.name}; "
            "pass --dataset-dir with the prepared folder it was trained on"
        )
    reference, training = _clips(data, set(meta.eval_clips))
    if meta.eval_clips and not reference:
        logger.warning("voice %s: its held-out clips are no longer in %s", name, data.dir)
    return VoiceUnderTest(
        name=name,
        label=name if adapter_dir is None else f"{name}@{adapter.name}",
        voice_dir=voice.dir,
        adapter_dir=adapter.dir,
        metadata=meta,
        dataset_dir=data.dir,
        eval_clips=sorted(set(meta.eval_clips)),
        reference_clips=reference or training[:MAX_REFERENCE_CLIPS],
        training_clips=training,
        reference_is_heldout=bool(reference),
    )


def adapter_eval_loss(vut: VoiceUnderTest) -> float | None:
    """The held-out eval loss training logged for this adapter: the published step's for the voice, the
    checkpoint's own step's (from the voice's loss log) for a kept checkpoint."""
    if vut.label == vut.name:
        return vut.metadata.published_eval_loss
    from voicelab.training.build import checkpoint_step

    step, folder = checkpoint_step(vut.adapter_dir), vut.folder
    if step is None or not folder.loss_log_path.is_file():
        return None
    return next((p.eval_loss for p in folder.read_loss_log() if p.step == step), None)


def _clips(data: PreparedDataset, held: set[str]) -> tuple[list[Any], list[Any]]:
    """The dataset's usable clips: (held out, trained on)."""
    from voicelab.training import dataset as training_rows

    rows, _ = training_rows.read_training_rows(data, data.read_exclusions())
    clips, _ = training_rows.resolve_clips(data, rows)
    return [c for c in clips if c.key in held], [c for c in clips if c.key not in held]


def plan_texts(
    vut: VoiceUnderTest, *, sentences: int, max_heldout: int
) -> list[tuple[str, str, str, str | None]]:
    """(id, kind, text, reference clip key) for each text to speak: held-out clips' texts, then novel ones."""
    items = []
    if vut.reference_is_heldout:
        for clip in vut.reference_clips[:max_heldout]:
            items.append((f"heldout_{clip.key}", "heldout", clip.text, clip.key))
    for i, text in enumerate(NOVEL_SENTENCES[:sentences]):
        items.append((f"novel_{i:02d}", "novel", text, None))
    return items
