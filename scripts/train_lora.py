"""Shim kept for the README's paths: the step lives in `voicelab.cli.train_lora`."""

import sys

from voicelab.cli.train_lora import main

if __name__ == "__main__":
    sys.exit(main())
