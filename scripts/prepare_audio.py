"""Shim kept for the README's paths: the step lives in `voicelab.cli.prepare_audio`."""

import sys

from voicelab.cli.prepare_audio import main

if __name__ == "__main__":
    sys.exit(main())
