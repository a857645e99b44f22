"""What the served app lets a browser (or anyone on the network) do: login, upload size, and
which files can be read over HTTP. The app runs in-process with the options app.py gives it."""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from PIL import Image

import app
from ui.export import stem
from ui.layout import build_demo
from ui.models import ModelManager
from ui.project import Project
from ui.state import Doc, ImageRef


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def manager(tiny_checkpoint: Path) -> ModelManager:
    manager = ModelManager(str(tiny_checkpoint), device="cpu")
    assert manager.load().ok
    return manager


def serve(demo, argv: list[str]) -> str:
    """Launch ``demo`` with the server options app.py derives from ``argv``; returns its URL."""
    demo.queue(default_concurrency_limit=app.QUEUE_CONCURRENCY)
    options = app.server_options(app.parse_args([*argv, "--port", str(free_port())]))
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **options)
    return url.rstrip("/")


@pytest.fixture(scope="module")
def guarded(manager: ModelManager):
    """The app with a login and a 1 MB upload limit."""
    demo = build_demo(manager)
    url = serve(demo, ["--auth", "alice:s3cret pass", "--max-upload-mb", "1"])
    yield url
    demo.close()


def small_image(folder: Path) -> Path:
    path = folder / "small.png"
    Image.fromarray(np.full((48, 64, 3), 120, np.uint8)).save(path)
    return path


def test_login_is_required_and_works(guarded: str, tmp_path: Path):
    from gradio_client import Client, handle_file

    assert httpx.get(f"{guarded}/config", timeout=30).status_code == 401
    with pytest.raises(Exception):  # noqa: B017 - gradio_client's error type is not public
        Client(guarded, verbose=False)
    with pytest.raises(Exception):  # noqa: B017
        Client(guarded, auth=("alice", "wrong"), verbose=False)

    client = Client(guarded, auth=("alice", "s3cret pass"), verbose=False)
    mask_file, info = client.predict(
        handle_file(str(small_image(tmp_path))), json.dumps([[32, 24, 1]]), "", False,
        api_name="/predict",
    )  # fmt: skip
    assert info["size"] == [48, 64]
    assert np.asarray(Image.open(mask_file)).shape == (48, 64)


def test_upload_over_the_limit_is_refused(guarded: str, tmp_path: Path):
    with httpx.Client(timeout=60) as http:
        login = http.post(f"{guarded}/login", data={"username": "alice", "password": "s3cret pass"})
        assert login.status_code == 200
        big = tmp_path / "big.png"
        big.write_bytes(b"\x89PNG" + np.random.default_rng(0).bytes(2 * 2**20))
        with big.open("rb") as fh:
            too_big = http.post(f"{guarded}/gradio_api/upload", files={"files": fh})
        assert too_big.status_code == 413
        assert "1048576 bytes" in too_big.text
        with small_image(tmp_path).open("rb") as fh:
            fine = http.post(f"{guarded}/gradio_api/upload", files={"files": fh})
        assert fine.status_code == 200, fine.text


def test_host_flag_defaults_to_loopback_and_auth_is_checked(monkeypatch):
    assert app.parse_args([]).host == "127.0.0.1"
    assert "auth" not in app.server_options(app.parse_args([]))
    options = app.server_options(app.parse_args(["--auth", "bob:a:b"]))
    assert options["auth"] == [("bob", "a:b")]  # the password may contain ':'
    assert options["max_file_size"] == "200mb"
    monkeypatch.setenv("SAM_ANNOTATOR_AUTH", "carol:pw")
    assert app.server_options(app.parse_args([]))["auth"] == [("carol", "pw")]
    for bad in (["--auth", "nocolon"], ["--auth", ":pw"], ["--max-upload-mb", "0"]):
        with pytest.raises(SystemExit):
            app.parse_args(bad)


@pytest.fixture(scope="module")
def project_app(manager: ModelManager, example_photos: Path, tmp_path_factory):
    """The app serving a folder of images, with a secret file beside the folder."""
    root = tmp_path_factory.mktemp("served")
    folder = root / "images"
    folder.mkdir()
    shutil.copy(example_photos / "truck.jpg", folder / "truck.jpg")
    (root / "secret.txt").write_text("do not serve me")
    project = Project(folder)
    image_id = project.store.images()[0].id
    for _ in range(300):  # thumbnails are made by a background thread
        if project.thumbnail(image_id) is not None:
            break
        time.sleep(0.05)
    assert project.thumbnail(image_id) is not None
    demo = build_demo(manager, project=project)
    url = serve(demo, [])
    yield url, folder, project
    demo.close()
    project.close()


def file_url(base: str, path: str) -> str:
    return f"{base}/gradio_api/file={quote(path)}"


def test_nothing_outside_the_served_folders_can_be_read(project_app):
    url, folder, project = project_app
    thumb = next(project.thumbs_dir.glob("*.jpg"))
    assert httpx.get(file_url(url, str(thumb)), timeout=30).status_code == 200

    refused = [
        "/etc/passwd",
        str(folder / "truck.jpg"),  # the originals are never served as files
        str(folder.parent / "secret.txt"),
        f"{project.thumbs_dir}/../../secret.txt",
        f"{project.thumbs_dir}/../truck.jpg",
        str(project.store.path),  # the annotation database
        "../../secret.txt",
    ]
    for path in refused:
        response = httpx.get(file_url(url, path), timeout=30)
        assert response.status_code in (403, 404), (path, response.status_code)
        assert "do not serve me" not in response.text and "root:" not in response.text


@pytest.mark.parametrize(
    "name",
    ["../../evil name.png", "/etc/passwd", "..", "a/../../b.jpg", "C:\\win\\x.png", "\x00.png"],
)
def test_uploaded_names_never_become_paths(name: str, tmp_path: Path):
    ref = ImageRef(key="k", array=np.zeros((2, 2, 3), np.uint8), name=name, display_path="")
    exported = tmp_path / f"{stem(Doc(image=ref))}_mask.png"
    assert exported.parent == tmp_path
    assert "/" not in exported.name and "\\" not in exported.name and ".." not in exported.stem


def test_the_page_names_the_project_folder_without_its_server_path(project_app):
    url, folder, _ = project_app
    page = httpx.get(url, timeout=30).text
    assert "images" in page  # the folder's name is shown
    assert str(folder.parent) not in page  # its place on the server is not
