"""Error types the app can show to a user.

Each failure a person can act on has its own type, and every message says what went wrong
and what to do about it. Validation code raises these instead of using ``assert``.
"""

from __future__ import annotations


class SamError(Exception):
    """Base class of every error this package raises on purpose."""


class ImageLoadError(SamError, ValueError):
    """An image could not be read or is not usable (corrupt, empty, too large, bad shape)."""


class CheckpointError(SamError, RuntimeError):
    """A model checkpoint could not be found, downloaded or loaded."""


class PromptError(SamError, ValueError):
    """Points, labels, boxes or a mask prompt are malformed."""


class ColorError(SamError, ValueError):
    """A colour is not ``#rrggbb`` (nor ``#rgb``, ``rgb(…)``): it never reaches the page."""


class DeviceError(SamError, ValueError):
    """The requested device or precision is not available on this machine."""


class TextPromptError(SamError, RuntimeError):
    """Text prompts are unavailable (optional extra missing, detector not loadable) or empty."""


class StoreError(SamError, RuntimeError):
    """The annotation database cannot be opened or used."""


class ConflictError(StoreError):
    """Another tab or process changed or deleted the object this write was based on."""


class EmbeddingStoreError(SamError, RuntimeError):
    """The embedding store cannot be written, or a cluster worker cannot reach it."""


class ClusterError(SamError, RuntimeError):
    """Ray is not installed, the cluster cannot be reached, or its workers cannot start."""


class ImportFileError(SamError, ValueError):
    """A file of annotations to import (PNG masks, COCO JSON) cannot be read."""


class ExportError(SamError, RuntimeError):
    """A dataset export cannot be written (nothing to export, unwritable folder, ...)."""


class DatasetError(SamError, ValueError):
    """A dataset for evaluation or fine-tuning is unusable (no objects, an unreadable image,
    masks of the wrong size, a malformed annotations file)."""


class FinetuneError(SamError, ValueError):
    """Fine-tuning settings that no run can use (unknown mode, zero epochs, ...)."""
