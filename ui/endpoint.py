"""The ``predict`` and ``brush`` endpoints as Gradio's ``gr.api`` declares them (``ui/layout.py``
mounts them).

``gr.api`` makes an endpoint from a function's type hints alone (no page components): they
are the API's schema, an uploaded file and JSON texts in, a file and a JSON object out.
Gradio reads them at run time, so this module does not postpone annotations (no
``from __future__ import annotations``): postponed, the result would be read as one value.
"""

from collections.abc import Callable
from typing import Any

from gradio import FileData

# The handler behind the endpoint: (image, points, box, multimask) -> (mask path, info).
Predict = Callable[[Any, str | None, str | None, bool], tuple[str, dict[str, Any]]]
# The handler behind the brush endpoint: (mask, stroke) -> (painted mask path, info).
Brush = Callable[[Any, str | None], tuple[str, dict[str, Any]]]


def predict_endpoint(predict: Predict) -> Callable[..., tuple[FileData, dict[str, Any]]]:
    """``predict`` with the endpoint's parameters and results: the mask file goes back as a
    file (Gradio copies it to its cache and the client downloads it), not as a server path."""

    def endpoint(
        image: FileData, points: str, box: str, multimask: bool = True
    ) -> tuple[FileData, dict[str, Any]]:
        # Gradio hands the upload over as its file payload (``{"path": ...}``), checked to
        # lie in its upload folder; ``predict`` takes the path from it.
        path, info = predict(image, points, box, multimask)
        return FileData(path=path), info

    return endpoint


def brush_endpoint(brush: Brush) -> Callable[..., tuple[FileData, dict[str, Any]]]:
    """``brush`` with the endpoint's parameters and results: an uploaded mask and a stroke's
    JSON text in, the painted mask back as a file."""

    def endpoint(mask: FileData, stroke: str) -> tuple[FileData, dict[str, Any]]:
        path, info = brush(mask, stroke)
        return FileData(path=path), info

    return endpoint
