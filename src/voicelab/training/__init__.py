"""The train-lora step: prepared dataset -> SNAC codes (cached) -> Orpheus LoRA voice in voices/NAME/.

``build.train_voice`` runs the whole step; ``dataset``, ``snac_codec``, ``trainer`` and ``report`` are
its parts, ``local_inference`` loads a finished voice for in-process generation.
"""
