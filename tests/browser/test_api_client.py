"""The documented HTTP API, called with gradio_client against the launched app."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from sam import SamPredictor, load_model
from sam.image_io import load_image
from ui.brush import paint, parse_stroke

REPO = Path(__file__).resolve().parents[2]
DOG = REPO / "static" / "examples" / "dog.jpg"


@pytest.fixture(scope="module")
def mask_file(tmp_path_factory) -> Path:
    """A small 0/255 mask PNG, as predict returns."""
    mask = np.zeros((48, 64), dtype=np.uint8)
    mask[10:30, 20:50] = 255
    path = tmp_path_factory.mktemp("mask") / "mask.png"
    Image.fromarray(mask).save(path)
    return path


@pytest.fixture(scope="module")
def client(app_server, tmp_path_factory) -> Client:
    return Client(app_server.url, verbose=False, download_files=str(tmp_path_factory.mktemp("dl")))


def test_predict_matches_engine(client, tiny_checkpoint):
    mask_path, info = client.predict(
        handle_file(str(DOG)), "[[300, 200, 1], [50, 50, 0]]", "", False, api_name="/predict"
    )
    predictor = SamPredictor(load_model(str(tiny_checkpoint), device="cpu"))
    image = load_image(str(DOG))
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(
        point_coords=np.array([[300, 200], [50, 50]]),
        point_labels=np.array([1, 0]),
        multimask_output=False,
    )
    png = np.array(Image.open(mask_path))
    assert png.shape == image.shape[:2]
    np.testing.assert_array_equal(png, masks[0].astype(np.uint8) * 255)
    assert info["size"] == list(image.shape[:2])
    np.testing.assert_allclose(info["scores"], scores, atol=1e-5)

    _, info = client.predict(
        handle_file(str(DOG)), "[[300, 200, 1]]", "", True, api_name="/predict"
    )
    assert len(info["scores"]) == 3
    _, info = client.predict(
        handle_file(str(DOG)), "", "[10, 10, 400, 300]", True, api_name="/predict"
    )
    assert len(info["scores"]) == 3


def test_predict_errors_are_messages(client):
    with pytest.raises(Exception, match=r"\[x, y, label\] triple"):
        client.predict(handle_file(str(DOG)), "[[1, 2]]", "", True, api_name="/predict")


def test_api_lists_only_predict_and_brush(client):
    info = client.view_api(print_info=False, return_format="dict")
    assert list(info["named_endpoints"]) == ["/predict", "/brush"]


def test_brush_touches_up_a_predicted_mask(client):
    """README's example: predict, then a brush stroke and an eraser stroke on the result; each
    returned PNG is the previous one with exactly that stroke painted (ui/brush.py)."""
    mask_path, _ = client.predict(
        handle_file(str(DOG)), "[[300, 200, 1]]", "", False, api_name="/predict"
    )
    before = np.array(Image.open(mask_path)) > 0
    steps = [
        {"mode": "brush", "points": [[40, 40], [200, 60], [-30, 500]], "radius": 12},
        {"mode": "erase", "points": [[300, 200]], "radius": 25.6},
    ]
    for data in steps:
        painted_path, info = client.predict(
            handle_file(mask_path), json.dumps(data), api_name="/brush"
        )
        painted = np.array(Image.open(painted_path))
        want = paint(before, parse_stroke(data, before.shape))
        np.testing.assert_array_equal(painted, want.astype(np.uint8) * 255)
        assert info == {
            "area": int(want.sum()),
            "changed": int(want.sum()) - int(before.sum()),
            "size": list(before.shape),
        }
        mask_path, before = painted_path, want
    assert not before[200, 300] and before[40, 40] and before[-1, 0]  # off-image: clamped


@pytest.mark.parametrize(
    ("stroke", "needle"),
    [
        ('{"mode": "brush", "points": [[NaN, 5]], "radius": 3}', "must be a finite number"),
        (json.dumps({"mode": "brush", "points": [[1, 1]] * 4097, "radius": 3}), "at most 4,096"),
        ('{"mode": "smudge", "points": [[1, 1]], "radius": 3}', "use brush or erase"),
        ("[[1, 1]]", "stroke must be a JSON object"),
    ],
)
def test_hostile_strokes_are_refused_with_a_message(client, mask_file, stroke, needle):
    with pytest.raises(Exception, match=needle):
        client.predict(handle_file(str(mask_file)), stroke, api_name="/brush")


def test_a_huge_radius_paints_the_whole_mask(client, mask_file):
    path, info = client.predict(
        handle_file(str(mask_file)),
        '{"mode": "brush", "points": [[0, 0]], "radius": 1e300}',
        api_name="/brush",
    )
    assert (np.array(Image.open(path)) == 255).all()
    assert info["area"] == info["size"][0] * info["size"][1]


def test_predict_reads_only_uploaded_files(app_server):
    """A raw request naming a file on the server that was not uploaded is refused; the same
    file uploaded first is segmented."""
    with DOG.open("rb") as f:
        upload = httpx.post(f"{app_server.url}/gradio_api/upload", files={"files": f})
    (uploaded,) = upload.json()
    replies = {}
    for path in (str(DOG), uploaded):
        data = [{"path": path, "meta": {"_type": "gradio.FileData"}}, "[[300, 200, 1]]", "", True]
        call = httpx.post(f"{app_server.url}/gradio_api/call/predict", json={"data": data})
        event_id = call.raise_for_status().json()["event_id"]
        stream = f"{app_server.url}/gradio_api/call/predict/{event_id}"
        replies[path] = httpx.get(stream, timeout=300).text  # encoding the image takes a while
    assert "event: error" in replies[str(DOG)], replies
    assert "event: complete" in replies[uploaded] and "mask.png" in replies[uploaded], replies


def test_brush_reads_only_uploaded_files(app_server, mask_file):
    """A raw /brush request naming a file on the server that was not uploaded is refused."""
    stroke = '{"mode": "brush", "points": [[1, 1]], "radius": 2}'
    data = [{"path": str(mask_file), "meta": {"_type": "gradio.FileData"}}, stroke]
    call = httpx.post(f"{app_server.url}/gradio_api/call/brush", json={"data": data})
    event_id = call.raise_for_status().json()["event_id"]
    reply = httpx.get(f"{app_server.url}/gradio_api/call/brush/{event_id}", timeout=60).text
    assert "event: error" in reply and "mask.png" not in reply, reply
