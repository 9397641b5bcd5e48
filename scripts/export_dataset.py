"""Shim kept for the README's paths: the step lives in `voicelab.cli.export_dataset`."""

import sys

from voicelab.cli.export_dataset import main

if __name__ == "__main__":
    sys.exit(main())
