"""Image embeddings on disk (safetensors), so a project folder is never encoded twice.

Layout: ``ROOT/<model fingerprint>/<image key>.safetensors``. The fingerprint hashes the model's
config, preprocessing and a sample of its encoder weights, so embeddings of another checkpoint
(or another precision) are never mixed up with this one's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .engine import Features, SamEngine
from .modeling import Sam
from .modeling.sam2 import Sam2

logger = logging.getLogger(__name__)


def model_fingerprint(model: Sam | Sam2) -> str:
    """Stable id of what the encoder computes: config, preprocessing, dtype and weights sample
    (the encoder's first and last convolutions)."""
    digest = hashlib.blake2b(digest_size=12)
    digest.update(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    digest.update(json.dumps(asdict(model.preprocess), sort_keys=True).encode())
    digest.update(str(model.dtype).encode())
    encoder = model.vision_encoder
    if isinstance(model, Sam2):
        # SAM 2's features also pass the decoder's high-resolution projections.
        sample = (
            encoder.backbone.patch_embed.projection.weight,
            encoder.neck.convs[0].weight,
            model.mask_decoder.conv_s0.weight,
        )
    else:
        sample = (encoder.patch_embed.projection.weight, encoder.neck.conv2.weight)
    for tensor in sample:
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class EmbeddingDiskCache:
    """Embeddings of one model under ``root``; writes are atomic (temp file + rename)."""

    def __init__(self, root: str | Path, engine: SamEngine) -> None:
        self.root = Path(root)
        self.folder = self.root / model_fingerprint(engine.model)

    def file_of(self, key: str) -> Path:
        """Where the embedding of ``key`` is (or would be) stored."""
        safe = "".join(c if c.isalnum() else "_" for c in key)
        return self.folder / f"{safe}.safetensors"

    def __contains__(self, key: str) -> bool:
        return self.file_of(key).is_file()

    def load(self, key: str, device: torch.device) -> tuple[Features, dict[str, str]] | None:
        """The stored ``(1, C, 64, 64)`` embedding (SAM 2: its three feature maps) and its
        metadata, or None if absent/corrupt."""
        path = self.file_of(key)
        if not path.is_file():
            return None
        try:
            with open(path, "rb") as fh:
                header_len = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(header_len))
            tensors = load_file(path, device=str(device))
        except (SafetensorError, OSError, ValueError) as exc:
            logger.warning("Ignoring unreadable cached embedding %s: %s", path, exc)
            return None
        if "features" in tensors:
            return tensors["features"], header.get("__metadata__", {})
        maps = tuple(tensors.get(f"features.{i}") for i in range(len(tensors)))
        if not maps or any(t is None for t in maps):
            logger.warning("Ignoring cached embedding %s: its feature maps are incomplete", path)
            return None
        return maps, header.get("__metadata__", {})  # type: ignore[return-value]

    def save(self, key: str, features: Features, metadata: dict[str, str]) -> None:
        """Store ``features`` (one tensor, or SAM 2's maps as ``features.0``, ...)."""
        path = self.file_of(key)
        if isinstance(features, torch.Tensor):
            tensors = {"features": features}
        else:
            tensors = {f"features.{i}": t for i, t in enumerate(features)}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
            os.close(fd)
            tensors = {k: t.detach().cpu().contiguous() for k, t in tensors.items()}
            save_file(tensors, tmp, metadata=metadata)
            os.replace(tmp, path)
        except OSError as exc:  # a full or read-only disk must not break annotation
            logger.warning("Could not write cached embedding %s: %s", path, exc)
