"""The photos the stage shows: written once per image (named by content hash) to the
folder Gradio serves, and their URLs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .overlay import display_size

MAX_PHOTO_SIDE = 2048


def write_display_image(image: np.ndarray, key: str, folder: Path) -> Path:
    """Save the photo the browser shows (downscaled JPEG), named by content so it is reused."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.jpg"
    if not path.exists():
        h, w = image.shape[:2]
        dh, dw = display_size(h, w, MAX_PHOTO_SIDE)
        pil = Image.fromarray(image)
        if (dh, dw) != (h, w):
            pil = pil.resize((dw, dh), Image.Resampling.LANCZOS)
        tmp = path.with_suffix(".tmp")
        pil.save(tmp, format="JPEG", quality=90)
        tmp.replace(path)  # atomic: a concurrent reader never sees half a file
    return path


def file_url(path: str | Path) -> str:
    """URL under which Gradio serves a file from an allowed folder."""
    return "/gradio_api/file=" + str(Path(path).resolve())
