"""Check the server's settings and models before `make dev` / `make serve` start uvicorn.

A mistake that stops the start-up (a bad VOICELAB_* value, a base model or SNAC folder that is not there,
a hub id while HF_HUB_OFFLINE is set that is not in the hub cache) is said in one line and the make target
ends, before a reload watcher or worker processes exist and before any hub request is tried. Reads the
settings the server would read (environment, then .env); loads no model. Silent when all is well.

    python -m voicelab.cli.check_server && python -m uvicorn voicelab.server.app:create_app --factory
"""

from __future__ import annotations

import argparse
import sys

from voicelab.cli.common import EXIT_OK, EXIT_USAGE, HelpFormatter, run_step


def build_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    from voicelab.server.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as e:
        print(f"error: bad server settings: {e}", file=sys.stderr)
        return EXIT_USAGE
    return run_step(lambda: _check_models(settings))


def _check_models(settings) -> int:
    from voicelab import models

    models.check_base_model_source(settings.base_model)
    models.check_snac_source(settings.snac_model)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
