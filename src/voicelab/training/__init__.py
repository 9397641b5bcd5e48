"""The train-lora step: prepared dataset -> SNAC codes (cached) -> Orpheus LoRA voice in voices/NAME/.

``build.train_voice`` runs the whole step; ``dataset``, ``snac_codec``, ``trainer`` and ``report`` are
its parts. To speak with a finished voice in process, use the serving engine ``voicelab.engine.LocalEngine``.
"""
