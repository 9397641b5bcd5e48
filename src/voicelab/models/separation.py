"""Loading a vocal separation model for prepare-audio ``--separate-vocals``: demucs (an optional extra).

``demucs`` is not a default dependency: ``pip install -e '.[separation]'``. A model is a name demucs knows
(``htdemucs``, downloaded on first use into torch's hub cache) or, with ``repo``, a model in a local folder
laid out as demucs' own ``--repo`` expects: ``NAME.yaml`` naming the models of a bag and their
``SIGNATURE[-CHECKSUM].th`` files beside it, or a single ``NAME.th``. Offline, download once where the
network is and pass the folder. What the model is used for is ``voicelab.separation``'s.
"""

from __future__ import annotations

import logging
from pathlib import Path

from voicelab.models import ModelLoadError

logger = logging.getLogger(__name__)

DEFAULT_DEMUCS_MODEL = "htdemucs"
"""demucs' default: Hybrid Transformer Demucs, 4 stems (drums, bass, other, vocals) at 44.1 kHz."""
VOCALS = "vocals"
DEMUCS_MISSING = "--separate-vocals needs the optional extra: pip install -e '.[separation]' (demucs)"


class SeparationModelError(ModelLoadError):
    """A separation model that cannot be loaded (demucs missing, unknown name, not available offline, a
    folder without it, a model without a vocals stem); the message names it and what to do."""


def load_demucs(name: str = DEFAULT_DEMUCS_MODEL, repo: Path | None = None, device: str = "cpu"):
    """The demucs model (or bag of models) ``name``, in eval mode, its weights on ``device``."""
    try:
        from demucs.pretrained import ModelLoadingError, get_model
    except ImportError as e:
        raise SeparationModelError(f"{DEMUCS_MISSING} ({e})") from e
    where = f"in {repo}" if repo is not None else "(demucs downloads it on first use)"
    if repo is not None and not Path(repo).is_dir():
        raise SeparationModelError(
            f"--demucs-repo {repo}: no such folder; pass the folder holding {name}.yaml and its .th files"
        )
    try:
        model = get_model(name, repo=Path(repo) if repo is not None else None)
    except (ModelLoadingError, OSError, RuntimeError, ValueError) as e:
        raise SeparationModelError(
            f"demucs model {name!r} {where} could not be loaded ({e}); offline, download it once where "
            "the network is and pass its folder with --demucs-repo"
        ) from e
    except SystemExit as e:  # demucs' fatal() for a repo it cannot read
        raise SeparationModelError(f"demucs model {name!r} {where}: {e}") from e
    if VOCALS not in model.sources:
        raise SeparationModelError(
            f"demucs model {name!r} separates {', '.join(model.sources)}, not {VOCALS}: use a model with "
            f"a {VOCALS} stem (e.g. {DEFAULT_DEMUCS_MODEL})"
        )
    logger.info("vocal separation: demucs %s %s on %s", name, where, device)
    return model.eval().to(device)
