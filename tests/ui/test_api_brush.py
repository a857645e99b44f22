"""The ``brush`` endpoint's core (ui/api.py run_brush) and handler: the page's brush and
eraser for API clients, checked like the page's strokes and painted by ui/brush.py."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio import FileData
from PIL import Image

from sam.errors import SamError
from ui import api
from ui.brush import MAX_STROKE_POINTS, paint, parse_stroke
from ui.endpoint import brush_endpoint
from ui.errors import StrokeError
from ui.layout import build_demo

SIZE = (40, 60)  # (H, W)


@pytest.fixture
def mask_png(tmp_path: Path) -> Path:
    """A 0/255 mask PNG as predict writes it: a 10 x 20 block."""
    mask = np.zeros(SIZE, dtype=np.uint8)
    mask[10:20, 20:40] = 255
    path = tmp_path / "mask.png"
    Image.fromarray(mask).save(path)
    return path


def read(path: str | Path) -> np.ndarray:
    return np.array(Image.open(path)) > 0


def stroke(points, radius=2, mode="brush") -> str:
    return json.dumps({"mode": mode, "points": points, "radius": radius})


def test_a_brush_stroke_paints_what_the_page_paints(mask_png, tmp_path):
    text = stroke([[5, 30], [50, 30]], radius=3)
    path, info = api.run_brush(str(mask_png), text, tmp_path / "out")
    before = read(mask_png)
    want = paint(before, parse_stroke(json.loads(text), SIZE))
    got = np.array(Image.open(path))
    np.testing.assert_array_equal(got, want.astype(np.uint8) * 255)  # 0/255, the mask's size
    assert info == {
        "area": int(want.sum()),
        "changed": int(want.sum() - before.sum()),
        "size": [40, 60],
    }
    assert info["changed"] > 0 and want[27:34, 5:51].all()
    np.testing.assert_array_equal(read(mask_png), before)  # the input file is left as it was


def test_an_eraser_stroke_removes_pixels_and_chains_on_the_result(mask_png, tmp_path):
    path, info = api.run_brush(str(mask_png), stroke([[30, 15]], 4, "erase"), tmp_path / "a")
    got = read(path)
    assert not got[15, 26:35].any() and not got[11:20, 30].any() and got[10:20, 20:25].all()
    assert info["changed"] == -int(read(mask_png).sum() - got.sum())
    # A further stroke on the returned file: that file is the mask it works on.
    again, info = api.run_brush(path, stroke([[30, 15]], 4), tmp_path / "b")
    np.testing.assert_array_equal(read(again), read(mask_png))
    assert info["changed"] > 0


def test_off_image_points_and_huge_radii_are_clamped(mask_png, tmp_path):
    path, _ = api.run_brush(str(mask_png), stroke([[-50, -50], [9999, 9999]], 0), tmp_path / "a")
    corners = parse_stroke({"mode": "brush", "points": [[0, 0], [59, 39]], "radius": 0}, SIZE)
    np.testing.assert_array_equal(read(path), paint(read(mask_png), corners))
    assert read(path)[0, 0] and read(path)[39, 59]
    path, info = api.run_brush(str(mask_png), stroke([[0, 0]], 1e12), tmp_path / "b")
    assert read(path).all() and info["area"] == 40 * 60


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"mode": "brush", "points": [[NaN, 3]], "radius": 2}', "finite number"),
        ('{"mode": "brush", "points": [[1, 3]], "radius": Infinity}', "finite number"),
        (stroke([[1, 2]] * (MAX_STROKE_POINTS + 1)), "4,097 points; at most 4,096"),
        (stroke([[1, 2]], mode="smudge"), "Unknown stroke mode 'smudge': use brush or erase"),
        (stroke([]), "no points"),
        (stroke([[1, 2, 3]]), r"\[x, y\] pair"),
        (stroke([[1, True]]), "must be a number"),
        (stroke([[1, 2]], radius=-1), "cannot be negative"),
        ('{"mode": "brush", "points": [[1, 2]]}', "radius must be a number"),
    ],
)
def test_hostile_strokes_are_refused_with_the_pages_messages(mask_png, text, needle):
    with pytest.raises(StrokeError, match=needle):
        api.run_brush(str(mask_png), text)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[[1, 2]]", "stroke must be a JSON object"),
        ("not json", "stroke is not valid JSON"),
        ("", "No stroke given"),
        ("[" * 300_000, "300,000 characters long, over the limit of 262,144"),
        ("[" * 10_000 + "]" * 10_000, "nested too deeply"),
    ],
)
def test_stroke_text_that_is_no_stroke_is_refused_before_the_mask_is_read(
    mask_png, text, needle, monkeypatch
):
    def load_image(*args, **kwargs):
        raise AssertionError("the mask was read for a stroke that should have been refused")

    monkeypatch.setattr(api, "load_image", load_image)
    with pytest.raises(StrokeError, match=needle):
        api.run_brush(str(mask_png), text)


def test_a_missing_or_unreadable_mask_is_a_message(tmp_path):
    with pytest.raises(StrokeError, match="No mask given"):
        api.run_brush(None, stroke([[1, 2]]))
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(SamError, match="notes.png"):
        api.run_brush(str(bad), stroke([[1, 2]]))


def test_the_handler_sends_messages_without_server_paths(handlers, mask_png, tmp_path):
    with pytest.raises(gr.Error) as caught:
        handlers.api_brush({"path": str(mask_png)}, stroke([[1, 2]], mode="paint"))
    assert caught.value.message == "Unknown stroke mode 'paint': use brush or erase."
    bad = tmp_path / "gradio" / "0123abcd" / "empty.png"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"")
    with pytest.raises(gr.Error) as caught:
        handlers.api_brush(str(bad), stroke([[1, 2]]))
    message = caught.value.message
    assert "empty.png" in message and str(tmp_path) not in message and "/" not in message


def test_the_endpoint_returns_the_painted_mask_as_a_file(handlers, mask_png):
    painted, info = brush_endpoint(handlers.api_brush)({"path": str(mask_png)}, stroke([[5, 5]]))
    assert isinstance(painted, FileData)
    assert read(painted.path)[5, 5] and info["changed"] == 13  # a disc of radius 2
    assert Path(painted.path).parent.parent == handlers.export_dir / "api"  # the bounded folder


def test_the_brush_endpoint_keeps_its_parameters(manager, tmp_path):
    demo = build_demo(manager, media_dir=tmp_path / "media", examples=[])
    endpoint = demo.get_api_info()["named_endpoints"]["/brush"]
    params = [(p["parameter_name"], p["parameter_has_default"]) for p in endpoint["parameters"]]
    assert params == [("mask", False), ("stroke", False)]
    assert endpoint["parameters"][0]["python_type"]["type"] == "filepath"
    assert len(endpoint["returns"]) == 2
