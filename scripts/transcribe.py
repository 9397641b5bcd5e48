"""Shim kept for the README's paths: the step lives in `voicelab.cli.transcribe`."""

import sys

from voicelab.cli.transcribe import main

if __name__ == "__main__":
    sys.exit(main())
