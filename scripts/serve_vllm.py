"""Shim kept for the README's paths: the step lives in `voicelab.cli.serve_vllm`."""

import sys

from voicelab.cli.serve_vllm import main

if __name__ == "__main__":
    sys.exit(main())
