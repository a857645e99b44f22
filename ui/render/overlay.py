"""Mask overlays as pixels: sampling masks down to the display size, outlines, the
indexed overlay of every object and its PNG / JPEG data URIs. Plain numpy/PIL/OpenCV.
"""

from __future__ import annotations

import base64
import io

import cv2
import numpy as np
from PIL import Image

from sam.dataset.colors import color_rgb

from ..html import FALLBACK_COLOR, css_color
from ..state import Mask, Proposals, Session

MAX_DISPLAY_SIDE = 1280  # overlay resolution cap; the photo itself is shown at up to 2048

CURRENT_OUTLINE = (255, 255, 255)


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    """``'#rrggbb'`` -> ``(r, g, b)``; the fallback colour's for anything that is not one."""
    return color_rgb(css_color(color))


def display_size(height: int, width: int, max_side: int = MAX_DISPLAY_SIDE) -> tuple[int, int]:
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def sample_grid(height: int, width: int, out_h: int, out_w: int) -> tuple[np.ndarray, np.ndarray]:
    """Source row/column of each display pixel (nearest, pixel centres)."""
    rows = np.minimum(((np.arange(out_h) + 0.5) * height / out_h).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(out_w) + 0.5) * width / out_w).astype(np.int64), width - 1)
    return rows, cols


def sample_mask(
    mask: Mask, rows: np.ndarray, cols: np.ndarray
) -> tuple[slice, slice, np.ndarray] | None:
    """The display-resolution part of ``mask``: where it goes and its pixels (None if empty).

    Works on the bounding-box crop so drawing many small objects stays cheap.
    """
    h, w = mask.crop_shape
    if h == 0:
        return None
    r0, r1 = np.searchsorted(rows, [mask.top, mask.top + h])
    c0, c1 = np.searchsorted(cols, [mask.left, mask.left + w])
    if r1 <= r0 or c1 <= c0:
        return None
    # Rows, then columns: two gathers of whole lines, faster than one np.ix_ gather
    # (bench/README.md, levers table).
    sub = mask.crop[rows[r0:r1] - mask.top][:, cols[c0:c1] - mask.left]
    return slice(int(r0), int(r1)), slice(int(c0), int(c1)), sub


