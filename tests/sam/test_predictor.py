"""SamPredictor: the public contract, the embedding cache, and prompt validation."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sam import PromptError, SamPredictor, load_model
from sam.predictor import MAX_BOXES, MAX_POINTS


@pytest.fixture
def model(tiny_checkpoint):
    return load_model(tiny_checkpoint, device="cpu")


@pytest.fixture
def encoder_calls(model, monkeypatch):
    """Counts real image-encoder runs."""
    calls = []
    original = model.encode_image

    def counting(pixels):
        calls.append(pixels.shape)
        return original(pixels)

    monkeypatch.setattr(model, "encode_image", counting)
    return calls


@pytest.fixture
def truck(photos):
    return photos["truck.jpg"]


def test_contract_shapes_dtypes_and_order(model, truck):
    predictor = SamPredictor(model)
    predictor.set_image(truck)
    h, w = truck.shape[:2]
    masks, scores, logits = predictor.predict(np.array([[500, 375]]), np.array([1]))
    assert masks.shape == (3, h, w) and masks.dtype == np.bool_
    assert scores.shape == (3,) and scores.dtype == np.float32
    assert logits.shape == (3, 256, 256) and logits.dtype == np.float32
    assert list(scores) == sorted(scores, reverse=True)
    masks1, scores1, logits1 = predictor.predict(
        np.array([[500, 375]]), np.array([1]), multimask_output=False
    )
    assert masks1.shape == (1, h, w) and scores1.shape == (1,) and logits1.shape == (1, 256, 256)


def test_masks_are_the_thresholded_upscaled_logits(model, truck):
    """A mask pixel is on exactly where the full-size logit is positive."""
    import torch

    from sam.transforms import resized_shape, upscale_logits

    predictor = SamPredictor(model)
    predictor.set_image(truck)
    masks, _, logits = predictor.predict(box=np.array([100, 200, 1200, 900]))
    full = upscale_logits(
        torch.from_numpy(logits)[None], resized_shape(*truck.shape[:2]), truck.shape[:2]
    )[0]
    np.testing.assert_array_equal(masks, (full > 0).numpy())


def test_pil_and_path_inputs_equal_array(model, example_photos, truck):
    predictor = SamPredictor(model)
    results = []
    for image in (truck, Image.fromarray(truck), example_photos / "truck.jpg"):
        predictor.set_image(image)
        results.append(predictor.predict(np.array([[700, 500]]), np.array([1]))[2])
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


def test_second_set_image_uses_cache(model, encoder_calls, photos):
    first, second = SamPredictor(model), SamPredictor(model)
    first.set_image(photos["dog.jpg"])
    assert len(encoder_calls) == 1 and not first.cache_hit
    second.set_image(photos["dog.jpg"].copy())  # same content, another array, another predictor
    assert len(encoder_calls) == 1 and second.cache_hit
    second.set_image(photos["truck.jpg"])
    assert len(encoder_calls) == 2
    first.set_image(photos["truck.jpg"])
    assert len(encoder_calls) == 2
    a = first.predict(np.array([[300, 300]]), np.array([1]))
    b = second.predict(np.array([[300, 300]]), np.array([1]))
    np.testing.assert_array_equal(a[2], b[2])


def test_a_known_digest_skips_hashing_and_hits_the_same_entry(
    model, encoder_calls, photos, monkeypatch
):
    import sam.predictor
    from sam.cache import array_digest

    dog = photos["dog.jpg"]
    digest = array_digest(dog)
    SamPredictor(model).set_image(dog)

    def no_hashing(array):
        raise AssertionError("hashed although the digest was given")

    monkeypatch.setattr(sam.predictor, "array_digest", no_hashing)
    again = SamPredictor(model)
    again.set_image(dog, digest=digest)
    assert again.cache_hit and len(encoder_calls) == 1
    a = again.predict(np.array([[300, 300]]), np.array([1]))
    fresh = SamPredictor(model)
    fresh.set_image(dog, digest=digest)
    b = fresh.predict(np.array([[300, 300]]), np.array([1]))
    np.testing.assert_array_equal(a[2], b[2])


def test_cache_is_bounded_in_bytes(model, encoder_calls, photos):
    embedding_bytes = 64 * 64 * 64 * 4  # tiny model: (1, 64, 64, 64) float32
    model.set_cache_bytes(2 * embedding_bytes + 100)
    predictor = SamPredictor(model)
    for name in ("dog.jpg", "dogs.jpg", "truck.jpg"):
        predictor.set_image(photos[name])
        assert model.embedding_cache.nbytes <= model.embedding_cache.max_bytes
    assert len(encoder_calls) == 3
    predictor.set_image(photos["dog.jpg"])  # least recently used: evicted, encoded again
    assert len(encoder_calls) == 4
    predictor.set_image(photos["truck.jpg"])
    assert len(encoder_calls) == 4


def test_box_partly_outside_is_clipped(model, truck):
    predictor = SamPredictor(model)
    predictor.set_image(truck)
    h, w = truck.shape[:2]
    clipped = predictor.predict(box=np.array([0, 100, w, h]), multimask_output=False)
    outside = predictor.predict(box=np.array([-50, 100, w + 80, h + 30]), multimask_output=False)
    np.testing.assert_array_equal(clipped[0], outside[0])


def test_predict_boxes_equals_one_by_one(model, truck):
    predictor = SamPredictor(model)
    predictor.set_image(truck)
    boxes = np.array([[100, 100, 600, 500], [700, 300, 1500, 1100], [0, 0, 1800, 1200]])
    masks, scores, logits = predictor.predict_boxes(boxes)
    assert masks.shape == (3, 1, *truck.shape[:2]) and scores.shape == (3, 1)
    for i, box in enumerate(boxes):
        m, s, lg = predictor.predict(box=box, multimask_output=False)
        assert (m[0] == masks[i, 0]).mean() > 0.9999
        np.testing.assert_allclose(s, scores[i], atol=1e-5)
        np.testing.assert_allclose(lg, logits[i], atol=1e-4)


def test_grayscale_and_rgba_files_work(model, tmp_path, truck):
    predictor = SamPredictor(model)
    for mode in ("L", "RGBA"):
        path = tmp_path / f"image_{mode}.png"
        Image.fromarray(truck).convert(mode).save(path)
        predictor.set_image(path)
        masks, _, _ = predictor.predict(np.array([[10, 10]]), np.array([1]))
        assert masks.shape[1:] == truck.shape[:2]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "No prompt given"),
        ({"point_coords": [[1, 2]]}, "must be given together"),
        ({"point_coords": [[1, 2, 3]], "point_labels": [1]}, r"shape \(N, 2\)"),
        ({"point_coords": [[1, 2], [3, 4]], "point_labels": [1]}, "1 labels for 2 points"),
        ({"point_coords": [[1, 2]], "point_labels": [2]}, "1 \\(foreground\\) or 0"),
        ({"point_coords": [[np.nan, 2]], "point_labels": [1]}, "NaN or infinite"),
        ({"point_coords": [[1e12, 2]], "point_labels": [1]}, "outside the 1800×1200 image"),
        ({"point_coords": [[-1, 5]], "point_labels": [1]}, "outside"),
        ({"point_coords": [["a", 5]], "point_labels": [1]}, "must be numeric"),
        ({"box": [500, 100, 200, 400]}, "empty or inverted"),
        ({"box": [100, 100, 100, 400]}, "empty or inverted"),
        ({"box": [1900, 1300, 2500, 1600]}, "outside the 1800×1200 image"),
        ({"box": [1, 2, 3]}, r"\[x0, y0, x1, y1\]"),
        ({"box": [0, 0, np.inf, 5]}, "NaN or infinite"),
        ({"mask_input": np.zeros((64, 64))}, r"\(1, 256, 256\)"),
    ],
)
def test_bad_prompts_raise_prompt_error(model, truck, kwargs, message):
    predictor = SamPredictor(model)
    predictor.set_image(truck)
    with pytest.raises(PromptError, match=message):
        predictor.predict(**kwargs)


def test_predict_before_set_image(model):
    with pytest.raises(PromptError, match="No image is set"):
        SamPredictor(model).predict(point_coords=[[1, 1]], point_labels=[1])


def test_bad_boxes_batch(model, truck):
    predictor = SamPredictor(model)
    predictor.set_image(truck)
    with pytest.raises(PromptError, match=r"shape \(N, 4\)"):
        predictor.predict_boxes(np.zeros((0, 4)))


@pytest.fixture
def decoder_must_not_run(model, monkeypatch):
    """Makes any decoder run fail the test: over-limit prompts are refused before any work."""

    def decode(*args, **kwargs):
        raise AssertionError("the decoder ran for a prompt that should have been refused")

    monkeypatch.setattr(model, "decode", decode)


def test_most_points_per_prompt_still_work(model, truck):
    predictor = SamPredictor(model)
    predictor.set_image(truck)
    coords = [[10 + i, 20 + i] for i in range(MAX_POINTS)]
    masks, _, _ = predictor.predict(coords, [1] * MAX_POINTS, multimask_output=False)
    assert masks.shape == (1, *truck.shape[:2])


@pytest.mark.parametrize("count", [MAX_POINTS + 1, 1_000_000])
def test_too_many_points_are_refused_before_decoding(model, truck, decoder_must_not_run, count):
    predictor = SamPredictor(model)
    predictor.set_image(truck)
    coords = [[10, 20]] * count
    with pytest.raises(
        PromptError, match=f"{count} points is more than the limit of 64 per prompt"
    ):
        predictor.predict(coords, [1] * count)
    with pytest.raises(PromptError, match="more than the limit of 64"):
        predictor.predict(np.array(coords, dtype=np.float32), np.ones(count, dtype=np.int64))


def test_too_many_labels_are_refused_before_decoding(model, truck, decoder_must_not_run):
    predictor = SamPredictor(model)
    predictor.set_image(truck)
    with pytest.raises(PromptError, match="65 point labels is more than the limit of 64"):
        predictor.predict([[10, 20]], [1] * 65)


def test_too_many_boxes_are_refused_before_decoding(model, truck, decoder_must_not_run):
    predictor = SamPredictor(model)
    predictor.set_image(truck)
    boxes = np.tile([100, 200, 400, 500], (MAX_BOXES + 1, 1))
    with pytest.raises(PromptError, match="65 boxes is more than the limit of 64 .* batches of"):
        predictor.predict_boxes(boxes)


@pytest.mark.parametrize("shape", [(1, 1), (1, 5000), (5000, 1), (3, 2)])
def test_tiny_and_extreme_aspect_images(model, shape):
    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    predictor = SamPredictor(model)
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(np.array([[0, 0]]), np.array([1]))
    assert masks.shape == (3, *shape) and np.isfinite(scores).all()


def test_exif_rotated_photo_masks_line_up_with_the_displayed_image(model, truck, tmp_path):
    """A phone photo stored sideways with an EXIF turn: masks follow the upright image."""
    stored = np.ascontiguousarray(
        np.rot90(truck, k=1)
    )  # what the camera wrote (1800x1200 -> 1200x1800)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "phone.png"
    Image.fromarray(stored).save(path, exif=exif)
    predictor = SamPredictor(model)
    predictor.set_image(path)
    assert predictor.original_size == truck.shape[:2]
    from_file = predictor.predict(np.array([[500, 375]]), np.array([1]))
    predictor.set_image(truck)
    upright = predictor.predict(np.array([[500, 375]]), np.array([1]))
    np.testing.assert_array_equal(from_file[0], upright[0])
