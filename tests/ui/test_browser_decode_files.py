"""The files the page's decoder worker loads (ui/browser_decode.py): the model's decoder.onnx,
exported once, and each image's float16 embedding, named in the stage once written; without
them (no onnx package) the stage says so and clicks stay on the server."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ui import browser_decode
from ui.browser_decode import BrowserDecodeFiles
from ui.render.overlay import display_size


class _Evt:
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data


def stage_attr(html: str, name: str) -> str | None:
    found = re.search(rf'class="sam-stage"[^>]* {name}="([^"]*)"', html)
    return found.group(1) if found else None


def registry_state(handlers) -> str | None:
    return browser_decode.for_folder(handlers.media_dir).state(None)


def served_path(url: str) -> Path:
    return Path(url.removeprefix("/gradio_api/file="))


def test_decoder_files_are_written_once_and_named_in_the_stage(handlers, opened, engine):
    key = opened.doc.image.key
    first = handlers.on_decoder(opened, _Evt({"key": key}))
    assert stage_attr(first["stage"], "data-decoder-state") == "exporting"
    # Asked again while exporting: nothing to re-render.
    assert (
        set(handlers.on_decoder(opened, _Evt({"key": key, "state": "exporting"}))) <= {"state"}
        or registry_state(handlers) == "ready"
    )
    assert stage_attr(first["stage"], "data-embedding") is None
    registry = browser_decode.for_folder(handlers.media_dir)
    registry.wait(timeout=600)
    ready = handlers.on_decoder(opened, _Evt({"key": key}))["stage"]
    assert stage_attr(ready, "data-decoder-state") == "ready"
    assert (stage_attr(ready, "data-dh"), stage_attr(ready, "data-dw")) == tuple(
        str(v) for v in display_size(1200, 1800)
    )
    embedding = served_path(stage_attr(ready, "data-embedding"))
    sent = np.frombuffer(embedding.read_bytes(), dtype="<f2").reshape(
        engine.get_image_embedding().shape
    )
    expected = engine.get_image_embedding().to(torch.float16).numpy()
    np.testing.assert_array_equal(sent, expected)
    assert served_path(stage_attr(ready, "data-decoder")).stat().st_size > 0
    assert stage_attr(ready, "data-dims") == ",".join(map(str, expected.shape[1:]))
    # A request for an image the session no longer shows changes nothing.
    assert set(handlers.on_decoder(opened, _Evt({"key": "other"}))) == {"state"}

    # Embedding files are bounded in bytes: the oldest go first.
    small = BrowserDecodeFiles(handlers.media_dir, budget_bytes=embedding.stat().st_size)
    small.prepare(engine, "image-a", None)
    assert small.files("image-a", None) is not None
    small.prepare(engine, "image-b", None)
    assert small.files("image-a", None) is None
    assert small.files("image-b", None) is not None


def test_without_onnx_the_stage_says_clicks_stay_on_the_server(handlers, opened, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # as find_spec sees a missing package
    key = opened.doc.image.key
    handlers.on_decoder(opened, _Evt({"key": key}))
    browser_decode.for_folder(handlers.media_dir).wait(timeout=60)
    stage = handlers.on_decoder(opened, _Evt({"key": key, "state": "exporting"}))["stage"]
    assert stage_attr(stage, "data-decoder-state") == "off"
    assert stage_attr(stage, "data-decoder") is None


def test_objects_only_twin_of_the_overlay_under_a_new_click(handlers, opened):
    """With objects and a current mask, the stage carries the overlay without the current
    mask (hidden), which the page shows under a mask it decoded itself."""
    handlers.prompt(opened, {"kind": "point", "x": 500, "y": 375})
    assert 'class="sam-under"' not in handlers.view(opened)["stage"]  # nothing under it yet
    handlers.on_accept(opened)
    handlers.prompt(opened, {"kind": "point", "x": 1500, "y": 500})
    stage = handlers.view(opened)["stage"]
    assert re.search(r'<img class="sam-under"[^>]* hidden=""', stage)
