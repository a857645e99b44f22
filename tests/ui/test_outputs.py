"""Files the app hands out (API masks, the page's exports) live in bounded folders: many calls
leave a few dozen folders, the newest kept, none older than the age limit."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ui import outputs


def aged_folder(parent: Path, name: str, age_s: float) -> Path:
    folder = parent / name
    folder.mkdir(parents=True)
    (folder / "mask.png").write_bytes(b"x")
    then = time.time() - age_s
    os.utime(folder, (then, then))
    return folder


def test_a_fresh_folder_prunes_the_oldest_and_keeps_the_newest(tmp_path: Path):
    for age in (50, 40, 30, 20, 10):
        aged_folder(tmp_path, f"made-{age}s-ago", age)
    new = outputs.fresh_folder(tmp_path, keep=3, max_age_s=3600)
    assert new.parent == tmp_path and new.is_dir() and not any(new.iterdir())
    assert {p.name for p in tmp_path.iterdir()} == {"made-20s-ago", "made-10s-ago", new.name}


def test_folders_older_than_the_age_limit_go_however_few(tmp_path: Path):
    aged_folder(tmp_path, "old", 2 * 3600)
    aged_folder(tmp_path, "recent", 60)
    new = outputs.fresh_folder(tmp_path, keep=32, max_age_s=3600)
    assert {p.name for p in tmp_path.iterdir()} == {"recent", new.name}


def test_fifty_api_calls_leave_at_most_keep_masks(handlers, tmp_path: Path):
    image = tmp_path / "small.png"
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(image)
    returned = [
        handlers.api_predict(str(image), json.dumps([[30, 20, 1]]), "", False)[0] for _ in range(50)
    ]
    masks = list(handlers.export_dir.rglob("*.png"))
    assert 0 < len(masks) <= outputs.KEEP
    assert len(set(returned)) == 50  # every call had its own file, named mask.png
    assert all(Path(p).name == "mask.png" for p in returned)
    newest = [Path(p) for p in returned[-outputs.KEEP :]]
    assert all(p.is_file() for p in newest)  # the newest are the ones kept
    assert np.asarray(Image.open(newest[-1])).shape == (40, 60)


def test_page_exports_are_bounded_too(handlers, opened):
    handlers.prompt(opened, {"kind": "point", "x": 500, "y": 375})
    for _ in range(outputs.KEEP + 8):
        updates = handlers.on_export_mask(opened)
        assert not opened.message_is_error, opened.message
    assert len(list(handlers.export_dir.rglob("*_mask.png"))) <= outputs.KEEP
    assert Path(updates["export_files"]["value"][0]).is_file()


def test_cleanup_removes_every_output(handlers, tmp_path: Path):
    image = tmp_path / "small.png"
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(image)
    handlers.api_predict(str(image), json.dumps([[30, 20, 1]]), "", False)
    handlers.cleanup()
    assert not handlers.export_dir.exists()
