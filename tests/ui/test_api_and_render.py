"""The predict endpoint's core, rendering helpers and the CLI of app.py."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio import FileData
from PIL import Image

from sam.errors import PromptError
from ui import actions, api, render
from ui.endpoint import predict_endpoint
from ui.layout import build_demo
from ui.state import AnnotatedObject, Label, Mask, Proposal, Proposals, Session

REPO = Path(__file__).resolve().parents[2]


def test_run_predict_equals_engine(manager, truck_path, engine, tmp_path):
    path, info = api.run_predict(
        manager, str(truck_path), "[[500, 375, 1], [620, 300, 0]]", "", False, tmp_path
    )
    masks, scores, _ = engine.predict(
        point_coords=np.array([[500, 375], [620, 300]]),
        point_labels=np.array([1, 0]),
        multimask_output=False,
    )
    png = np.array(Image.open(path))
    np.testing.assert_array_equal(png, masks[0].astype(np.uint8) * 255)
    assert info["size"] == [1200, 1800]
    np.testing.assert_allclose(info["scores"], scores, atol=1e-6)

    _, info = api.run_predict(manager, str(truck_path), "[[500, 375, 1]]", "", True, tmp_path)
    assert len(info["scores"]) == 3
    _, info = api.run_predict(manager, str(truck_path), "", "[75, 275, 1725, 850]", False, tmp_path)
    assert len(info["scores"]) == 1


@pytest.mark.parametrize(
    ("points", "box", "needle"),
    [
        ("[[1, 2]]", "", r"point 1 must be an \[x, y, label\] triple"),
        ("not json", "", "not valid JSON"),
        ("", "[1, 2, 3]", "four finite numbers"),
        ("", "", "at least one point"),
        ("[[99999, 5, 1]]", "", "outside"),
        ("[[5, 5, 7]]", "", "label"),
    ],
)
def test_run_predict_errors_are_readable(manager, truck_path, points, box, needle):
    with pytest.raises(PromptError, match=needle):
        api.run_predict(manager, str(truck_path), points, box, True)


def test_api_handler_raises_gr_error(handlers, tmp_path):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"nope")
    with pytest.raises(gr.Error):
        handlers.api_predict(str(bad), "[[1, 1, 1]]", "", True)


@pytest.fixture
def image_must_not_load(monkeypatch):
    """Fails the test if the endpoint reads the image: bad prompts are refused before that."""

    def load_image(*args, **kwargs):
        raise AssertionError("the image was loaded for a prompt that should have been refused")

    monkeypatch.setattr(api, "load_image", load_image)


def test_a_million_points_are_refused_without_parsing_them(
    manager, truck_path, image_must_not_load, monkeypatch
):
    points = "[" + ", ".join(["[500, 375, 1]"] * 1_000_000) + "]"

    def loads(*args, **kwargs):
        raise AssertionError("a 10^6-point text was handed to json.loads")

    monkeypatch.setattr(api.json, "loads", loads)
    with pytest.raises(PromptError, match="points is 15,000,000 characters long, over the limit"):
        api.run_predict(manager, str(truck_path), points, "", False)


def test_65_points_are_refused_before_the_image_is_read(manager, truck_path, image_must_not_load):
    points = str([[500, 375, 1]] * 65)
    with pytest.raises(PromptError, match="65 points is more than the limit of 64 per prompt"):
        api.run_predict(manager, str(truck_path), points, "", False)


DEEP = "[" * 5000 + "]" * 5000


@pytest.mark.parametrize(
    ("points", "box", "multimask", "needle"),
    [
        pytest.param(DEEP, "", False, "points is nested too deeply", id="nested-points"),
        pytest.param("", DEEP, False, "box is nested too deeply", id="nested-box"),
        ("[[500, 375, 1.5]]", "", False, "point 1 has label 1.5: a label must be 1"),
        ("[[500, 375, true]]", "", False, "point 1 has label true"),
        ('[[500, 375, "1"]]', "", False, 'point 1 has label "1"'),
        ("[[true, 375, 1]]", "", False, r"finite numbers, got \[true, 375, 1\]"),
        ("[[NaN, 375, 1]]", "", False, "finite numbers"),
        ("", "[0, 0, Infinity, 5]", False, "four finite numbers"),
        ("[[500, 375, 1]]", "", "yes", 'multimask must be true or false, got "yes"'),
        ("[[500, 375, 1]]", "", 1, "multimask must be true or false, got 1"),
    ],
)
def test_prompt_fields_have_strict_types(
    manager, truck_path, image_must_not_load, points, box, multimask, needle
):
    with pytest.raises(PromptError, match=needle):
        api.run_predict(manager, str(truck_path), points, box, multimask)


def test_label_1_0_is_the_same_json_number_as_1(manager, truck_path, tmp_path):
    one = api.run_predict(manager, str(truck_path), "[[500, 375, 1]]", "", False, tmp_path / "a")
    one_point_zero = api.run_predict(
        manager, str(truck_path), "[[500.0, 375.0, 1.0]]", "", False, tmp_path / "b"
    )
    assert one[1] == one_point_zero[1]
    assert Path(one[0]).read_bytes() == Path(one_point_zero[0]).read_bytes()


def test_api_messages_name_the_upload_not_its_server_path(handlers, tmp_path):
    upload = tmp_path / "gradio" / "0123abcd" / "empty.png"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"")
    with pytest.raises(gr.Error) as caught:
        handlers.api_predict(str(upload), "[[1, 1, 1]]", "", True)
    message = caught.value.message
    assert "empty.png" in message and "empty (0 bytes)" in message
    assert str(tmp_path) not in message and "/" not in message, message


def test_unexpected_api_failures_show_no_python_internals(handlers, monkeypatch, caplog):
    def run_predict(*args, **kwargs):
        raise RecursionError("maximum recursion depth exceeded in /srv/app/ui/api.py")

    monkeypatch.setattr(api, "run_predict", run_predict)
    with pytest.raises(gr.Error) as caught:
        handlers.api_predict("x.png", "[[1, 1, 1]]", "", True)
    message = caught.value.message
    assert message.startswith("Something went wrong; your work is kept.")
    assert "Recursion" not in message and "/srv" not in message and "maximum" not in message
    error_id = message.rsplit("error ", 1)[1].rstrip(").")
    assert f"[error {error_id}]" in caplog.text and "RecursionError" in caplog.text


def test_build_demo_exposes_only_predict_and_brush(manager, tmp_path):
    demo = build_demo(manager, media_dir=tmp_path / "media", examples=[])
    public = [
        fn.api_name
        for fn in demo.fns.values()
        if getattr(fn, "api_visibility", "public") == "public" and fn.api_name
    ]
    assert public == ["predict", "brush"]


def test_the_api_keeps_its_parameters_and_results(manager, tmp_path):
    """Clients call /predict with these names (multimask may be left out) and get back a mask
    file and the info: the contract README documents."""
    demo = build_demo(manager, media_dir=tmp_path / "media", examples=[])
    endpoint = demo.get_api_info()["named_endpoints"]["/predict"]
    params = [
        (p["parameter_name"], p["parameter_has_default"], p["parameter_default"])
        for p in endpoint["parameters"]
    ]
    assert params == [
        ("image", False, None),
        ("points", False, None),
        ("box", False, None),
        ("multimask", True, True),
    ]
    assert endpoint["parameters"][0]["python_type"]["type"] == "filepath"
    assert len(endpoint["returns"]) == 2


def test_the_endpoint_returns_the_mask_as_a_file(handlers, truck_path, engine):
    """What gr.api sends back: a file Gradio serves (not a server path as text), and the info."""
    predict = predict_endpoint(handlers.api_predict)
    mask_file, info = predict({"path": str(truck_path)}, "[[500, 375, 1]]", "", False)
    assert isinstance(mask_file, FileData)
    masks, scores, _ = engine.predict(
        point_coords=np.array([[500, 375]]), point_labels=np.array([1]), multimask_output=False
    )
    png = np.array(Image.open(mask_file.path))
    np.testing.assert_array_equal(png, masks[0].astype(np.uint8) * 255)
    assert info["size"] == [1200, 1800]
    np.testing.assert_allclose(info["scores"], scores, atol=1e-5)


def overlay_rgba(session: Session, size: tuple[int, int] | None = None) -> np.ndarray:
    """The page's overlay as ``(h, w, 4)`` RGBA: the index map looked up in its palette."""
    indexed = render.overlay_indexed(session, size)
    assert indexed is not None
    canvas, palette = indexed
    return palette[canvas]


