"""Writing a model as a Hugging Face folder (``config.json``, ``model.safetensors``,
``preprocessor_config.json``): what :func:`sam.load_model` and
``transformers.SamModel.from_pretrained`` (SAM 2: ``Sam2Model``) both load."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from safetensors.torch import save_file

from ..modeling import Sam
from ..modeling.sam2 import Sam2
from .lora import merged_state_dict

# transformers keeps a tied copy of the Fourier matrix under this name.
_TIED_PE_KEY = "prompt_encoder.shared_embedding.positional_embedding"


def _preprocessor_dict(model: Sam | Sam2) -> dict:
    pre = model.preprocess
    if isinstance(model, Sam2):  # a square resize, no padding
        return {
            "image_processor_type": "Sam2ImageProcessorFast",
            "size": {"height": pre.image_size, "width": pre.image_size},
            "image_mean": list(pre.image_mean),
            "image_std": list(pre.image_std),
            "mask_size": {"height": pre.mask_size, "width": pre.mask_size},
        }
    return {
        "image_processor_type": "SamImageProcessor",
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_pad": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": list(pre.image_mean),
        "image_std": list(pre.image_std),
        "mask_pad_size": {"height": pre.mask_size, "width": pre.mask_size},
        "mask_size": {"longest_edge": pre.mask_size},
        "pad_size": {"height": pre.pad_size, "width": pre.pad_size},
        "resample": 2,
        "rescale_factor": 1 / 255,
        "size": {"longest_edge": pre.longest_edge},
    }


def _write_atomically(path: Path, write) -> None:
    """Write through a temp file in the same folder and rename it over ``path``, so an
    interrupted save never leaves a truncated file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_model(model: Sam | Sam2, folder: str | Path) -> Path:
    """Write ``model`` (weights at fp32) to ``folder`` as a Hugging Face SAM (or SAM 2)
    checkpoint."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # Low-rank adapters (--train encoder-lora) are merged into their weights.
    tensors = {
        k: v.detach().float().cpu().contiguous() for k, v in merged_state_dict(model).items()
    }
    tensors[_TIED_PE_KEY] = tensors["shared_image_embedding.positional_embedding"].clone()

    def dump(data: dict):
        return lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2), encoding="utf-8")

    _write_atomically(folder / "model.safetensors", lambda tmp: save_file(tensors, tmp))
    _write_atomically(folder / "config.json", dump(model.config.to_dict()))
    _write_atomically(folder / "preprocessor_config.json", dump(_preprocessor_dict(model)))
    return folder
