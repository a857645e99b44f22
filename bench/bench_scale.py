"""Throughput of ``python -m sam.precompute`` here and on Ray, and what a cluster would do.

    python bench/bench_scale.py [--model-dims vit-b|tiny] [--images N] [--workers W]
                                [--json out.json] [--checkpoint-dir DIR]

Builds a random-weight checkpoint in the Hugging Face format (no download) and ``N`` distinct
images (the example photos, as they are, mirrored and cropped), then encodes them into fresh
embedding stores:

- **local**: :func:`sam.precompute.precompute` in this process (torch on every core);
- **ray**: :func:`sam.scale.precompute_on_ray` on a Ray cluster started here with ``W`` actors
  of one CPU each (one model per actor). Cluster start-up (``ray.init``) is timed apart; the
  run's fixed cost (actors loading the model, listing, skipping) is the wall time of a second
  run over the filled store, which encodes nothing.

Reported: images/s and seconds per image for both, Ray's encoding time without its fixed
cost, and the projection for ``K`` workers: each worker encodes ``1 / t`` images per second
(``t``: its measured seconds per image), so ``K`` of them take ``images * t / K`` seconds.
The box is shared with other work; the 1-minute load average is recorded before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

DIMS = {"vit-b": "VIT_B_DIMS", "tiny": "TINY_DIMS"}
FOLDER_SIZES = (1_000, 100_000)
CLUSTER_SIZES = (1, 8, 32, 128)


def make_images(folder: Path, count: int) -> None:
    """``count`` distinct photos from the examples: as they are, mirrored, cropped, both."""
    from PIL import Image, ImageOps

    photos = sorted((REPO / "static" / "examples").glob("*.jpg"))
    variants = [
        lambda im: im,
        ImageOps.mirror,
        lambda im: im.crop((0, 0, im.width * 3 // 4, im.height * 3 // 4)),
        lambda im: ImageOps.mirror(im.crop((im.width // 4, 0, im.width, im.height))),
    ]
    if count > len(photos) * len(variants):
        raise SystemExit(f"--images at most {len(photos) * len(variants)}")
    for i in range(count):
        photo, variant = photos[i % len(photos)], variants[i // len(photos)]
        with Image.open(photo) as img:
            variant(img.convert("RGB")).save(folder / f"{i:03d}_{photo.stem}.png")


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import checkpoints
    import ray
    import torch

    from sam import SamPredictor, load_model
    from sam.disk_cache import EmbeddingDiskCache
    from sam.precompute import precompute
    from sam.scale import RayOptions, precompute_on_ray

    ckpt = (args.checkpoint_dir or tmp / "ckpt") / args.model_dims
    if not (ckpt / "model.safetensors").is_file():
        print(f"building a random {args.model_dims} checkpoint in {ckpt} ...")
        dims = getattr(checkpoints, DIMS[args.model_dims])
        checkpoints.save_hf_checkpoint(checkpoints.random_hf_sam(dims, seed=0), ckpt)
    images = tmp / "images"
    images.mkdir()
    make_images(images, args.images)

    model = load_model(ckpt, device="cpu", dtype=args.precision)
    start = time.perf_counter()
    local = precompute(SamPredictor(model, EmbeddingDiskCache(tmp / "local", model)), images)
    local_s = time.perf_counter() - start
    assert local.encoded == args.images, local.line()
    del model

    start = time.perf_counter()
    ray.init(num_cpus=args.workers, include_dashboard=False, logging_level="ERROR",
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})  # fmt: skip
    init_s = time.perf_counter() - start
    options = RayOptions(address="auto", num_workers=args.workers, batch_size=1)
    try:
        start = time.perf_counter()
        on_ray, _ = precompute_on_ray(
            str(ckpt), images, tmp / "ray", options, "cpu", args.precision
        )
        ray_s = time.perf_counter() - start
        assert on_ray.encoded == args.images, on_ray.line()
        start = time.perf_counter()
        rerun, _ = precompute_on_ray(str(ckpt), images, tmp / "ray", options, "cpu", args.precision)
        fixed_s = time.perf_counter() - start
        assert rerun.encoded == 0, rerun.line()
    finally:
        ray.shutdown()

    n = args.images
    encode_s = max(ray_s - fixed_s, 1e-9)
    per_worker_s = encode_s * args.workers / n  # one actor's seconds per image
    return {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "torch_threads_local": torch.get_num_threads(),
        "model_dims": args.model_dims,
        "precision": args.precision,
        "images": n,
        "workers": args.workers,
        "local_s": round(local_s, 2),
        "local_images_per_s": round(n / local_s, 3),
        "local_s_per_image": round(local_s / n, 2),
        "ray_init_s": round(init_s, 2),
        "ray_s": round(ray_s, 2),
        "ray_fixed_s": round(fixed_s, 2),
        "ray_images_per_s": round(n / ray_s, 3),
        "ray_encode_images_per_s": round(n / encode_s, 3),
        "ray_worker_s_per_image": round(per_worker_s, 2),
        "projection_hours": {
            str(size): {str(k): round(size * per_worker_s / k / 3600, 2) for k in CLUSTER_SIZES}
            for size in FOLDER_SIZES
        },
    }


def table(result: dict[str, Any]) -> str:
    workers = result["workers"]
    encode_s = round(result["ray_s"] - result["ray_fixed_s"], 2)
    rows = [
        ("local (1 process, torch on all cores)", result["local_s"], result["local_images_per_s"]),
        (f"Ray, {workers} actors x 1 CPU, with actor start", result["ray_s"],
         result["ray_images_per_s"]),
        (f"Ray, {workers} actors, encoding only", encode_s, result["ray_encode_images_per_s"]),
    ]  # fmt: skip
    lines = ["| run | wall s | images/s |", "| --- | --- | --- |"]
    lines += [f"| {name} | {secs} | {rate} |" for name, secs, rate in rows]
    lines += ["", f"Ray start-up (ray.init): {result['ray_init_s']} s; fixed cost per run "
              f"(actors load the model, list, skip): {result['ray_fixed_s']} s; one actor: "
              f"{result['ray_worker_s_per_image']} s per image.", "",
              "| folder | " + " | ".join(f"{k} workers" for k in CLUSTER_SIZES) + " |",
              "| --- |" + " --- |" * len(CLUSTER_SIZES)]  # fmt: skip
    for size, by_k in result["projection_hours"].items():
        lines.append(
            f"| {int(size):,} images | " + " | ".join(f"{h} h" for h in by_k.values()) + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dims", choices=sorted(DIMS), default="vit-b")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"])
    parser.add_argument("--json", type=Path, help="write the result here")
    parser.add_argument("--checkpoint-dir", type=Path, help="keep/reuse the random checkpoint")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="sam-bench-scale-") as tmp:
        result = run(args, Path(tmp))
    result["load_avg_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(table(result))
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
