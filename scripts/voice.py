"""Shim kept for the README's paths: the command lives in `voicelab.cli.voice`."""

import sys

from voicelab.cli.voice import main

if __name__ == "__main__":
    sys.exit(main())
