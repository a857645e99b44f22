"""SamPredictor with a SAM 2 engine, end to end on the example photos, against
``transformers.Sam2Model`` fed the same ``pixel_values`` and per-axis scaled prompts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from prompts import ATOL, assert_matches, frac, ours, prompts_for

from sam import SamPredictor, load_model
from sam.cache import nbytes_of
from sam.disk_cache import EmbeddingDiskCache
from sam.engine import Sam2Engine
from sam.transforms import preprocess_square, rescale_coords, upscale_logits_direct


@pytest.fixture(scope="module")
def engine(tiny_sam2_checkpoint):
    return load_model(tiny_sam2_checkpoint, device="cpu")


def reference(hf, features, image: np.ndarray, prompt: dict, multimask: bool, mask=None):
    """transformers' masks, scores and logits, sorted best first; masks upsampled straight to
    the image size (SAM 2's post-processing)."""
    size = image.shape[:2]
    kwargs = {}
    if "points" in prompt:
        points = rescale_coords(np.array(prompt["points"], float), size, (1024, 1024))
        kwargs["input_points"] = torch.tensor(points, dtype=torch.float32)[None, None]
        kwargs["input_labels"] = torch.tensor(prompt["labels"])[None, None]
    if "box" in prompt:
        box = rescale_coords(np.array(prompt["box"], float).reshape(2, 2), size, (1024, 1024))
        kwargs["input_boxes"] = torch.tensor(box.reshape(1, 1, 4), dtype=torch.float32)
    if mask is not None:
        kwargs["input_masks"] = torch.as_tensor(mask)[None]
    with torch.no_grad():
        out = hf(image_embeddings=features, multimask_output=multimask, **kwargs)
    scores, logits = out.iou_scores[0, 0], out.pred_masks[0, 0]
    order = torch.argsort(scores, descending=True, stable=True)
    logits = logits[order]
    masks = F.interpolate(logits[None], size, mode="bilinear", align_corners=False)[0] > 0
    return masks.numpy(), scores[order].numpy(), logits.numpy()


@pytest.mark.parametrize("name", ["dogs.jpg"])
def test_prompts_match_transformers(engine, tiny_hf_sam2, photos, name):
    image = photos[name]
    predictor = SamPredictor(engine)
    predictor.set_image(image)
    pixels = preprocess_square(image, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    with torch.no_grad():
        features = tiny_hf_sam2.get_image_embeddings(pixels)
    for got, want in zip(predictor.get_image_embedding(), features, strict=True):
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    for label, prompt in prompts_for(image).items():
        for multimask in (True, False):
            result = ours(predictor, prompt, multimask)
            assert result[1].shape == ((3,) if multimask else (1,)), label
            assert_matches(result, reference(tiny_hf_sam2, features, image, prompt, multimask))

    # Refinement with the previous low-res logits as mask_input.
    first = prompts_for(image)["one point"]
    logits = ours(predictor, first, True)[2]
    second = {"points": [frac(image, 0.5, 0.5), frac(image, 0.8, 0.2)], "labels": [1, 0]}
    refined = ours(predictor, second, False, mask_input=logits[:1])
    ref = reference(tiny_hf_sam2, features, image, second, False, mask=logits[:1])
    assert_matches(refined, ref)
    assert not np.allclose(ours(predictor, second, False)[2], refined[2])


def test_engine_exposes_the_family(engine, tiny_sam2_meta_checkpoint):
    assert isinstance(engine, Sam2Engine)
    assert engine.family == "sam2-hiera-tiny"  # a folder whose name does not say 2.1
    assert load_model(tiny_sam2_meta_checkpoint, device="cpu").family == "sam2.1-hiera-tiny"


def test_predict_boxes_equals_one_box_at_a_time(engine, photos):
    image = photos["groceries.jpg"]
    predictor = SamPredictor(engine)
    predictor.set_image(image)
    h, w = image.shape[:2]
    boxes = np.array([[0.1 * w, 0.1 * h, 0.5 * w, 0.6 * h], [0.4 * w, 0.3 * h, 0.9 * w, 0.95 * h]])
    masks, scores, logits = predictor.predict_boxes(boxes)
    assert (
        masks.shape == (2, 1, h, w) and scores.shape == (2, 1) and logits.shape == (2, 1, 256, 256)
    )
    for i, box in enumerate(boxes):
        one = predictor.predict(box=box, multimask_output=False)
        np.testing.assert_allclose(scores[i], one[1], atol=1e-5, rtol=0)
        assert (masks[i] == one[0]).mean() >= 0.999


def test_cache_counts_every_feature_map(tiny_sam2_checkpoint, photos):
    engine = load_model(tiny_sam2_checkpoint, device="cpu")
    predictor = SamPredictor(engine)
    predictor.set_image(photos["dog.jpg"])
    maps = predictor.get_image_embedding()
    assert len(maps) == 3
    assert engine.embedding_cache.nbytes == sum(m.element_size() * m.nelement() for m in maps)
    assert engine.embedding_cache.nbytes == nbytes_of(maps) > maps[-1].nelement() * 4


def test_disk_cache_stores_all_maps(tiny_sam2_checkpoint, photos, tmp_path):
    image = photos["dog.jpg"]
    prompt = {"points": [frac(image, 0.5, 0.5)], "labels": [1]}
    first = SamPredictor(
        load_model(tiny_sam2_checkpoint, device="cpu"),
        EmbeddingDiskCache(tmp_path, load_model(tiny_sam2_checkpoint, device="cpu")),
    )
    first.set_image(image)
    assert first.embedding_source == "encoder"
    expected = ours(first, prompt, True)

    engine = load_model(tiny_sam2_checkpoint, device="cpu")

    def encode_again(pixels):
        raise AssertionError("the disk cache must serve this image")

    engine.encode_image = encode_again
    second = SamPredictor(engine, EmbeddingDiskCache(tmp_path, engine))
    second.set_image(image)
    assert second.embedding_source == "disk"
    for got, want in zip(second.get_image_embedding(), first.get_image_embedding(), strict=True):
        torch.testing.assert_close(got, want, atol=0, rtol=0)
    for got, want in zip(ours(second, prompt, True), expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_preprocess_square_resizes_like_pil_and_normalises(photos):
    """The square resize ignores the aspect ratio; bilinear with antialias is PIL's bilinear
    resampling (within uint8 rounding), then ImageNet mean/std."""
    image = photos["dogs.jpg"]
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    pixels = preprocess_square(image, mean, std, 1024)
    assert pixels.shape == (1, 3, 1024, 1024) and pixels.dtype == torch.float32
    rgb = pixels[0].permute(1, 2, 0) * torch.tensor(std) + torch.tensor(mean)
    pil = np.asarray(Image.fromarray(image).resize((1024, 1024), Image.Resampling.BILINEAR))
    diff = np.abs(rgb.numpy() * 255 - pil.astype(np.float32))
    assert diff.max() <= 1.5 and diff.mean() < 0.5
    flat = np.full((300, 700, 3), (10, 128, 250), np.uint8)
    expected = (torch.tensor([10, 128, 250]) / 255 - torch.tensor(mean)) / torch.tensor(std)
    torch.testing.assert_close(
        preprocess_square(flat, mean, std)[0, :, 500, 700], expected, atol=1e-5, rtol=0
    )


def test_coordinates_scale_per_axis_and_logits_go_straight_to_the_image_size():
    coords = rescale_coords(np.array([[0, 0], [800, 534], [400, 267]]), (534, 800), (1024, 1024))
    np.testing.assert_allclose(coords, [[0, 0], [1024, 1024], [512, 512]])
    low = torch.zeros(1, 1, 256, 256)
    low[..., 64:192, 32:96] = 10.0
    up = upscale_logits_direct(low, (534, 800))
    assert up.shape == (1, 1, 534, 800)
    rows, cols = np.nonzero((up[0, 0] > 0).numpy())
    # The 256 grid spans the whole image: the block covers the same fractions of it.
    assert abs(rows.min() / 534 - 64 / 256) < 0.01 and abs(cols.max() / 800 - 96 / 256) < 0.01


def test_mask_prompt_follows_the_square_geometry(engine, tiny_checkpoint):
    """A mask turned into mask_input covers the same fractions of the 256 grid as of the image
    (SAM 2), where SAM's covers them within the padded square."""
    mask = np.zeros((400, 800), bool)
    mask[200:, 400:] = True  # the bottom-right quarter
    logits = engine.mask_prompt(mask)
    assert logits.shape == (1, 256, 256) and logits.dtype == np.float32
    rows, cols = np.nonzero(logits[0] > 0)
    assert (rows.min(), cols.min(), rows.max(), cols.max()) == (128, 128, 255, 255)
    sam = load_model(tiny_checkpoint, device="cpu").mask_prompt(mask)
    rows, cols = np.nonzero(sam[0] > 0)
    assert (rows.min(), cols.min(), rows.max()) == (64, 128, 127)


def test_encode_reuses_the_position_embedding_until_the_weights_change(tiny_sam2_checkpoint):
    """The engine keeps the backbone's interpolated positional embedding between encodes; a
    new one is computed when the weights behind it change (here: loaded in place)."""
    engine = load_model(tiny_sam2_checkpoint, device="cpu")
    pixels = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        first = engine.encode_image(pixels)
        again = engine.encode_image(pixels)
        direct = engine.model.encode_image(pixels)
    for got, want in zip(again, direct, strict=True):
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    backbone = engine.model.vision_encoder.backbone
    with torch.no_grad():
        backbone.pos_embed.copy_(torch.randn_like(backbone.pos_embed))
    with torch.inference_mode():
        changed = engine.encode_image(pixels)
        direct = engine.model.encode_image(pixels)
    for got, want, before in zip(changed, direct, first, strict=True):
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
        assert not torch.allclose(got, before, atol=ATOL)