def test_overlay_geometry_and_display_cap(handlers, opened):
    handlers.prompt(opened, {"kind": "point", "x": 500, "y": 375})
    rgba = overlay_rgba(opened)
    assert rgba.shape == (853, 1280, 4)  # 1800x1200 shown at most 1280 wide
    full = overlay_rgba(opened, size=(1200, 1800))
    mask = opened.doc.candidates.mask.to_array()
    # At full size the overlay covers exactly the mask (fill or outline).
    np.testing.assert_array_equal(full[..., 3] > 0, mask)


def _decode_data_uri(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    png = base64.b64decode(uri.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))


def test_stage_overlay_png_is_the_overlay(handlers, opened):
    """The page's overlay (a palette PNG) decodes to exactly the painted RGBA overlay, objects
    and the current mask included."""
    handlers.prompt(opened, {"kind": "point", "x": 500, "y": 375})
    handlers.on_accept(opened)
    handlers.prompt(opened, {"kind": "point", "x": 1500, "y": 500})
    html = render.stage_html(opened)
    uri = html.split('class="sam-overlay" alt="" draggable="false" src="', 1)[1].split('"', 1)[0]
    expected = overlay_rgba(opened)
    assert len(np.unique(expected.reshape(-1, 4), axis=0)) >= 4  # 2 fills, outlines, clear
    np.testing.assert_array_equal(_decode_data_uri(uri), expected)


