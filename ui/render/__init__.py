"""Drawing for the page: mask overlays, candidate thumbnails, and the HTML of the custom widgets.

Plain numpy/PIL/OpenCV/string code with no Gradio and no tensors, so it is fast to test. Masks are
displayed at a capped resolution (the browser scales the overlay over the photo anyway); exports
never go through here and stay at the original size.

- ``overlay``: masks as pixels (sampling, outlines, the indexed overlay, data URIs);
- ``media``: the photos the stage shows, as files Gradio serves;
- ``stage``: the HTML of the image stage and the candidates strip;
- ``panels``: the HTML of labels, objects, proposals, the message line and a project's gallery.

Every attribute value in the HTML goes through :mod:`ui.html`.
"""

from __future__ import annotations

from .media import MAX_PHOTO_SIDE, file_url, write_display_image
from .overlay import (
    CURRENT_OUTLINE,
    MAX_DISPLAY_SIDE,
    Palette,
    current_color,
    display_size,
    hex_to_rgb,
    jpeg_data_uri,
    outline,
    overlay_data_uri,
    overlay_indexed,
    sample_grid,
    sample_mask,
)
from .panels import (
    STATUS_NAMES,
    gallery_html,
    labels_html,
    message_html,
    objects_html,
    prefetch_html,
    progress_html,
    proposals_html,
)
from .stage import THUMB_SIDE, candidate_thumbnails, candidates_html, stage_html

__all__ = [
    "CURRENT_OUTLINE",
    "MAX_DISPLAY_SIDE",
    "MAX_PHOTO_SIDE",
    "STATUS_NAMES",
    "THUMB_SIDE",
    "Palette",
    "candidate_thumbnails",
    "candidates_html",
    "current_color",
    "display_size",
    "file_url",
    "gallery_html",
    "hex_to_rgb",
    "jpeg_data_uri",
    "labels_html",
    "message_html",
    "objects_html",
    "outline",
    "overlay_data_uri",
    "overlay_indexed",
    "prefetch_html",
    "progress_html",
    "proposals_html",
    "sample_grid",
    "sample_mask",
    "stage_html",
    "write_display_image",
]
