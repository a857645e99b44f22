"""The annotation model every part of the app shares: labels, objects and images.

The page's session state, the SQLite store, the importers and every exporter use these types,
so a label is the same ``(id, name, colour)`` everywhere and objects point at labels by id.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..masks import rle_to_mask

# Label id 0 stands for "no label": background (0) in every semantic map, NULL in the store.
UNLABELLED_ID = 0


@dataclass(frozen=True)
class Label:
    """A label: a stable id (never reused in a project; ``UNLABELLED_ID`` is no label), a name
    and a lower-case ``#rrggbb`` colour."""

    id: int
    name: str
    color: str


class MaskSource(Protocol):
    """Anything that unpacks to a full-size ``(H, W) bool`` mask (``ui.state.Mask``,
    :class:`RleMask`)."""

    def to_array(self) -> np.ndarray: ...


@dataclass(frozen=True)
class RleMask:
    """A stored mask, unpacked only when needed (a project's masks never all sit in memory)."""

    rle: dict[str, Any]  # COCO RLE, as stored

    @property
    def shape(self) -> tuple[int, int]:
        height, width = self.rle["size"]
        return int(height), int(width)

    def to_array(self) -> np.ndarray:
        return rle_to_mask(self.rle)


@dataclass(frozen=True)
class ObjectAnnotation:
    """One object of an image, wherever it comes from (a page session, a store row)."""

    mask: MaskSource
    label_id: int | None  # a label's stable id; None (or an id no label has): no label
    score: float | None = None
    hidden: bool = False
    color: str | None = None  # None: the label's colour
    prompts: dict[str, Any] | None = None  # as :func:`prompts_record` makes it
    source_id: int = 0  # the store's (or session's) object id: COCO annotation ids


@dataclass(frozen=True)
class ImageAnnotations:
    """One image with its labels and objects; ``name`` is its path in the project."""

    name: str
    height: int
    width: int
    labels: tuple[Label, ...]
    objects: tuple[ObjectAnnotation, ...]
    source_id: int = 1  # the store's image id: COCO image ids


def prompts_record(
    points: Iterable[Sequence[int]], box: Sequence[int] | None
) -> dict[str, Any] | None:
    """``{"points": [[x, y, label], ...], "box": [x0, y0, x1, y1] | None}``, None when empty."""
    listed = [[int(v) for v in point] for point in points]
    if not listed and not box:
        return None
    return {"points": listed, "box": [int(v) for v in box] if box else None}
