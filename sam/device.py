"""Choosing where and in which precision the model runs."""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import torch

from .errors import DeviceError

logger = logging.getLogger(__name__)

# Makes ``auto`` mean this precision instead (``fp32`` pins the reference precision, e.g. for
# tests that compare with transformers' fp32 outputs).
PRECISION_ENV = "SAM_PRECISION"

# What ``--precision`` accepts in the app and the CLI.
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")

_DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; other names are checked, not trusted."""
    if isinstance(device, str) and device == "auto":
        chosen = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        logger.info("device=auto chose %s", chosen)
        return chosen
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"Unknown device {device!r}; use auto, cpu or cuda.") from exc
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            "CUDA was requested but no CUDA GPU is visible to PyTorch "
            f"(torch {torch.__version__}); use --device cpu or auto."
        )
    if chosen.type not in ("cpu", "cuda"):
        raise DeviceError(f"Unsupported device {device!r}; use auto, cpu or cuda.")
    return chosen


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """CPU feature flags from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 in hardware (AVX512-BF16 or AMX); elsewhere bf16 is
    emulated and about 100x slower than fp32."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def cuda_has_bf16(device: torch.device) -> bool:
    """True when the GPU computes bf16 natively (Ampere or newer)."""
    return torch.cuda.get_device_capability(device)[0] >= 8


def auto_dtype(device: torch.device) -> tuple[torch.dtype, str]:
    """The fastest image-encoder dtype that meets the accuracy bar on ``device``, and why.

    The bar (tested in ``tests/sam/test_fast_path.py``, measured in ``bench/``): best-mask IoU
    >= 0.98 and low-res logits within 5 % relative error of fp32. The mask decoder always runs
    in fp32.
    """
    if device.type == "cuda":
        if cuda_has_bf16(device):
            return torch.bfloat16, "the GPU computes bf16 natively"
        return torch.float16, "the GPU has no native bf16; fp16 is its fast path"
    if cpu_has_native_bf16():
        native = sorted({"avx512_bf16", "amx_bf16"} & cpu_flags())
        return torch.bfloat16, f"the CPU computes bf16 natively ({', '.join(native)})"
    return torch.float32, (
        "the CPU has no native bf16 (no avx512_bf16/amx_bf16): bf16 would be emulated and "
        "far slower than fp32"
    )


def resolve_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    """The image encoder's dtype.

    ``None``/``"auto"`` picks with :func:`auto_dtype` (or takes ``$SAM_PRECISION`` when set) and
    logs the choice; names (``fp32``, ``bf16``, ``fp16``, ...) and torch dtypes are checked.
    """
    if dtype is None or dtype == "auto":
        override = os.environ.get(PRECISION_ENV, "auto").strip().lower()
        if override not in ("", "auto"):
            if override not in _DTYPES:
                raise DeviceError(
                    f"{PRECISION_ENV}={override!r} is not a precision; use auto, fp32, bf16 or "
                    "fp16."
                )
            logger.info("precision=auto: %s=%s", PRECISION_ENV, override)
            return resolve_dtype(override, device)
        chosen, why = auto_dtype(device)
        logger.info(
            "precision=auto chose %s for the image encoder on %s: %s",
            str(chosen).replace("torch.", ""),
            device,
            why,
        )
        return chosen
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise DeviceError(f"Unknown precision {dtype!r}; use auto, fp32, bf16 or fp16.")
        dtype = _DTYPES[dtype]
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise DeviceError(f"Unsupported dtype {dtype}; use float32, bfloat16 or float16.")
    if device.type == "cpu" and dtype == torch.bfloat16 and not cpu_has_native_bf16():
        logger.warning(
            "bf16 requested on a CPU without native bf16 (no avx512_bf16/amx_bf16): it is "
            "emulated, expect the encoder to be many times slower than fp32"
        )
    if device.type == "cpu" and dtype == torch.float16 and "avx512_fp16" not in cpu_flags():
        logger.warning("fp16 requested on a CPU without native fp16: expect it to be slow")
    return dtype
