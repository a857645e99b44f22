"""What the page's Model box may load, and that what it shows never reveals server files.

Names typed in the page come from remote users: they may load hub repo ids, the command line's
model and checkpoints inside a ``--models-dir`` folder; any other path gets one message that
does not depend on whether it exists.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

import app
from sam import load_model
from sam.errors import CheckpointError
from ui.handlers import Handlers
from ui.models import NOT_ALLOWED, ModelManager
from ui.state import Session


class Loader:
    """``load_model`` that records what it was asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, source: str, **kwargs: Any) -> Any:
        self.calls.append((source, kwargs))
        return load_model(source, **kwargs)


@pytest.fixture
def models(tmp_path: Path, tiny_checkpoint: Path, tiny_meta_checkpoint: Path) -> Path:
    """A --models-dir folder: an HF folder in a subfolder and a Meta .pth file."""
    folder = tmp_path / "models"
    shutil.copytree(tiny_checkpoint, folder / "sub" / "tiny")
    shutil.copy(tiny_meta_checkpoint, folder / "tiny.pth")
    return folder


@pytest.fixture
def outside(tmp_path: Path, tiny_checkpoint: Path) -> Path:
    """A valid checkpoint the page must not load: outside every allowed place."""
    return shutil.copytree(tiny_checkpoint, tmp_path / "elsewhere" / "tiny")


@pytest.fixture
def loader() -> Loader:
    return Loader()


@pytest.fixture
def page(tmp_path: Path, tiny_checkpoint: Path, models: Path, loader: Loader) -> Handlers:
    """The app started as ``python app.py --model TINY --models-dir MODELS``."""
    manager = ModelManager(str(tiny_checkpoint), device="cpu", loader=loader, models_dirs=[models])
    return Handlers(manager, tmp_path / "media", tmp_path / "export", [])


def choose(page: Handlers, session: Session, typed: str) -> str:
    """Type ``typed`` in the Model box and press Load; the message and model status shown."""
    updates = list(page.on_model_change(session, typed))
    return session.message + " " + updates[-1]["model_status"]


def test_paths_outside_the_allowed_places_all_get_one_message(
    page, loader, tmp_path, outside, tiny_meta_checkpoint
):
    typed = [
        "/root",
        "/etc",
        "/etc/passwd",
        str(outside),  # a loadable checkpoint, but not in --models-dir
        str(tiny_meta_checkpoint),
        str(tmp_path / "no" / "such" / "sam.pth"),
        "~",
        "../../etc",
    ]
    session = Session()
    for text in typed:
        choose(page, session, text)
        assert session.message_is_error
        assert session.message == NOT_ALLOWED, text
    assert loader.calls == [], "nothing typed outside the allowed places was even read"
    assert session.model_source is None  # the session keeps the app's model


def test_a_checkpoint_inside_models_dir_loads_and_is_shown_by_its_relative_name(
    page, loader, models, tmp_path
):
    session = Session()
    shown = choose(page, session, str(models / "sub" / "tiny"))
    assert not session.message_is_error, session.message
    assert session.model_source == str((models / "sub" / "tiny").resolve())
    assert "sam-ok" in shown and "sub/tiny" in shown and str(tmp_path) not in shown
    # Relative to the folder works too, and so does a Meta .pth file.
    choose(page, session, "sub/tiny")
    assert not session.message_is_error and len(loader.calls) == 1, "the same model, loaded once"
    shown = choose(page, session, "tiny.pth")
    assert not session.message_is_error, session.message
    assert "tiny.pth" in shown and str(tmp_path) not in shown


def test_escapes_from_models_dir_are_refused(page, loader, models, outside, tmp_path):
    (models / "link").symlink_to(outside, target_is_directory=True)
    inner = models / "inner"  # a folder inside whose weights are linked from outside
    inner.mkdir()
    for name in ("config.json", "model.safetensors"):
        (inner / name).symlink_to(outside / name)
    session = Session()
    for text in (
        f"{models}/../elsewhere/tiny",
        "../elsewhere/tiny",
        str(models / "link"),
        "link",
        str(inner),
    ):
        choose(page, session, text)
        assert session.message == NOT_ALLOWED, text
    assert loader.calls == []


def test_the_command_line_model_still_loads_and_is_shown_by_its_base_name(
    page, loader, tiny_checkpoint
):
    session = Session()
    shown = choose(page, session, str(tiny_checkpoint))
    assert not session.message_is_error, session.message
    assert session.model_source == str(tiny_checkpoint)
    assert tiny_checkpoint.name in shown and str(tiny_checkpoint) not in shown
    choose(page, session, tiny_checkpoint.name)  # the name the page shows works as well
    assert not session.message_is_error and session.model_source == str(tiny_checkpoint)
    assert [source for source, _ in loader.calls] == [str(tiny_checkpoint)]


def test_a_hub_repo_id_is_attempted_from_the_hub_only(page, loader, monkeypatch, tmp_path):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # an empty cache, and no network
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    # A server folder of the same name must not be loaded (or probed) through a repo id.
    monkeypatch.chdir(tmp_path)
    shutil.copytree(page.manager.default_source, tmp_path / "someone" / "tiny-sam")
    session = Session()
    choose(page, session, "someone/tiny-sam")
    assert loader.calls[-1][0] == "someone/tiny-sam"
    assert loader.calls[-1][1]["hub_only"] is True
    assert session.message_is_error and "tiny-sam" in session.message
    assert "not in the local Hugging Face cache" in session.message


def test_page_messages_hold_no_server_paths_or_folder_contents(page, models, tmp_path):
    empty = models / "empty"
    empty.mkdir()
    (empty / "secret-notes.txt").write_text("x")
    (models / "broken.pth").write_bytes(b"PK\x03\x04 truncated")
    session = Session()
    for text, expected in [
        (str(empty), "empty has no model.safetensors"),
        ("broken.pth", "Could not read broken.pth"),
    ]:
        shown = choose(page, session, text)
        assert session.message_is_error and expected in session.message, session.message
        assert str(tmp_path) not in shown and "secret-notes" not in shown, shown


def test_the_command_line_model_failing_is_explained_without_its_path(tmp_path):
    missing = tmp_path / "private" / "sam.pth"
    manager = ModelManager(str(missing), device="cpu")
    page = Handlers(manager, tmp_path / "media", tmp_path / "export", [])
    shown = page.on_load(Session())["model_status"]
    assert "could not be loaded" in shown and "sam.pth" in shown
    assert str(tmp_path) not in shown, shown


def test_paths_in_hub_errors_are_cut_to_file_names(tmp_path):
    cached = tmp_path / "hub" / "models--a--b" / "snapshots" / "0123" / "model.safetensors"

    def loader(source: str, **kwargs: Any) -> Any:
        raise CheckpointError(f"{cached} is not a valid safetensors file; download it again.")

    manager = ModelManager("a/b", device="cpu", loader=loader)
    status = manager.load()
    assert status.message == "model.safetensors is not a valid safetensors file; download it again."


def test_models_dir_flag_is_repeatable_and_must_be_a_folder(tmp_path, capsys):
    assert app.parse_args([]).models_dir == []
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    assert app.parse_args(["--models-dir", str(a), "--models-dir", str(b)]).models_dir == [a, b]
    with pytest.raises(SystemExit):
        app.parse_args(["--models-dir", str(tmp_path / "missing")])
    assert "--models-dir" in capsys.readouterr().err
