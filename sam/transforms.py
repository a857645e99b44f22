"""Pure functions between original-image space and SAM's 1024-pixel input space.

SAM resizes the longest side to 1024 (``new = int(old * 1024 / max(h, w) + 0.5)``), normalises
with the model's mean/std, pads bottom/right to a square, and predicts 256x256 low-res logits
over the padded square. SAM 2 instead resizes to the 1024 square without keeping the aspect
ratio (no padding) and upsamples its low-res logits straight to the original size. These
functions do each step and its inverse.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def resized_shape(height: int, width: int, longest_edge: int = 1024) -> tuple[int, int]:
    """Size ``(h, w)`` after scaling so the longest side equals ``longest_edge``.

    Each side is at least 1 pixel: a 1×5000 strip would otherwise round to zero rows.
    """
    scale = longest_edge * 1.0 / max(height, width)
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


def resize_longest_side(image: np.ndarray, longest_edge: int = 1024) -> np.ndarray:
    """``(H, W, 3) uint8`` -> ``(h, w, 3) uint8`` with bilinear resampling (as HF's processor)."""
    h, w = resized_shape(image.shape[0], image.shape[1], longest_edge)
    if (h, w) == image.shape[:2]:
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), resample=Image.Resampling.BILINEAR))


def normalize_and_pad(
    image: np.ndarray,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    pad_size: int = 1024,
) -> torch.Tensor:
    """``(h, w, 3) uint8`` -> ``(1, 3, pad, pad) float32``: scale to [0, 1], normalise with
    ``mean``/``std`` (0-1 units), zero-pad bottom and right."""
    h, w = image.shape[:2]
    if h > pad_size or w > pad_size:
        raise ValueError(f"image {w}x{h} is larger than the pad size {pad_size}")
    x = torch.from_numpy(image.astype(np.float32)) * (1 / 255)
    x = (x - torch.tensor(mean)) / torch.tensor(std)
    x = x.permute(2, 0, 1)
    return F.pad(x, (0, pad_size - w, 0, pad_size - h)).unsqueeze(0)


def preprocess(
    image: np.ndarray,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    longest_edge: int = 1024,
    pad_size: int = 1024,
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Original ``(H, W, 3) uint8`` -> pixel tensor ``(1, 3, pad, pad)`` and resized ``(h, w)``."""
    resized = resize_longest_side(image, longest_edge)
    return normalize_and_pad(resized, mean, std, pad_size), resized.shape[:2]


def scale_coords(
    coords: np.ndarray, original_size: tuple[int, int], longest_edge: int = 1024
) -> np.ndarray:
    """Map ``(..., 2)`` (x, y) from original pixels to the resized-input frame (float64)."""
    return rescale_coords(
        coords, original_size, resized_shape(original_size[0], original_size[1], longest_edge)
    )


def rescale_coords(
    coords: np.ndarray, original_size: tuple[int, int], input_size: tuple[int, int]
) -> np.ndarray:
    """Map ``(..., 2)`` (x, y) from an image of ``original_size`` ``(h, w)`` to one of
    ``input_size``, each axis by its own factor (float64)."""
    old_h, old_w = original_size
    new_h, new_w = input_size
    out = np.array(coords, dtype=np.float64, copy=True)
    out[..., 0] *= new_w / old_w
    out[..., 1] *= new_h / old_h
    return out


def scale_boxes(
    boxes: np.ndarray, original_size: tuple[int, int], longest_edge: int = 1024
) -> np.ndarray:
    """Map ``(..., 4)`` boxes (x0, y0, x1, y1) from original pixels to the resized-input frame."""
    boxes = np.asarray(boxes, dtype=np.float64)
    return scale_coords(boxes.reshape(-1, 2, 2), original_size, longest_edge).reshape(boxes.shape)


def upscale_logits(
    low_res: torch.Tensor,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
    pad_size: int = 1024,
) -> torch.Tensor:
    """Low-res logits ``(B, K, 256, 256)`` -> logits at the original size ``(B, K, H, W)``.

    Bilinear to the padded square, crop the padding, bilinear to the original size (the same
    steps and interpolation settings as SAM's reference post-processing).
    """
    low = low_res.shape[-1]
    factor = pad_size // low
    if low_res.shape[-2] == low and factor * low == pad_size:
        # Only the rows/columns that survive the crop: at the same integer scale factor the
        # sampling positions are unchanged, so this equals upscaling all and cropping after.
        rows = min(low, -(-input_size[0] // factor) + 1)
        cols = min(low, -(-input_size[1] // factor) + 1)
        x = F.interpolate(
            low_res[..., :rows, :cols],
            (rows * factor, cols * factor),
            mode="bilinear",
            align_corners=False,
        )
    else:
        x = F.interpolate(low_res, (pad_size, pad_size), mode="bilinear", align_corners=False)
    x = x[..., : input_size[0], : input_size[1]]
    return F.interpolate(x, original_size, mode="bilinear", align_corners=False)


def preprocess_square(
    image: np.ndarray,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    size: int = 1024,
) -> torch.Tensor:
    """SAM 2's input: ``(H, W, 3) uint8`` -> ``(1, 3, size, size) float32``.

    Scale to [0, 1], resize to the square ignoring the aspect ratio (bilinear with antialias,
    which is what torchvision's tensor ``Resize`` in SAM 2's transforms computes), then
    normalise with ``mean``/``std`` (0-1 units).
    """
    x = torch.tensor(image).permute(2, 0, 1)[None].float()  # a copy: inputs may be read-only
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, (size, size), mode="bilinear", align_corners=False, antialias=True)
    else:
        x = x.contiguous()
    # The resize is linear, so the 0-1 scaling folds into the normalisation: one pass over the
    # 1024x1024 input instead of two passes over the (larger) photo and two over the input.
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    return x.mul_(1 / (255 * std_t)).sub_(torch.tensor(mean).view(1, 3, 1, 1) / std_t)


def upscale_logits_direct(low_res: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
    """SAM 2's post-processing: low-res logits ``(B, K, h, w)`` bilinearly to the original
    size ``(B, K, H, W)`` in one step (its input had no padding to crop)."""
    return F.interpolate(low_res, original_size, mode="bilinear", align_corners=False)


def logits_to_masks(logits: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """Binarise mask logits: ``logits > threshold`` as bool."""
    return logits > threshold
