"""Eight users at once through the real app's HTTP API: each gets the masks of their own image,
nobody gets an error, and the embedding cache stays inside its byte budget."""

from __future__ import annotations

import json
import socket
import threading

import numpy as np
import psutil
from PIL import Image

from sam import SamPredictor, load_model
from ui.layout import build_demo, launch_options
from ui.models import ModelManager

USERS = 8
ROUNDS = 2
EMBEDDING_BYTES = 64 * 64 * 64 * 4  # tiny test model: (1, 64, 64, 64) float32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def user_images(photos, folder):
    """Eight distinct images: the four photos and their mirror images."""
    paths = []
    for name, array in photos.items():
        for flipped in (False, True):
            path = folder / f"{'flipped-' if flipped else ''}{name}.png"
            Image.fromarray(array[:, ::-1] if flipped else array).save(path)
            paths.append(path)
    return paths


def prompt_for(path) -> list[list[int]]:
    width, height = Image.open(path).size
    return [[width // 2, height // 2, 1], [width // 5, height // 4, 0]]


def test_eight_concurrent_users_get_their_own_masks(tiny_checkpoint, photos, tmp_path):
    from gradio_client import Client, handle_file

    paths = user_images(photos, tmp_path)
    reference = SamPredictor(load_model(tiny_checkpoint, device="cpu"))
    expected = {}
    for path in paths:
        reference.set_image(path)
        points = np.array(prompt_for(path))
        masks, _, _ = reference.predict(points[:, :2], points[:, 2], multimask_output=False)
        expected[path] = masks[0]

    budget = 3 * EMBEDDING_BYTES + 1000  # fewer slots than users: eviction under load
    manager = ModelManager(str(tiny_checkpoint), device="cpu", cache_bytes=budget)
    assert manager.load().ok
    demo = build_demo(manager)
    demo.queue(default_concurrency_limit=4)  # as app.py configures it
    _, url, _ = demo.launch(
        server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
        quiet=True, **launch_options(),
    )  # fmt: skip
    process = psutil.Process()
    rss_before = process.memory_info().rss
    errors: list[str] = []
    mismatches: list[str] = []
    cache = manager.predictor().model.embedding_cache
    peak_cache = [0]

    def user(path) -> None:
        try:
            client = Client(url, verbose=False)
            for _ in range(ROUNDS):
                mask_file, info = client.predict(
                    handle_file(str(path)), json.dumps(prompt_for(path)), "", False,
                    api_name="/predict",
                )  # fmt: skip
                peak_cache[0] = max(peak_cache[0], cache.nbytes)
                mask = np.asarray(Image.open(mask_file)) == 255
                if info["size"] != list(expected[path].shape) or not np.array_equal(
                    mask, expected[path]
                ):
                    mismatches.append(path.name)
        except Exception as exc:  # collected and asserted below, per user
            errors.append(f"{path.name}: {type(exc).__name__}: {exc}")

    try:
        threads = [threading.Thread(target=user, args=(p,)) for p in paths]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not any(t.is_alive() for t in threads), "a user never got an answer"
    finally:
        demo.close()
    assert errors == []
    assert mismatches == [], "a user received a mask that is not of their own image"
    assert cache.nbytes <= cache.max_bytes and peak_cache[0] <= cache.max_bytes
    assert len(cache) <= 3
    # Memory stays bounded: 16 requests on 8 images must not keep 8 embeddings or images alive.
    assert process.memory_info().rss - rss_before < 400 * 2**20
