"""Reading COCO datasets (RLE and polygons) and refusing unusable ones with a clear error."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from synthetic_shapes import make_dataset

from sam.errors import DatasetError
from sam.evaluation import check_dataset, read_coco
from sam.masks import mask_to_rle


def write_coco(path, images, annotations, categories=({"id": 1, "name": "thing"},)):
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": list(categories)})
    )
    return path


def test_synthetic_dataset_reads_back_with_labels_and_masks(tmp_path):
    annotations, images_dir = make_dataset(tmp_path, n_images=3, seed=1)
    images = read_coco(annotations, images_dir)
    assert len(images) == 3
    document = json.loads(annotations.read_text())
    assert sum(len(i.objects) for i in images) == len(document["annotations"])
    first = images[0].objects[0]
    assert first.label in {"circle", "rectangle", "triangle"}
    assert first.mask().shape == (192, 256) and first.mask().any()
    check_dataset(images)


def test_polygons_become_masks_and_empty_ones_are_left_out(tmp_path):
    Image.new("RGB", (20, 10)).save(tmp_path / "a.png")
    path = write_coco(
        tmp_path / "ann.json",
        [{"id": 7, "file_name": "a.png", "height": 10, "width": 20}],
        [
            {
                "id": 1,
                "image_id": 7,
                "category_id": 1,
                "segmentation": [[2, 2, 12, 2, 12, 8, 2, 8]],
            },
            {"id": 2, "image_id": 7, "category_id": 1, "segmentation": []},
        ],
    )
    (image,) = read_coco(path, tmp_path)
    (obj,) = image.objects
    mask = obj.mask()
    assert obj.label == "thing" and mask.shape == (10, 20)
    assert mask[5, 7] and not mask[0, 0]


def test_not_a_coco_file(tmp_path):
    path = tmp_path / "ann.json"
    path.write_text("[1, 2]")
    with pytest.raises(DatasetError, match="not a COCO instances file"):
        read_coco(path, tmp_path)


def test_no_objects_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="no annotated objects"):
        check_dataset([])


def test_unreadable_image_is_named_without_its_folder(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    mask = np.ones((4, 4), bool)
    path = write_coco(
        tmp_path / "ann.json",
        [{"id": 1, "file_name": "broken.png", "height": 4, "width": 4}],
        [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": mask_to_rle(mask)}],
    )
    with pytest.raises(DatasetError, match="broken.png cannot be read") as info:
        check_dataset(read_coco(path, tmp_path))
    assert str(tmp_path) not in str(info.value)


def test_mask_of_the_wrong_size_is_refused(tmp_path):
    Image.new("RGB", (30, 20)).save(tmp_path / "a.png")
    mask = np.ones((10, 10), bool)
    path = write_coco(
        tmp_path / "ann.json",
        [{"id": 1, "file_name": "a.png", "height": 10, "width": 10}],
        [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": mask_to_rle(mask)}],
    )
    with pytest.raises(DatasetError, match=r"10x10 but the image is 30x20"):
        check_dataset(read_coco(path, tmp_path))
