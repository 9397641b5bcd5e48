"""Which clips train-lora holds out for evaluation (eval loss, and later `make evaluate`); pure functions.

The held-out clips are drawn by a seeded shuffle, so the same dataset and ``--seed`` always hold out the
same clips. When the dataset's manifest says which source recording each clip was cut from, whole
recordings are held out, so no recording has clips on both sides: clips cut from one recording share its
room, microphone and mood, and a held-out clip whose neighbours were trained on measures little.

Expressive tags stay represented: each tag held by at least ``MIN_TAG_CLIPS_TO_HOLD_OUT`` clips has a
held-out clip, swapped in for an untagged one (the count does not change; that one clip may share its
recording with training clips), so the eval loss covers the tags and ``make evaluate`` speaks their texts.
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
MIN_TAG_CLIPS_TO_HOLD_OUT = 10
"""A tag on fewer clips keeps all of them for training (each of its examples counts: about 100 are needed
to learn a tag); from 10 on, one held-out clip costs it at most a tenth."""


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
    tags: Mapping[str, Sequence[str]] | None = None,
) -> list[str]:
    """``count`` clip keys from ``keys`` to hold out (in ``keys`` order), the same for the same seed.

    ``sources`` maps clip key -> source recording (from the manifest); clips without an entry count as
    their own recording. Whole recordings are taken when that lands within the budget; otherwise single
    clips. ``tags`` maps clip key -> the expressive tags its text holds: a tag on enough clips gets a
    held-out clip (see ``MIN_TAG_CLIPS_TO_HOLD_OUT``). At least one clip always stays for training.
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
    if tags:
        chosen = _represent_tags(chosen, keys, tags, rng)
    return [k for k in keys if k in chosen]


def _represent_tags(
    chosen: set[str], keys: Sequence[str], tags: Mapping[str, Sequence[str]], rng: random.Random
) -> set[str]:
    """``chosen`` without clips of rare tags (each swapped for a clip without one), and with one clip of
    each common enough tag it lacks, swapped in for a clip that holds no tag still needed; the rarest tags
    first, so they get the places."""
    by_tag: dict[str, list[str]] = {}
    for key in keys:
        for tag in set(tags.get(key, ())):
            by_tag.setdefault(tag, []).append(key)
    rare = {t for t, clips in by_tag.items() if len(clips) < MIN_TAG_CLIPS_TO_HOLD_OUT}
    chosen = set(chosen)
    for key in sorted(k for k in chosen if rare.intersection(tags.get(k, ()))):
        free = sorted(k for k in keys if k not in chosen and not rare.intersection(tags.get(k, ())))
        if free:
            chosen.remove(key)
            chosen.add(rng.choice(free))
    common = sorted((t for t in by_tag if t not in rare), key=lambda t: (len(by_tag[t]), t))
    needed: set[str] = set()
    for tag in common:
        if any(tag in tags.get(k, ()) for k in chosen):
            needed.add(tag)
            continue
        spare = sorted(k for k in chosen if not needed.intersection(tags.get(k, ())))
        if not spare:
            break
        chosen.remove(rng.choice(spare))
        chosen.add(rng.choice(sorted(by_tag[tag])))
        needed.add(tag)
    return chosen


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