_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def outline(sub: np.ndarray, width: int = 1) -> np.ndarray:
    """Pixels of ``sub`` (bool) within ``width`` steps of its outside (4-neighbour steps; the
    outside of the array counts as outside the mask): an inner contour."""
    inner = cv2.erode(
        np.ascontiguousarray(sub).view(np.uint8),
        _CROSS,
        iterations=width,
        borderType=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return sub & ~inner.view(bool)


class Palette:
    """The RGBA colours of an indexed overlay, numbered as they are first asked for; index 0 is
    transparent."""

    def __init__(self) -> None:
        self._index: dict[tuple[int, ...], int] = {(0, 0, 0, 0): 0}

    def __call__(self, rgb: tuple[int, int, int], alpha: int) -> int:
        """The index of ``rgb`` at ``alpha``, added when new."""
        return self._index.setdefault((*rgb, alpha), len(self._index))

    def rgba(self) -> np.ndarray:
        """``(n, 4)`` uint8: row ``i`` is the colour of index ``i``."""
        return np.array(list(self._index), dtype=np.uint8)


def _paint(
    canvas: np.ndarray,
    mask: Mask,
    grid: tuple[np.ndarray, np.ndarray],
    fill: int,
    line: int,
    line_width: int = 1,
) -> None:
    """Paint ``mask`` into the index map ``canvas`` as palette index ``fill``, its
    ``line_width``-pixel contour as ``line``."""
    placed = sample_mask(mask, *grid)
    if placed is None:
        return
    rs, cs, sub = placed
    region = canvas[rs, cs]
    region[sub] = fill
    region[outline(sub, line_width)] = line


def overlay_indexed(
    session: Session, size: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """Objects (unless hidden or 'only current'), the current mask and any proposals as an index
    map ``(h, w)`` uint16 with its palette ``(n, 4)`` uint8 RGBA.

    Painting one index per pixel instead of four channels, and sending few colours as a palette
    PNG, is what keeps a click's redraw cheap (:func:`overlay_data_uri`).
    """
    doc, view = session.doc, session.view
    if doc.image is None:
        return None
    height, width = doc.image.size
    out_h, out_w = size or display_size(height, width)
    grid = sample_grid(height, width, out_h, out_w)
    canvas = np.zeros((out_h, out_w), dtype=np.uint16)
    palette = Palette()
    alpha = round(255 * min(max(view.opacity, 0.0), 1.0))
    if not view.only_current:
        for obj in doc.objects:
            if obj.hidden or obj.id == doc.editing:
                continue
            rgb = hex_to_rgb(doc.color_of(obj))
            selected = obj.id == session.selected_object
            line = palette(CURRENT_OUTLINE if selected else rgb, 255)
            _paint(canvas, obj.mask, grid, palette(rgb, alpha), line, 2 if selected else 1)
    if doc.candidates is not None:
        rgb = hex_to_rgb(current_color(session))
        fill, line = palette(rgb, alpha), palette(CURRENT_OUTLINE, 255)
        _paint(canvas, doc.candidates.mask, grid, fill, line, 2)
    if doc.proposals is not None:
        _paint_proposals(canvas, doc.proposals, grid, alpha, palette)
    return canvas, palette.rgba()


def _paint_proposals(
    canvas: np.ndarray,
    proposals: Proposals,
    grid: tuple[np.ndarray, np.ndarray],
    alpha: int,
    palette: Palette,
) -> None:
    """Each proposal in its own colour, largest first so small ones stay visible (and
    clickable: a click toggles the smallest under the pointer). Accepted ones are filled
    strongly with a white contour; the others are lighter, with a contour in their colour.

    A hundred proposals are drawn on every toggle, so they are painted as proposal indices
    into two int maps (fill, contour) and turned into palette indices in one lookup at the end.
    """
    n = len(proposals.items)
    height, width = canvas.shape[:2]
    fill = np.full((height, width), n, dtype=np.int32)  # n: nothing
    line = np.full((height, width), n, dtype=np.int32)
    order = sorted(range(n), key=lambda i: -proposals.items[i].mask.area)
    for i in order:
        p = proposals.items[i]
        placed = sample_mask(p.mask, *grid)
        if placed is None:
            continue
        rs, cs, sub = placed
        fill[rs, cs][sub] = i
        edge = line[rs, cs]
        edge[sub] = n  # painter's order: this fill covers the contours below it
        edge[outline(sub, 3 if p.accepted else 2)] = i
    pale = max(40, round(alpha * 0.55))
    strong = max(150, alpha)
    fill_index = np.zeros(n + 1, dtype=canvas.dtype)
    line_index = np.zeros(n + 1, dtype=canvas.dtype)
    for i, p in enumerate(proposals.items):
        rgb = hex_to_rgb(p.color)
        fill_index[i] = palette(rgb, strong if p.accepted else pale)
        line_index[i] = palette(CURRENT_OUTLINE if p.accepted else rgb, 255)
    drawn = fill < n
    canvas[drawn] = fill_index[fill[drawn]]
    edged = line < n
    canvas[edged] = line_index[line[edged]]


def current_color(session: Session) -> str:
    doc = session.doc
    if doc.editing is not None and (obj := doc.object(doc.editing)) is not None:
        return doc.color_of(obj)
    lab = doc.label_by_id(session.active_label_id)
    return lab.color if lab else FALLBACK_COLOR


def overlay_data_uri(canvas: np.ndarray, palette: np.ndarray) -> str:
    """The index map ``canvas`` with its RGBA ``palette`` as a PNG data URI: a palette PNG (one
    byte a pixel, alpha in its tRNS chunk) up to 256 colours, else RGBA.

    Level 1 compression: overlays change on every click. An 853x1280 overlay, 2 Zen 3 cores:
    6 ms and 65 KB as a palette PNG, 45-56 ms and 165 KB as RGBA.
    """
    buf = io.BytesIO()
    if len(palette) <= 256:
        image = Image.fromarray(canvas.astype(np.uint8), mode="P")
        image.putpalette(palette[:, :3].tobytes())
        image.save(buf, format="PNG", compress_level=1, transparency=palette[:, 3].tobytes())
    else:
        Image.fromarray(palette[canvas]).save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def jpeg_data_uri(rgb: np.ndarray, quality: int = 85) -> str:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
