"""Shim kept for the README's paths: the step lives in `voicelab.cli.evaluate_voice`."""

import sys

from voicelab.cli.evaluate_voice import main

if __name__ == "__main__":
    sys.exit(main())
