"""How long train-lora trains, and which checkpoint it publishes; pure functions.

* ``--epochs auto`` (the default) applies the user guide's epochs table to the clips training will use:

  ==================  ======  =======================================================================
  clips trained on    epochs  why
  ==================  ======  =======================================================================
  1 - 29              5       few clips: each must be seen often (the guide's "5+"; risk of overfitting)
  30 - 100            3       the guide's "2-3"; the upper end, since early stopping guards against too much
  101 and more        1       the guide's "1 for 100+": enough data in one pass
  ==================  ======  =======================================================================

  An explicit ``--epochs N`` wins; ``--max-steps`` overrides both.
* Early stopping: the held-out clips' eval loss is measured every quarter epoch (``--eval-steps``), a
  checkpoint is saved at each of those steps, and training stops once the eval loss has not improved for
  ``--early-stop-patience`` evaluations (one epoch by default). The checkpoint with the lowest eval loss
  is published. Without held-out clips there is nothing to stop on: the run trains its epochs and
  publishes the last step, as ``--no-early-stop`` does.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

logger = logging.getLogger(__name__)

FEW_CLIPS_BELOW = 30
"""Fewer clips than this: the guide's "small dataset" row..."""
MANY_CLIPS_ABOVE = 100
"""...more than this: its "large dataset" row; from FEW_CLIPS_BELOW up to this, inclusive, the middle row."""
EPOCHS_FEW = 5
EPOCHS_MEDIUM = 3
EPOCHS_MANY = 1

EVALS_PER_EPOCH = 4
"""The eval loss is measured four times an epoch: fine enough to catch the turn on a 3-5 epoch run, while
evaluation (a forward pass over ~5% of the clips) costs about 2% of an epoch each time."""
DEFAULT_PATIENCE = EVALS_PER_EPOCH
"""Evaluations without a new lowest eval loss before training stops: one epoch. The held-out set is small
(2-5 clips by default), so its loss is noisy; a shorter window would stop on noise."""

STOP_EARLY = "early_stopped"
STOP_COMPLETED = "completed"
"""``stop_reason`` values in voice.json: stopped by early stopping, or ran its epochs / ``--max-steps``."""


def auto_epochs(n_clips: int) -> int:
    """The guide's epochs for a dataset of ``n_clips`` training clips (table in the module docstring)."""
    if n_clips < FEW_CLIPS_BELOW:
        return EPOCHS_FEW
    if n_clips <= MANY_CLIPS_ABOVE:
        return EPOCHS_MEDIUM
    return EPOCHS_MANY


def steps_per_epoch(n_clips: int, batch_size: int, accumulation: int, processes: int = 1) -> int:
    """Optimizer steps in one pass over ``n_clips`` (what the Trainer counts, at least 1)."""
    batches = math.ceil(n_clips / (batch_size * processes))
    return max(1, batches // accumulation)


def auto_eval_steps(epoch_steps: int) -> int:
    """Evaluate EVALS_PER_EPOCH times an epoch (every step when an epoch is shorter than that)."""
    return max(1, math.ceil(epoch_steps / EVALS_PER_EPOCH))


@dataclass(frozen=True)
class LengthPlan:
    """What a run was told, resolved against its dataset."""

    epochs: float
    epochs_from: str
    """How the epochs were chosen, for people: "auto: 61 clips, per the guide's table" or "--epochs"."""
    eval_steps: int | None
    """Steps between eval-loss measurements (None: no held-out clips)."""
    early_stopping: bool
    patience: int | None
    no_early_stop_reason: str | None = None


def plan_length(
    *,
    epochs: float | None,
    max_steps: int | None,
    n_train: int,
    n_held_out: int,
    epoch_steps: int,
    eval_steps: int | None,
    early_stop: bool,
    patience: int,
    eval_clips_asked: int | None,
) -> LengthPlan:
    """Resolve ``--epochs auto``, the evaluation interval and early stopping, saying each choice in the log."""
    if epochs is None:
        chosen: float = auto_epochs(n_train)
        source = f"auto: {n_train} clips, per the guide's table"
        logger.info("%d clips: %d epochs, per the guide's table (--epochs N to choose)", n_train, chosen)
    else:
        chosen, source = epochs, "--epochs"
    if max_steps:
        logger.info(
            "--max-steps %d: the run's length is set by steps, not by the %g epochs", max_steps, chosen
        )
    if n_held_out == 0:
        why = "--eval-clips 0" if eval_clips_asked == 0 else f"{n_train} clips is too few to hold any out"
        reason = f"no held-out clips to measure an eval loss on ({why})"
        if early_stop:
            logger.warning(
                "cannot stop early: %s; training runs its %g epochs and publishes the last step "
                "(pass --eval-clips N to hold N clips out)",
                reason,
                chosen,
            )
        return LengthPlan(chosen, source, None, False, None, reason)
    interval = eval_steps or auto_eval_steps(epoch_steps)
    if not early_stop:
        return LengthPlan(chosen, source, interval, False, None, "--no-early-stop")
    logger.info(
        "early stopping: eval loss on %d held-out clips every %d steps; stops after %d evaluations "
        "without a new best, and publishes the best checkpoint (--no-early-stop publishes the last step)",
        n_held_out,
        interval,
        patience,
    )
    return LengthPlan(chosen, source, interval, True, patience)


@dataclass(frozen=True)
class StopRecord:
    """voice.json's ``stopping``: how long the run was meant to be, where it stopped and why, and which
    step's adapter was published."""

    epochs: float
    epochs_from: str
    early_stopping: bool
    eval_steps: int | None
    patience: int | None
    best_step: int | None
    """The step with the lowest eval loss (None: no eval loss was measured)."""
    best_eval_loss: float | None
    stopped_at_step: int
    stop_reason: str
    """STOP_EARLY or STOP_COMPLETED."""
    stop_detail: str
    published_step: int
    """The step whose adapter is the voice: best_step with early stopping, else the last step."""

    def to_dict(self) -> dict:
        return asdict(self)


def stop_record(
    plan: LengthPlan,
    *,
    stopped_at: int,
    max_steps: int,
    best_step: int | None,
    best_eval_loss: float | None,
) -> StopRecord:
    """What happened, from the plan and the Trainer's final state (``max_steps``: the planned steps)."""
    stopped_early = plan.early_stopping and stopped_at < max_steps
    if stopped_early:
        detail = (
            f"the eval loss did not improve for {plan.patience} evaluations "
            f"(best at step {best_step}; {max_steps} steps were planned)"
        )
    else:
        detail = f"ran the planned {max_steps} steps"
        if not plan.early_stopping:
            detail += f"; no early stopping: {plan.no_early_stop_reason}"
    published = best_step if plan.early_stopping and best_step is not None else stopped_at
    return StopRecord(
        epochs=plan.epochs,
        epochs_from=plan.epochs_from,
        early_stopping=plan.early_stopping,
        eval_steps=plan.eval_steps,
        patience=plan.patience,
        best_step=best_step,
        best_eval_loss=best_eval_loss,
        stopped_at_step=stopped_at,
        stop_reason=STOP_EARLY if stopped_early else STOP_COMPLETED,
        stop_detail=detail,
        published_step=published,
    )
