"""Training data on cached image embeddings: the split by image, each image encoded once
(served from the disk cache afterwards), each object's low-res target mask."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from ..cache import EmbeddingCache
from ..disk_cache import EmbeddingDiskCache
from ..engine import SamEngine
from ..errors import DatasetError, FinetuneError, ImageLoadError
from ..evaluation.samples import AnnotatedImage
from ..image_io import load_image
from ..masks import mask_to_logits
from ..predictor import ImageEmbedding, SamPredictor
from ..transforms import resized_shape


def split_by_image(
    images: Sequence[AnnotatedImage], val_fraction: float, seed: int
) -> tuple[list[AnnotatedImage], list[AnnotatedImage]]:
    """Shuffle images with ``seed`` and hold out ``val_fraction`` of them (at least one
    each side), so an image is never in both training and validation.

    Raises:
        DatasetError: fewer than two images. FinetuneError: a fraction outside (0, 1).
    """
    if not 0 < val_fraction < 1:
        raise FinetuneError(f"--val-fraction must be between 0 and 1, got {val_fraction}.")
    if len(images) < 2:
        raise DatasetError(
            f"Fine-tuning needs at least 2 annotated images (one to train on, one to validate "
            f"on); the dataset has {len(images)}."
        )
    order = list(images)
    random.Random(seed).shuffle(order)
    n_val = min(len(order) - 1, max(1, round(len(order) * val_fraction)))
    return order[n_val:], order[:n_val]


@dataclass(frozen=True)
class TrainingObject:
    """One object to train on: its image's index and its target mask on the low-res grid,
    bit-packed (``(h * w / 8,)`` uint8; 8 KB for SAM's 256x256)."""

    image: int
    target_bits: np.ndarray


class EmbeddedImages:
    """Embeddings of a list of images, encoded once (through ``engine``'s predictor and its
    encoder lock) into ``disk_cache``, then served from ``cache`` (byte-bounded) or, when
    evicted, from the disk again; and every object's low-res target."""

    def __init__(
        self,
        engine: SamEngine,
        images: Sequence[AnnotatedImage],
        disk_cache: EmbeddingDiskCache,
        cache: EmbeddingCache,
        progress: bool = False,
        on_image: Callable[[int], None] | None = None,
    ) -> None:
        self.engine = engine
        self.disk_cache = disk_cache
        self.cache = cache
        self.keys: list[str] = []
        self.sizes: list[tuple[tuple[int, int], tuple[int, int]]] = []
        self.objects: list[TrainingObject] = []
        grid = engine.preprocess.mask_size
        self.grid = (grid, grid)
        predictor = SamPredictor(engine, disk_cache=disk_cache)
        bar = tqdm(images, desc="encoding", unit="image", disable=not progress)
        for index, image in enumerate(bar):
            try:
                pixels = load_image(image.path)
            except ImageLoadError as exc:
                raise DatasetError(f"The image {image.name} cannot be used: {exc}") from exc
            predictor.set_image(pixels)
            original = predictor.original_size
            input_size = resized_shape(*original, engine.preprocess.longest_edge)
            self.keys.append(str(predictor.image_key))
            self.sizes.append((original, input_size))
            for obj in image.objects:
                logits = mask_to_logits(obj.mask(), input_size, engine.preprocess.pad_size, grid)
                target = logits[0] > 0
                self.objects.append(TrainingObject(index, np.packbits(target)))
            if on_image is not None:
                on_image(index + 1)

    def features(self, index: int) -> torch.Tensor:
        """``(1, C, h, w)`` embedding of image ``index``."""
        key = self.keys[index]
        original, input_size = self.sizes[index]

        def load() -> ImageEmbedding:
            stored = self.disk_cache.load(key, self.engine.device)
            if stored is None:
                raise DatasetError(
                    "A cached embedding disappeared during training: keep the cache folder "
                    "in place until fine-tuning ends."
                )
            return ImageEmbedding(stored[0], original, input_size)

        embedding, _ = self.cache.get_or_compute(key, load)
        return embedding.features

    def batch(self, objects: Sequence[TrainingObject]) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings ``(B, C, h, w)`` float32 and targets ``(B, h, w)`` bool of ``objects``."""
        features = torch.cat([self.features(obj.image) for obj in objects]).float()
        size = self.grid[0] * self.grid[1]
        targets = np.stack(
            [np.unpackbits(obj.target_bits, count=size).reshape(self.grid) for obj in objects]
        )
        return features, torch.from_numpy(targets.astype(bool))
