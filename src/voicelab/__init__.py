"""voicelab: raw recordings of a character -> an Orpheus TTS LoRA voice, served over HTTP."""

__version__ = "0.1.0"

import warnings

# peft reads transformers' deprecated ``is_gradient_checkpointing`` whenever it wraps a model (training and
# every adapter the server loads): a FutureWarning about library internals that no user can act on.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
