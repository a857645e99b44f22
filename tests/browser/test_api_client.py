"""The documented HTTP API, called with gradio_client against the launched app."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from sam import SamPredictor, load_model
from sam.image_io import load_image

REPO = Path(__file__).resolve().parents[2]
DOG = REPO / "static" / "examples" / "dog.jpg"


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


def test_api_lists_only_predict(client):
    info = client.view_api(print_info=False, return_format="dict")
    assert list(info["named_endpoints"]) == ["/predict"]


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
