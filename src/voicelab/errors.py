"""The one error every step shares: ``UsageError``, "the input is wrong; the message says the fix".

Core modules raise specific errors. Those that mean the user gave something unusable (a missing folder, a
model that is not Orpheus, a voice that already exists) inherit from ``UsageError``; every command maps
them to exit status 2 and prints the message, with no traceback. Anything else that fails is the work
itself failing (exit 1), and Ctrl-C is 130.
"""

from __future__ import annotations


class UsageError(Exception):
    """Bad input or environment that the user can fix; the message names the input and the fix."""
