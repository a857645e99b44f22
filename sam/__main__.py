"""Command line.

``python -m sam predict --model SRC --image PATH --point X Y --out mask.png``
``python -m sam everything --model SRC --image PATH --out masks.json``
``python -m sam text --model SRC --image PATH --text "dog. cat." --out objects.json``
``python -m sam export-onnx --model SRC --out DIR`` (writes DIR/decoder.onnx)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from .automatic import AutoMaskConfig, AutomaticMaskGenerator
from .checkpoint import KNOWN_MODELS, load_model
from .device import PRECISION_CHOICES
from .errors import SamError
from .image_io import load_image
from .masks import mask_to_rle
from .onnx_export import OPSET, export_decoder
from .predictor import SamPredictor, check_point_count
from .text_prompt import DEFAULT_DETECTOR, GroundingDetector, TextPromptConfig, segment_by_text

logger = logging.getLogger("sam")

_AMG_OPTIONS = {
    "points_per_side": "grid points per image side",
    "points_per_batch": "prompts decoded together on a GPU (memory vs speed; at most 2 on a CPU)",
    "pred_iou_thresh": "minimum predicted IoU",
    "stability_score_thresh": "minimum stability score",
    "stability_score_offset": "logit offset of the stability score",
    "box_nms_thresh": "box IoU above which duplicates are dropped",
    "crop_n_layers": "extra layers of zoomed crops (slower, finds small objects)",
    "min_mask_region_area": "remove islands and holes smaller than this (pixels)",
}


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    known = ", ".join(KNOWN_MODELS.values())
    parser.add_argument(
        "--model",
        default="facebook/sam-vit-base",
        help=f"hub repo id ({known}), a model folder, or a Meta .pth file (default: %(default)s)",
    )
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA if available), cpu or cuda (default: auto)"
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=PRECISION_CHOICES,
        help="image-encoder precision; auto: bf16 on CPUs with native bf16 (avx512_bf16/AMX) "
        "and on GPUs, else fp32 (default: auto)",
    )
    parser.add_argument("--image", required=True, type=Path, help="image file to segment")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sam", description="Segment Anything from the command line."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    predict = sub.add_parser(
        "predict",
        help="segment one object from point and/or box prompts and save the best mask",
        description="Segment one object and write the best mask as a PNG (0/255, image size).",
    )
    _add_model_args(predict)
    predict.add_argument(
        "--point",
        nargs=2,
        type=float,
        action="append",
        default=[],
        metavar=("X", "Y"),
        help="foreground point in image pixels; repeat for more points",
    )
    predict.add_argument(
        "--negative",
        nargs=2,
        type=float,
        action="append",
        default=[],
        metavar=("X", "Y"),
        help="background point (not part of the object); repeatable",
    )
    predict.add_argument(
        "--box", nargs=4, type=float, metavar=("X0", "Y0", "X1", "Y1"), help="box around the object"
    )
    predict.add_argument("--out", required=True, type=Path, help="output PNG path")
    predict.add_argument(
        "--single",
        action="store_true",
        help="ask for one mask instead of three candidates (better with several prompts)",
    )

    everything = sub.add_parser(
        "everything",
        help="segment everything in an image (automatic mask generation)",
        description="Propose masks for every object: a grid of point prompts, filtered by "
        "predicted IoU and stability, de-duplicated by box NMS. Writes JSON with COCO RLE "
        "masks, and optionally one PNG per mask.",
    )
    _add_model_args(everything)
    everything.add_argument("--out", required=True, type=Path, help="output JSON path")
    everything.add_argument("--png-dir", type=Path, help="also write each mask as a PNG here")
    # Unset options take the loaded model's family defaults (SAM 2's generator keeps more).
    sam1, sam2 = AutoMaskConfig.for_family("sam"), AutoMaskConfig.for_family("sam2")
    for name, help_text in _AMG_OPTIONS.items():
        value, value2 = getattr(sam1, name), getattr(sam2, name)
        default = str(value) if value == value2 else f"{value} for SAM, {value2} for SAM 2"
        everything.add_argument(
            "--" + name.replace("_", "-"),
            type=type(value),
            default=None,
            help=f"{help_text} (default: {default})",
        )
    text = sub.add_parser(
        "text",
        help="find and segment objects named in a text prompt (Grounding DINO + SAM)",
        description="Detect the phrases of --text with Grounding DINO (needs the optional "
        "extra: pip install '.[text]'), segment each box with SAM, write JSON with COCO RLE "
        "masks labelled by phrase.",
    )
    _add_model_args(text)
    text.add_argument("--text", required=True, help="what to find, e.g. 'dog. cat.'")
    text.add_argument("--out", required=True, type=Path, help="output JSON path")
    text.add_argument(
        "--detector",
        default=DEFAULT_DETECTOR,
        help="Grounding DINO hub repo id or local folder (default: %(default)s)",
    )
    text_defaults = TextPromptConfig()
    for name in ("box_threshold", "text_threshold", "nms_threshold"):
        text.add_argument(
            "--" + name.replace("_", "-"),
            type=float,
            default=getattr(text_defaults, name),
            help="(default: %(default)s)",
        )
    onnx = sub.add_parser(
        "export-onnx",
        help="export the prompt encoder + mask decoder to ONNX (Meta's signature)",
        description="Write DIR/decoder.onnx: the prompt encoder and mask decoder with the inputs "
        "and outputs of Meta's segment_anything ONNX export, for ONNX Runtime (Web). Needs the "
        "optional extra: pip install '.[onnx]'.",
    )
    onnx.add_argument(
        "--model",
        default="facebook/sam-vit-base",
        help="hub repo id, a model folder, or a Meta .pth file (default: %(default)s)",
    )
    onnx.add_argument("--out", required=True, type=Path, help="output folder")
    onnx.add_argument(
        "--opset", type=int, default=OPSET, help="ONNX opset version (default: %(default)s)"
    )
    return parser


def _export_onnx(args: argparse.Namespace) -> int:
    model = load_model(args.model, device="cpu", dtype="fp32")
    path = export_decoder(model.model, args.out / "decoder.onnx", opset=args.opset)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def _text(args: argparse.Namespace) -> int:
    config = TextPromptConfig(args.box_threshold, args.text_threshold, args.nms_threshold)
    model = load_model(args.model, device=args.device, dtype=args.precision)
    detector = GroundingDetector(args.detector, device=args.device)
    image = load_image(args.image)
    proposals = segment_by_text(SamPredictor(model), detector, image, args.text, config)
    annotations = [
        {
            "id": i + 1,
            "label": p.detection.phrase,
            "box_score": round(p.detection.score, 6),
            "box": [round(v, 2) for v in p.detection.box],
            "segmentation": mask_to_rle(p.mask),
            "area": int(p.mask.sum()),
            "predicted_iou": round(p.mask_score, 6),
        }
        for i, p in enumerate(proposals)
    ]
    height, width = image.shape[:2]
    document = {
        "image": {"file_name": args.image.name, "height": height, "width": width},
        "text": args.text,
        "annotations": annotations,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1))
    for a in annotations:
        print(f"{a['label']}: box score {a['box_score']:.3f}, area {a['area']} px")
    print(f"wrote {len(annotations)} objects to {args.out}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    points = [*args.point, *args.negative]
    labels = [1] * len(args.point) + [0] * len(args.negative)
    if not points and args.box is None:
        raise SamError("Give at least one --point, --negative or --box.")
    check_point_count(points, "--point/--negative points")  # before the model loads
    model = load_model(args.model, device=args.device, dtype=args.precision)
    predictor = SamPredictor(model)
    start = time.perf_counter()
    predictor.set_image(load_image(args.image))
    logger.info("Image ready in %.2f s", time.perf_counter() - start)
    masks, scores, _ = predictor.predict(
        point_coords=np.array(points) if points else None,
        point_labels=np.array(labels) if points else None,
        box=None if args.box is None else np.array(args.box),
        multimask_output=not args.single and len(points) <= 1 and args.box is None,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(masks[0].astype(np.uint8) * 255).save(args.out)
    for rank, score in enumerate(scores):
        saved = "  -> saved" if rank == 0 else ""
        area = int(masks[rank].sum())
        print(f"candidate {rank + 1}: predicted IoU {score:.4f}, area {area} px{saved}")
    print(f"wrote {args.out} ({masks.shape[2]}x{masks.shape[1]})")
    return 0


def _everything(args: argparse.Namespace) -> int:
    chosen = {name: getattr(args, name) for name in _AMG_OPTIONS if getattr(args, name) is not None}
    AutoMaskConfig(**chosen)  # bad settings fail before the model loads
    model = load_model(args.model, device=args.device, dtype=args.precision)
    config = AutoMaskConfig.for_family(model.family, **chosen)
    image = load_image(args.image)
    with tqdm(desc="segmenting", unit="batch", disable=None) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        proposals = AutomaticMaskGenerator(model, config).generate(image, progress=progress)
    annotations = [
        {
            "id": i + 1,
            "segmentation": p.rle(),
            "area": p.area,
            "bbox": p.bbox,
            "predicted_iou": round(p.predicted_iou, 6),
            "stability_score": round(p.stability_score, 6),
            "point_coords": [list(p.point)],
            "crop_box": p.crop_box,
        }
        for i, p in enumerate(proposals)
    ]
    height, width = image.shape[:2]
    document = {
        "image": {"file_name": args.image.name, "height": height, "width": width},
        "model": {"family": model.family},
        "settings": asdict(config),
        "annotations": annotations,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1))
    if args.png_dir is not None:
        args.png_dir.mkdir(parents=True, exist_ok=True)
        for i, p in enumerate(proposals):
            mask = Image.fromarray(p.segmentation.astype(np.uint8) * 255)
            mask.save(args.png_dir / f"mask_{i + 1:04d}.png")
    print(f"wrote {len(proposals)} masks to {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        commands = {
            "predict": _predict,
            "everything": _everything,
            "text": _text,
            "export-onnx": _export_onnx,
        }
        return commands[args.command](args)
    except SamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