def test_overlay_with_more_than_256_colours_is_sent_as_rgba():
    rng = np.random.default_rng(0)
    palette = np.concatenate([np.zeros((1, 4)), rng.integers(0, 256, (299, 4))]).astype(np.uint8)
    canvas = rng.integers(0, 300, (40, 50)).astype(np.uint16)
    np.testing.assert_array_equal(
        _decode_data_uri(render.overlay_data_uri(canvas, palette)), palette[canvas]
    )


@pytest.mark.parametrize("width", [1, 2, 3])
def test_outline_is_the_inner_contour(width):
    """Pixels of the mask within ``width`` 4-neighbour steps of the outside (the array's
    border counts as outside), against a plain shift-and-AND erosion."""
    rng = np.random.default_rng(width)
    sub = rng.random((37, 53)) > 0.35
    inner = sub.copy()
    for _ in range(width):
        padded = np.pad(inner, 1, constant_values=False)
        inner = inner & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    np.testing.assert_array_equal(render.outline(sub, width), sub & ~inner)
    strided = sub[:, ::2]  # a view, as masks cropped from a larger one are
    expected = render.outline(strided.copy(), width)
    np.testing.assert_array_equal(render.outline(strided, width), expected)


def test_candidate_thumbnails_show_each_mask_on_the_photo(handlers, opened):
    """Each thumbnail is the shared window of the photo with its candidate tinted and
    outlined, against a plain full-size computation."""
    handlers.prompt(opened, {"kind": "point", "x": 500, "y": 375})
    doc = opened.doc
    uris = render.candidate_thumbnails(opened)
    left, top, right, bottom = render.stage._thumb_window(doc)
    th, tw = render.display_size(bottom - top, right - left, render.THUMB_SIDE)
    rows, cols = render.sample_grid(bottom - top, right - left, th, tw)
    base = doc.image.array[top:bottom, left:right][np.ix_(rows, cols)].astype(np.float32)
    rgb = np.array(render.hex_to_rgb(render.current_color(opened)), dtype=np.float32)
    expected = []
    for mask in doc.candidates.masks:
        sub = mask.to_array()[top:bottom, left:right][np.ix_(rows, cols)]
        img = base.copy()
        img[sub] = img[sub] * 0.45 + rgb * 0.55
        img[render.outline(sub)] = (255, 255, 255)
        expected.append(render.jpeg_data_uri(img.astype(np.uint8)))
    assert len(uris) == 3 and len(set(uris)) == 3
    assert uris == expected


