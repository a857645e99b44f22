"""With no --model the app picks SAM 2.1 Hiera-Tiny on a CPU and SAM ViT-B on a GPU."""

from __future__ import annotations

import pytest
import torch

import app


def test_cpu_default_is_sam21_tiny():
    assert app.parse_args(["--device", "cpu"]).model == "facebook/sam2.1-hiera-tiny"


def test_gpu_default_is_vit_b():
    assert app.parse_args(["--device", "cuda"]).model == "facebook/sam-vit-base"


@pytest.mark.parametrize(
    ("cuda", "expected"), [(False, "sam2.1-hiera-tiny"), (True, "sam-vit-base")]
)
def test_auto_follows_the_device_it_would_pick(monkeypatch, cuda, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert app.parse_args([]).model == f"facebook/{expected}"


def test_a_chosen_model_is_kept():
    args = app.parse_args(["--device", "cpu", "--model", "facebook/sam-vit-base"])
    assert args.model == "facebook/sam-vit-base"
