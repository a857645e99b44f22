"""The SAM 2 / 2.1 image network (no video memory), laid out as Meta's ``sam2/modeling``: pure
``nn.Module``s with Hugging Face ``Sam2Model`` parameter names. The two-way transformer, mask
embedding and positional encoding are SAM's own (:mod:`sam.modeling`).

- :mod:`.config`: dimensions read from HF ``config.json`` (``model_type`` ``sam2*``).
- :mod:`.image_encoder`: the Hiera backbone and the FPN neck.
- :mod:`.prompt_encoder`: points, boxes and mask prompts to embeddings.
- :mod:`.mask_decoder`: masks, IoU and object score, with high-resolution skip features.
- :mod:`.sam2`: the model tying them together.
"""

from .config import (
    HieraConfig,
    Sam2Config,
    Sam2MaskDecoderConfig,
    Sam2PreprocessConfig,
    Sam2PromptEncoderConfig,
    Sam2VisionConfig,
)
from .sam2 import Sam2, Sam2Features

__all__ = [
    "HieraConfig",
    "Sam2",
    "Sam2Config",
    "Sam2Features",
    "Sam2MaskDecoderConfig",
    "Sam2PreprocessConfig",
    "Sam2PromptEncoderConfig",
    "Sam2VisionConfig",
]
