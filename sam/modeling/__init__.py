"""The SAM network alone, laid out as Meta's ``segment_anything/modeling``: pure ``nn.Module``s
with no caches, locks, file paths or hub code (those live in the runtime around them).

- :mod:`.config`: dimensions read from / written to Hugging Face ``config.json``.
- :mod:`.common`: ops shared by the parts (fused linear, MLP block, LayerNorm2d).
- :mod:`.image_encoder`: the ViT backbone and neck.
- :mod:`.prompt_encoder`: points, boxes and mask prompts to embeddings.
- :mod:`.transformer`: the two-way transformer.
- :mod:`.mask_decoder`: low-res masks and IoU predictions from tokens and image.
- :mod:`.sam`: the model tying them together.
"""

from .config import (
    MaskDecoderConfig,
    PreprocessConfig,
    PromptEncoderConfig,
    SamConfig,
    VisionConfig,
)
from .sam import Sam

__all__ = [
    "MaskDecoderConfig",
    "PreprocessConfig",
    "PromptEncoderConfig",
    "Sam",
    "SamConfig",
    "VisionConfig",
]
