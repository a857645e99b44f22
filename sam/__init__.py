"""Segment Anything in plain PyTorch: load a checkpoint, encode an image once, click away.

>>> from sam import load_model, SamPredictor
>>> predictor = SamPredictor(load_model("facebook/sam-vit-base"))
>>> predictor.set_image(image)                      # (H, W, 3) uint8 RGB
>>> masks, scores, logits = predictor.predict(point_coords=[[500, 375]], point_labels=[1])
"""

from .checkpoint import KNOWN_MODELS, load_model
from .engine import SamEngine
from .errors import (
    CheckpointError,
    DeviceError,
    ImageLoadError,
    PromptError,
    SamError,
    TextPromptError,
)
from .modeling import Sam
from .predictor import SamPredictor

__all__ = [
    "KNOWN_MODELS",
    "CheckpointError",
    "DeviceError",
    "ImageLoadError",
    "PromptError",
    "Sam",
    "SamEngine",
    "SamError",
    "SamPredictor",
    "TextPromptError",
    "load_model",
]
__version__ = "0.1.0"
