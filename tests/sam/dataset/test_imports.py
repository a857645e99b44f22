"""Reading annotation files as masks: binary PNGs, instance maps, COCO JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from sam.dataset.imports import masks_from_coco, masks_from_png
from sam.errors import ImportFileError
from sam.masks import mask_to_rle


def test_an_instance_map_gives_one_mask_per_value_in_value_order(tmp_path):
    array = np.zeros((6, 8), np.uint8)
    array[1:3, 1:3] = 7
    array[4:6, 5:8] = 2
    Image.fromarray(array).save(tmp_path / "map.png")
    masks = masks_from_png(tmp_path / "map.png")
    assert [name for _, name in masks] == [None, None]
    np.testing.assert_array_equal(masks[0][0], array == 2)
    np.testing.assert_array_equal(masks[1][0], array == 7)


def test_coco_rle_and_polygons_become_named_masks(tmp_path):
    rle_mask = np.zeros((10, 12), bool)
    rle_mask[2:5, 3:9] = True
    document = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 10, "width": 12}],
        "categories": [{"id": 4, "name": "cat"}],
        "annotations": [
            {"image_id": 1, "category_id": 4, "segmentation": mask_to_rle(rle_mask)},
            {"image_id": 1, "category_id": 9, "segmentation": [[0, 0, 4, 0, 4, 4, 0, 4]]},
            {"image_id": 2, "category_id": 4, "segmentation": [[0, 0, 4, 0, 4, 4]]},
        ],
    }
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(document))
    found = masks_from_coco(path)
    assert list(found) == ["a.jpg"]
    (first, first_name), (second, second_name) = found["a.jpg"]
    np.testing.assert_array_equal(first, rle_mask)
    assert (first_name, second_name) == ("cat", None)
    assert second.shape == (10, 12) and second[1:4, 1:4].all() and not second[6:, 6:].any()


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("mask.png", b"not a png", "mask.png is not a readable PNG mask"),
        ("coco.json", b"{}", "coco.json is not a COCO instances file"),
    ],
)
def test_an_unreadable_file_is_an_import_error_naming_it(tmp_path, name, content, needle):
    path = tmp_path / name
    path.write_bytes(content)
    reader = masks_from_coco if name.endswith(".json") else masks_from_png
    with pytest.raises(ImportFileError, match=needle):
        reader(path)
