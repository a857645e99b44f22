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
from ..engine import Features, SamEngine
from ..errors import DatasetError, FinetuneError, ImageLoadError
from ..evaluation.samples import AnnotatedImage
from ..image_io import load_image
from ..predictor import SamPredictor


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


def batch_features(items: Sequence[Features]) -> Features:
    """One image's embeddings per item -> a float32 batch of them, in the same layout (a
    tensor, or SAM 2's tuple of maps)."""
    if isinstance(items[0], torch.Tensor):
        return torch.cat(list(items)).float()
    return tuple(torch.cat(maps).float() for maps in zip(*items, strict=True))


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
        self.paths = [image.path for image in images]
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
            key = str(predictor.image_key)
            if key not in disk_cache:  # served from the engine's memory (e.g. the app's)
                self._store(key, predictor.get_image_embedding(), pixels)
            self.keys.append(key)
            for obj in image.objects:
                # The family's own low-res layout (SAM: the padded square; SAM 2: the image).
                target = engine.mask_prompt(obj.mask())[0] > 0
                self.objects.append(TrainingObject(index, np.packbits(target)))
            if on_image is not None:
                on_image(index + 1)

    def _store(self, key: str, features: Features, pixels: np.ndarray) -> None:
        """Put an embedding the predictor found in memory into the disk cache, with the
        metadata predictors read back (validation opens the same cache)."""
        _, (in_h, in_w) = self.engine.prepare_pixels(pixels)
        meta = {
            "original_size": f"{pixels.shape[0]}x{pixels.shape[1]}",
            "input_size": f"{in_h}x{in_w}",
        }
        self.disk_cache.save(key, features, meta)

    def features(self, index: int) -> Features:
        """Image ``index``'s embedding: ``(1, C, h, w)`` (SAM 2: its three feature maps)."""
        key = self.keys[index]

        def load() -> Features:
            stored = self.disk_cache.load(key, self.engine.device)
            if stored is None:
                raise DatasetError(
                    "A cached embedding disappeared during training: keep the cache folder "
                    "in place until fine-tuning ends."
                )
            return stored[0]

        features, _ = self.cache.get_or_compute(key, load)
        return features

    def pixel_batch(self, objects: Sequence[TrainingObject]) -> tuple[torch.Tensor, torch.Tensor]:
        """For training the encoder: the encoder inputs ``(n, 3, 1024, 1024)`` float32 of the
        ``n`` distinct images of ``objects`` (read again from disk: at most a batch of them in
        memory) and each object's row in them, ``(B,)`` int64."""
        distinct = sorted({obj.image for obj in objects})
        pixels = [self.engine.prepare_pixels(load_image(self.paths[i]))[0] for i in distinct]
        rows = torch.tensor([distinct.index(obj.image) for obj in objects])
        return torch.cat(pixels).to(self.engine.device), rows

    def targets(self, objects: Sequence[TrainingObject]) -> torch.Tensor:
        """``(B, h, w)`` bool low-res targets of ``objects``."""
        size = self.grid[0] * self.grid[1]
        targets = np.stack(
            [np.unpackbits(obj.target_bits, count=size).reshape(self.grid) for obj in objects]
        )
        return torch.from_numpy(targets.astype(bool))

    def batch(self, objects: Sequence[TrainingObject]) -> tuple[Features, torch.Tensor]:
        """Embeddings ``(B, C, h, w)`` float32 (SAM 2: each of its maps batched) and targets
        ``(B, h, w)`` bool of ``objects``."""
        features = batch_features([self.features(obj.image) for obj in objects])
        return features, self.targets(objects)