def test_stage_markers_at_pixel_centres(handlers, opened):
    handlers.prompt(opened, {"kind": "point", "x": 899, "y": 599})
    html = render.stage_html(opened)
    assert 'data-w="1800" data-h="1200"' in html
    assert "left:49.9722%;top:49.9583%" in html  # (899.5 / 1800, 599.5 / 1200)


def test_labels_are_escaped(handlers, opened):
    handlers.on_add_label(opened, "<b>x</b>", None)
    assert "<b>x</b>" not in render.labels_html(opened)
    assert "&lt;b&gt;x&lt;/b&gt;" in render.labels_html(opened)


def test_empty_session_renders():
    s = Session()
    assert "Drop an image here" in render.stage_html(s)
    assert "sam-busy" in render.stage_html(s, busy="Encoding image…")
    assert render.candidates_html(s) and render.objects_html(s) and render.labels_html(s)


@pytest.mark.parametrize(
    ("given", "want"),
    [("#ABC", "#aabbcc"), ("#12ab34", "#12ab34"), ("rgb(255, 0, 10)", "#ff000a"), ("", "#010203")],
)
def test_normalize_color(given, want):
    assert actions.normalize_color(given, "#010203") == want


HOSTILE_NAMES = ('x" onmouseover="alert(1)', "<img src=x onerror=alert(2)>", "a'b&c")
HOSTILE_COLORS = (
    '#abc" onmouseover="alert(1)',
    '#fff"><img src=x onerror=alert(2)>',
    "red;background-image:url(http://example.invalid/x.png)",
)


class _Tags(HTMLParser):
    """Start tags with their attributes, and the text, of an HTML fragment."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def assert_inert(markup: str) -> _Tags:
    """No script handler, no image and no style but a plain ``#rrggbb`` swatch colour."""
    parsed = _Tags(markup)
    for tag, attributes in parsed.tags:
        assert tag != "img", markup
        assert not [a for a in attributes if a.startswith("on")], (tag, attributes)
        style = attributes.get("style")
        assert style is None or re.fullmatch(r"background:#[0-9a-f]{6}", style), style
    return parsed


def test_hostile_names_and_colours_render_as_text_and_safe_colours(handlers, opened):
    """Even colours that slipped past validation never reach the page's markup."""
    doc = opened.doc
    h, w = doc.image.size
    mask = np.zeros((h, w), bool)
    mask[10:50, 10:50] = True
    labels = tuple(
        Label(i + 1, name, color)
        for i, (name, color) in enumerate(zip(HOSTILE_NAMES, HOSTILE_COLORS, strict=True))
    )
    objects = tuple(
        AnnotatedObject(id=i + 1, label_id=lab.id, mask=Mask.from_array(mask), score=1.0,
                        color=HOSTILE_COLORS[-1 - i])
        for i, lab in enumerate(labels)
    )  # fmt: skip
    items = tuple(
        Proposal(Mask.from_array(mask), 0.9, 0.9, color, phrase=name)
        for name, color in zip(HOSTILE_NAMES, HOSTILE_COLORS, strict=True)
    )
    opened.commit(
        replace(
            doc, labels=labels, objects=objects, next_id=len(objects) + 1,
            proposals=Proposals(items, "text", query=HOSTILE_NAMES[1]),
        )
    )  # fmt: skip
    opened.active_label = labels[0].name
    for part in (render.labels_html, render.objects_html, render.proposals_html):
        shown = "".join(assert_inert(part(opened)).text)
        for name in HOSTILE_NAMES:
            assert name in shown  # the name itself, as text
    assert "sam-overlay" in render.stage_html(opened)  # drawn in the fallback colour


@pytest.mark.parametrize("color", HOSTILE_COLORS)
def test_a_bad_colour_from_the_page_is_refused(handlers, opened, color):
    handlers.on_add_label(opened, "cat", color)
    assert opened.message_is_error and "not a colour" in opened.message
    assert opened.doc.label("cat") is None
    before = opened.doc.labels
    handlers.on_save_label(opened, "object", color)
    assert opened.message_is_error and opened.doc.labels == before
    handlers.prompt(opened, {"kind": "point", "x": 899, "y": 599})
    handlers.on_accept(opened)
    (obj,) = opened.doc.objects
    opened.selected_object = obj.id
    handlers.on_object_color(opened, color)
    assert opened.message_is_error and opened.doc.objects == (obj,)


