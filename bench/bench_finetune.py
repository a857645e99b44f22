"""Fine-tuning throughput: training samples per second of ``sam.finetune``'s default mode
(prompt encoder + mask decoder on cached image embeddings).

    python bench/bench_finetune.py [--device cpu|cuda] [--batch-sizes 1 4 8]
                                   [--corrections 0 2] [--steps N] [--json out.json]

The decoder's dimensions are the same in every released SAM (ViT-B, -L, -H, SlimSAM, MedSAM),
and training on cached embeddings never runs the image encoder, so one random-weight model
with SAM's decoder dims stands for all of them. Each step is the real training step
(:func:`sam.finetune.trainer.interactive_loss`, backward, AdamW) on random ``(B, 256, 64, 64)``
embeddings and square target masks; the median step time of ``--steps`` steps after one
warm-up step is reported. The box is shared: the 1-minute load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sam.finetune.trainer import (  # noqa: E402
    interactive_loss,
    trainable_copy,
    trainable_parameters,
)
from sam.modeling import Sam, SamConfig, VisionConfig  # noqa: E402


def decoder_model(device: torch.device) -> Sam:
    """SAM's prompt encoder and mask decoder at their real dims; a 1-layer encoder (unused)."""
    vision = VisionConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=2)
    torch.manual_seed(0)
    return Sam(SamConfig(vision_config=vision)).to(device)


def targets(batch: int) -> torch.Tensor:
    """Squares of varied size and place on the 256x256 low-res grid."""
    out = torch.zeros(batch, 256, 256, dtype=torch.bool)
    for b in range(batch):
        side = 30 + 20 * (b % 5)
        top, left = 20 + 7 * b % 150, 40 + 11 * b % 150
        out[b, top : top + side, left : left + side] = True
    return out


def measure(model: Sam, batch: int, corrections: int, steps: int, device: torch.device) -> float:
    """Median seconds of one training step."""
    trainable = trainable_copy(model, "prompt-decoder").train()
    params = trainable_parameters(trainable, "prompt-decoder")
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(batch, 256, 64, 64, device=device)
    target = targets(batch).to(device)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with torch.enable_grad():
            loss = interactive_loss(trainable, features, target, corrections, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--corrections", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    device = torch.device(args.device)
    model = decoder_model(device)
    rows = []
    load_before = os.getloadavg()[0]
    for corrections in args.corrections:
        for batch in args.batch_sizes:
            seconds = measure(model, batch, corrections, args.steps, device)
            rows.append(
                {
                    "batch_size": batch,
                    "corrections": corrections,
                    "step_s": round(seconds, 4),
                    "samples_per_s": round(batch / seconds, 2),
                }
            )
    result = {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "rows": rows,
    }
    print(f"device {device}, {result['threads']} threads, load {result['load_1min_before_after']}")
    print(f"{'batch':>6} {'corrections':>12} {'step s':>9} {'samples/s':>10}")
    for row in rows:
        print(
            f"{row['batch_size']:>6} {row['corrections']:>12} {row['step_s']:>9.3f} "
            f"{row['samples_per_s']:>10.2f}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
