"""The command-line steps, one module each, every one a ``main(argv=None) -> int``.

``scripts/*.py`` and the ``voicelab-*`` console commands call these. Nothing heavy is imported here, so
``--help`` stays instant.
"""