def test_coco_category_names_are_labels_shown_as_text(handlers, opened, tmp_path):
    h, w = opened.doc.image.size
    polygon = [[10, 10, 40, 10, 40, 40, 10, 40]]
    coco = {
        "images": [{"id": 1, "file_name": "truck.jpg", "height": h, "width": w}],
        "annotations": [
            {"id": i, "image_id": 1, "category_id": i, "segmentation": polygon} for i in (1, 2)
        ],
        "categories": [{"id": 1, "name": HOSTILE_NAMES[1]}, {"id": 2, "name": 7}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(coco))
    handlers.on_import(opened, str(path))
    assert not opened.message_is_error, opened.message
    assert [opened.doc.label_name(o) for o in opened.doc.objects] == [HOSTILE_NAMES[1], "7"]
    shown = "".join(assert_inert(render.labels_html(opened)).text)
    assert HOSTILE_NAMES[1] in shown


def test_app_help_lists_every_flag():
    out = subprocess.run(
        [sys.executable, "app.py", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    for flag in (
        "--model",
        "--device",
        "--host",
        "--port",
        "--max-cache-mb",
        "--auth",
        "--max-upload-mb",
    ):
        assert flag in out.stdout
    assert "facebook/sam-vit-base" in out.stdout


def test_app_passes_cache_size(monkeypatch):
    import app

    args = app.parse_args(["--max-cache-mb", "64", "--device", "cpu", "--port", "1234"])
    assert args.max_cache_mb == 64 and args.device == "cpu" and args.port == 1234
    with pytest.raises(SystemExit):
        app.parse_args(["--max-cache-mb", "0"])


def test_app_passes_the_text_model_to_the_page(monkeypatch, tiny_checkpoint):
    """``--text-model`` reaches the Find objects detector (offline users point it at a folder)."""
    import app

    seen: dict = {}

    class Launched:
        def queue(self, **kwargs):
            return self

        def launch(self, **kwargs):
            seen["launch"] = kwargs

    def fake_build_demo(manager, **kwargs):
        seen.update(kwargs)
        return Launched()

    monkeypatch.setattr(app, "build_demo", fake_build_demo)
    argv = ["--model", str(tiny_checkpoint), "--text-model", "/models/dino", "--port", "1234"]
    assert app.main(argv) == 0
    assert seen["text_detector"] == "/models/dino"
    assert seen["launch"]["server_port"] == 1234
    assert app.parse_args([]).text_model == "IDEA-Research/grounding-dino-tiny"


def test_manager_passes_device_and_cache_size():
    from sam.errors import CheckpointError
    from ui.models import ModelManager

    seen: dict = {}

    def loader(source, **kwargs):
        seen.update(kwargs, source=source)
        raise CheckpointError("offline")

    status = ModelManager("repo/x", device="cpu", cache_bytes=64 * 2**20, loader=loader).load()
    assert not status.ok and status.message == "offline"
    assert seen == {"source": "repo/x", "device": "cpu", "cache_bytes": 64 * 2**20}


def test_a_slow_model_load_does_not_block_users_of_a_loaded_model(tiny_checkpoint):
    """One user switching to a model that downloads for minutes must not freeze the others."""
    import threading

    from sam import load_model
    from ui.models import ModelManager

    release = threading.Event()
    calls = []

    def loader(source, **kwargs):
        calls.append(source)
        if source == "slow/model":
            release.wait(timeout=30)
        return load_model(tiny_checkpoint, **kwargs)

    manager = ModelManager(str(tiny_checkpoint), device="cpu", loader=loader)
    assert manager.load().ok
    slow = threading.Thread(target=manager.load, args=("slow/model",))
    slow.start()
    try:
        done = threading.Event()
        threading.Thread(target=lambda: (manager.predictor(), done.set())).start()
        assert done.wait(timeout=10), "the loaded model was blocked by another model's load"
    finally:
        release.set()
        slow.join(timeout=60)
    assert manager.status("slow/model").ok
    twice = [threading.Thread(target=manager.load, args=("other/model",)) for _ in range(2)]
    for t in twice:
        t.start()
    for t in twice:
        t.join(timeout=60)
    assert calls.count("other/model") == 1, "two users picking one model load it once"
