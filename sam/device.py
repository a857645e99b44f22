"""Choosing where and in which precision the model runs."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch

from .errors import DeviceError

logger = logging.getLogger(__name__)

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


def resolve_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    """The image encoder's dtype. ``None``/``"auto"`` is float32 (the reference precision)."""
    if dtype is None or dtype == "auto":
        return torch.float32
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise DeviceError(f"Unknown precision {dtype!r}; use auto, fp32, bf16 or fp16.")
        dtype = _DTYPES[dtype]
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise DeviceError(f"Unsupported dtype {dtype}; use float32, bfloat16 or float16.")
    if device.type == "cpu" and dtype == torch.bfloat16 and not cpu_has_native_bf16():
        logger.warning("bf16 requested on a CPU without native bf16: expect it to be very slow")
    return dtype
