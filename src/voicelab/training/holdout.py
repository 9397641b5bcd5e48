"""Which clips train-lora holds out for evaluation (eval loss, and later `make evaluate`); pure functions.

The held-out clips are drawn by a seeded shuffle, so the same dataset and ``--seed`` always hold out the
same clips. When the dataset's manifest says which source recording each clip was cut from, whole
recordings are held out, so no recording has clips on both sides: clips cut from one recording share its
room, microphone and mood, and a held-out clip whose neighbours were trained on measures little.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence

logger = logging.getLogger(__name__)

DEFAULT_EVAL_FRACTION = 0.05
"""5% of the clips are held out by default..."""
MIN_DEFAULT_EVAL_CLIPS = 2
"""...but at least 2 (one clip is too noisy an estimate)..."""
MIN_CLIPS_FOR_DEFAULT_EVAL = 20
"""...and none below 20 clips, where every clip is needed for training (the user can still ask)."""
MAX_WHOLE_RECORDING_FRACTION = 0.2
"""Whole recordings may overshoot the requested count, but never hold out more than this share of the
clips; when they would, single clips are drawn instead (and a warning says recordings are shared)."""


class HoldoutError(ValueError):
    """More held-out clips asked for than the dataset can spare."""


def default_eval_count(n_clips: int) -> int:
    """The ``--eval-clips`` default: 5% (at least 2) from 20 clips up, 0 below."""
    if n_clips < MIN_CLIPS_FOR_DEFAULT_EVAL:
        return 0
    return max(MIN_DEFAULT_EVAL_CLIPS, round(DEFAULT_EVAL_FRACTION * n_clips))


def choose_eval_clips(
    keys: Sequence[str],
    count: int,
    seed: int,
    sources: Mapping[str, str] | None = None,
) -> list[str]:
    """``count`` clip keys from ``keys`` to hold out (in ``keys`` order), the same for the same seed.

    ``sources`` maps clip key -> source recording (from the manifest); clips without an entry count as
    their own recording. Whole recordings are taken when that lands within the budget; otherwise single
    clips. At least one clip always stays for training.
    """
    if count <= 0:
        return []
    if count >= len(keys):
        raise HoldoutError(
            f"--eval-clips {count}: the dataset has only {len(keys)} usable clips and at least one must "
            "stay for training; pass a smaller --eval-clips (or 0)"
        )
    rng = random.Random(seed)
    chosen = _whole_recordings(keys, count, rng, sources) if sources else None
    if chosen is None:
        if sources and len({sources.get(k, k) for k in keys}) > 1:
            logger.warning(
                "cannot hold out %d clips as whole recordings (the recordings are too long for the "
                "budget): some held-out clips share a recording with training clips",
                count,
            )
        chosen = set(rng.sample(sorted(keys), count))
    return [k for k in keys if k in chosen]


def _whole_recordings(keys, count, rng, sources) -> set[str] | None:
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(sources.get(key, key), []).append(key)
    budget = max(count, int(MAX_WHOLE_RECORDING_FRACTION * len(keys)))
    order = sorted(groups)
    rng.shuffle(order)
    chosen: list[str] = []
    for source in order:
        if len(chosen) >= count:
            break
        if len(chosen) + len(groups[source]) <= budget:
            chosen += groups[source]
    if len(chosen) < count or len(chosen) >= len(keys):
        return None
    return set(chosen)
