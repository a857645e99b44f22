"""Load SAM weights from a Hugging Face repo, a local folder or a Meta ``.pth`` file.

Every source ends as a state dict with Hugging Face key names, checked tensor by tensor against
the model the config describes, then assigned into a model built on the ``meta`` device (no
second copy of the weights is made while loading).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from . import sam2_checkpoint
from .checkpoint_keys import (
    PE_KEY,
    count_indexed,
    mask_decoder_dims,
    meta_key_names,
    untie_positional_embedding,
    unwrap,
)
from .device import resolve_device, resolve_dtype
from .engine import DEFAULT_CACHE_BYTES, Sam2Engine, SamEngine
from .errors import CheckpointError
from .modeling import (
    MaskDecoderConfig,
    PreprocessConfig,
    PromptEncoderConfig,
    Sam,
    SamConfig,
    VisionConfig,
)
from .modeling.sam2 import Sam2, Sam2Config, Sam2PreprocessConfig
from .sam2_checkpoint import is_sam2_state_dict

logger = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
PREPROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
STATE_DICT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

# Well-known checkpoints offered by the app; any compatible repo id or path works too.
KNOWN_MODELS: dict[str, str] = {
    "SAM ViT-B": "facebook/sam-vit-base",
    "SAM ViT-L": "facebook/sam-vit-large",
    "SAM ViT-H": "facebook/sam-vit-huge",
    "SlimSAM-50": "Zigeng/SlimSAM-uniform-50",
    "SlimSAM-77": "Zigeng/SlimSAM-uniform-77",
    "MedSAM": "wanglab/medsam-vit-base",
    "SAM 2.1 Hiera-Tiny": "facebook/sam2.1-hiera-tiny",
    "SAM 2.1 Hiera-Small": "facebook/sam2.1-hiera-small",
    "SAM 2.1 Hiera-Base+": "facebook/sam2.1-hiera-base-plus",
    "SAM 2.1 Hiera-Large": "facebook/sam2.1-hiera-large",
}


@dataclass(frozen=True)
class CheckpointFiles:
    """Files found for one checkpoint; ``config`` is None for bare state-dict files."""

    weights: Path
    config: Path | None = None
    preprocessor: Path | None = None


# ---------------------------------------------------------------------------------------------
# Finding the files


def looks_like_repo_id(source: str) -> bool:
    """Whether ``source`` has the shape of a hub repo id (``owner/name``, no checkpoint suffix)."""
    return bool(_REPO_ID.match(source)) and not source.endswith(STATE_DICT_SUFFIXES)


def _folder_files(folder: Path) -> CheckpointFiles:
    weights = next((folder / n for n in WEIGHT_FILES if (folder / n).is_file()), None)
    if weights is None:
        # Never list what the folder holds: the app shows this message to remote users.
        raise CheckpointError(
            f"The folder {folder} has no model.safetensors or pytorch_model.bin. Point --model "
            "at a Hugging Face model folder, a Meta .pth file, or a hub repo id."
        )
    config = folder / "config.json"
    pre = next((folder / n for n in PREPROCESSOR_FILES if (folder / n).is_file()), None)
    return CheckpointFiles(weights, config if config.is_file() else None, pre)


def _hub_files(repo_id: str, revision: str | None) -> CheckpointFiles:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    # Offline, huggingface_hub retries each request for ~23 s before falling back to its
    # cache; one quick probe lets an unreachable hub go straight to the cache instead.
    cache_only = not _hub_reachable()

    def fetch(filename: str) -> Path:
        return Path(
            hf_hub_download(repo_id, filename, revision=revision, local_files_only=cache_only)
        )

    try:
        config = fetch("config.json")
        weights = None
        not_cached: LocalEntryNotFoundError | None = None
        for name in WEIGHT_FILES:
            try:
                weights = fetch(name)
                break
            except LocalEntryNotFoundError as exc:  # offline: maybe the other format is cached
                not_cached = exc
            except EntryNotFoundError:
                continue
        if weights is None and not_cached is not None:
            raise not_cached
        if weights is None:
            raise CheckpointError(
                f"The hub repo {repo_id!r} has no model.safetensors or pytorch_model.bin; "
                "is it a SAM model?"
            )
        pre: Path | None = None
        for name in PREPROCESSOR_FILES:
            try:
                pre = fetch(name)
                break
            except (EntryNotFoundError, LocalEntryNotFoundError):
                continue
    except GatedRepoError as exc:
        raise CheckpointError(
            f"The hub repo {repo_id!r} is gated: accept its terms on the hub and log in with "
            "`hf auth login` (or set HF_TOKEN)."
        ) from exc
    except RepositoryNotFoundError as exc:
        raise CheckpointError(
            f"The hub repo {repo_id!r} does not exist (or is private). Check the spelling, e.g. "
            "'facebook/sam-vit-base', or log in for a private repo."
        ) from exc
    except RevisionNotFoundError as exc:
        raise CheckpointError(f"The hub repo {repo_id!r} has no revision {revision!r}.") from exc
    except LocalEntryNotFoundError as exc:
        raise CheckpointError(
            f"The model {repo_id!r} is not in the local Hugging Face cache and the hub cannot be "
            "reached (offline, or HF_HUB_OFFLINE=1). Connect once to download it, or pass a "
            "local folder or .pth file with --model."
        ) from exc
    except HFValidationError as exc:
        raise CheckpointError(
            f"{repo_id!r} is neither an existing file or folder nor a valid hub repo id."
        ) from exc
    except OSError as exc:  # network failures surface as OSError subclasses
        raise CheckpointError(
            f"Downloading {repo_id!r} from the Hugging Face hub failed: {exc}. Check the network "
            "or pass a local folder or .pth file."
        ) from exc
    return CheckpointFiles(weights, config, pre)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub endpoint opens (always False in offline mode)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlsplit(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        logger.info(
            "The Hugging Face hub (%s) cannot be reached; using the local cache", constants.ENDPOINT
        )
        return False


def find_checkpoint(
    source: str | os.PathLike, revision: str | None = None, hub_only: bool = False
) -> CheckpointFiles:
    """Locate the weight/config files for a path or a hub repo id (only the latter if
    ``hub_only``)."""
    text = os.fspath(source)
    if hub_only:
        if not looks_like_repo_id(text):
            raise CheckpointError(
                f"{text!r} is not a Hugging Face repo id such as 'facebook/sam-vit-base'."
            )
        return _hub_files(text, revision)
    path = Path(text).expanduser()
    if path.is_dir():
        return _folder_files(path)
    if path.is_file():
        return CheckpointFiles(path)
    if looks_like_repo_id(text):
        return _hub_files(text, revision)
    raise CheckpointError(
        f"No such file or folder: {text!r}. Pass a Hugging Face repo id such as "
        "'facebook/sam-vit-base', a model folder (config.json + model.safetensors) or a Meta "
        ".pth file."
    )


# ---------------------------------------------------------------------------------------------
# Reading state dicts


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read tensors from a safetensors or torch pickle file, on the CPU."""
    if path.stat().st_size == 0:
        raise CheckpointError(f"The checkpoint {path} is empty (0 bytes); download it again.")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if path.suffix == ".safetensors" or not (head.startswith(b"PK") or head[:1] == b"\x80"):
        try:
            return load_file(path, device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            if path.suffix == ".safetensors":
                raise CheckpointError(
                    f"{path} is not a valid safetensors file ({exc}); it may be truncated. "
                    "Download it again."
                ) from exc
            raise CheckpointError(
                f"{path} is not a checkpoint format this app reads (safetensors, or a PyTorch "
                "state dict saved with torch.save)."
            ) from exc
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"Could not read {path} as a PyTorch state dict ({str(exc).splitlines()[0]}). "
            "The file may be truncated, or hold a whole pickled model instead of a state "
            "dict; re-save it with torch.save(model.state_dict(), path)."
        ) from exc
    for wrapper in ("model", "state_dict"):
        if isinstance(data, dict) and isinstance(data.get(wrapper), dict):
            data = data[wrapper]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors.")
    return data


_META_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), r)
    for p, r in [
        (r"^image_encoder\.patch_embed\.proj\.", "vision_encoder.patch_embed.projection."),
        (r"^image_encoder\.blocks\.(\d+)\.norm(\d)\.", r"vision_encoder.layers.\1.layer_norm\2."),
        (r"^image_encoder\.blocks\.", "vision_encoder.layers."),
        (r"^image_encoder\.neck\.0\.", "vision_encoder.neck.conv1."),
        (r"^image_encoder\.neck\.1\.", "vision_encoder.neck.layer_norm1."),
        (r"^image_encoder\.neck\.2\.", "vision_encoder.neck.conv2."),
        (r"^image_encoder\.neck\.3\.", "vision_encoder.neck.layer_norm2."),
        (r"^image_encoder\.", "vision_encoder."),
        (r"^prompt_encoder\.pe_layer\.positional_encoding_gaussian_matrix$", PE_KEY),
        (r"^prompt_encoder\.point_embeddings\.", "prompt_encoder.point_embed."),
        (r"^prompt_encoder\.mask_downscaling\.0\.", "prompt_encoder.mask_embed.conv1."),
        (r"^prompt_encoder\.mask_downscaling\.1\.", "prompt_encoder.mask_embed.layer_norm1."),
        (r"^prompt_encoder\.mask_downscaling\.3\.", "prompt_encoder.mask_embed.conv2."),
        (r"^prompt_encoder\.mask_downscaling\.4\.", "prompt_encoder.mask_embed.layer_norm2."),
        (r"^prompt_encoder\.mask_downscaling\.6\.", "prompt_encoder.mask_embed.conv3."),
        (r"\.norm_final_attn\.", ".layer_norm_final_attn."),
        (r"^(mask_decoder\.transformer\.layers\.\d+)\.norm(\d)\.", r"\1.layer_norm\2."),
        (r"^mask_decoder\.output_upscaling\.0\.", "mask_decoder.upscale_conv1."),
        (r"^mask_decoder\.output_upscaling\.1\.", "mask_decoder.upscale_layer_norm."),
        (r"^mask_decoder\.output_upscaling\.3\.", "mask_decoder.upscale_conv2."),
    ]
]
_META_MLP = re.compile(
    r"^mask_decoder\.(output_hypernetworks_mlps\.\d+|iou_prediction_head)\.layers\.(\d+)\.(.+)$"
)


def meta_to_hf(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
    """Rename Meta ``segment_anything`` keys to HF keys.

    Returns the renamed state dict and preprocessing overrides read from Meta's
    ``pixel_mean``/``pixel_std`` buffers (0-255 units there, 0-1 units in ours).
    """
    extras: dict = {}
    for name in ("pixel_mean", "pixel_std"):
        if name in state_dict:
            values = tuple(float(v) / 255 for v in state_dict[name].flatten())
            extras["image_mean" if name == "pixel_mean" else "image_std"] = values

    names = meta_key_names(state_dict, _META_RULES, _META_MLP)
    out = {
        names[key]: tensor
        for key, tensor in state_dict.items()
        if key not in ("pixel_mean", "pixel_std")
    }
    return out, extras


def infer_config(sd: dict[str, torch.Tensor]) -> SamConfig:
    """Derive a :class:`SamConfig` from tensor shapes (HF key names).

    Works for ViT-B/L/H and pruned models (SlimSAM): hidden size from the position embedding,
    head size from the relative-position tables, global layers from the tables spanning the
    whole grid, MLP widths from the linear layers. The decoder's head count is invisible in
    shapes; every released SAM uses 8, the config default.
    """
    try:
        pos = sd["vision_encoder.pos_embed"]
        patch = sd["vision_encoder.patch_embed.projection.weight"]
        hidden, grid, patch_size = pos.shape[-1], pos.shape[1], patch.shape[-1]
        depth = count_indexed(sd, r"^vision_encoder\.layers\.(\d+)\.")
        global_idx, window, head_dim = [], 14, None
        for i in range(depth):
            rel = sd.get(f"vision_encoder.layers.{i}.attn.rel_pos_h")
            if rel is None:
                continue
            head_dim = rel.shape[1]
            if rel.shape[0] == 2 * grid - 1:
                global_idx.append(i)
            else:
                window = (rel.shape[0] + 1) // 2
        default_heads = {768: 12, 1024: 16, 1280: 16}.get(hidden, 12)
        heads = hidden // head_dim if head_dim else default_heads
        vision = VisionConfig(
            hidden_size=hidden,
            output_channels=sd["vision_encoder.neck.conv1.weight"].shape[0],
            num_hidden_layers=depth,
            num_attention_heads=heads,
            image_size=grid * patch_size,
            patch_size=patch_size,
            qkv_bias="vision_encoder.layers.0.attn.qkv.bias" in sd,
            use_rel_pos=head_dim is not None,
            window_size=window,
            global_attn_indexes=tuple(global_idx),
            num_pos_feats=sd[PE_KEY].shape[1],
            mlp_dim=sd["vision_encoder.layers.0.mlp.lin1.weight"].shape[0],
        )
        prompt_dim = sd["prompt_encoder.no_mask_embed.weight"].shape[1]
        prompt = PromptEncoderConfig(
            hidden_size=prompt_dim,
            image_size=grid * patch_size,
            patch_size=patch_size,
            mask_input_channels=sd["prompt_encoder.mask_embed.conv2.weight"].shape[0],
            num_point_embeddings=count_indexed(sd, r"^prompt_encoder\.point_embed\.(\d+)\."),
        )
        decoder = MaskDecoderConfig(**mask_decoder_dims(sd, "lin1"))
    except KeyError as exc:
        raise CheckpointError(
            f"The checkpoint lacks tensor {exc.args[0]!r}, so it is not a SAM model this app "
            "can read (SAM 2, HQ-SAM and MobileSAM use other architectures)."
        ) from exc
    return SamConfig(vision, prompt, decoder)


def _normalise_keys(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
    sd = unwrap(sd)
    extras: dict = {}
    if any(k.startswith("image_encoder.") for k in sd):
        sd, extras = meta_to_hf(sd)
    untie_positional_embedding(sd)
    if not any(k.startswith("vision_encoder.") for k in sd):
        sample = ", ".join(list(sd)[:3]) or "no tensors"
        raise CheckpointError(
            f"The checkpoint's tensor names ({sample}, ...) are neither Hugging Face SAM nor "
            "Meta segment-anything names; it is not a SAM checkpoint."
        )
    return sd, extras


def _check_against(model: Sam | Sam2, sd: dict[str, torch.Tensor], origin: str) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensor(s): {', '.join(missing[:5])}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s): {', '.join(unexpected[:5])}")
    for key in sorted(set(expected) & set(sd)):
        if tuple(sd[key].shape) != expected[key]:
            problems.append(
                f"tensor {key} has shape {tuple(sd[key].shape)} but the config expects "
                f"{expected[key]}"
            )
            break
    if problems:
        raise CheckpointError(
            f"{origin} does not match its model config: "
            + "; ".join(problems)
            + ". The config.json may belong to another model, or the file is not a SAM "
            "checkpoint."
        )


def build_model(
    config: SamConfig,
    state_dict: dict[str, torch.Tensor],
    preprocess: PreprocessConfig | None = None,
    origin: str = "checkpoint",
) -> Sam:
    """Assign a checked HF-named state dict into a model built without allocating weights."""
    with torch.device("meta"):
        model = Sam(config, preprocess)
    _check_against(model, state_dict, origin)
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model.eval()


def load_model(
    source: str | os.PathLike,
    device: str | torch.device = "auto",
    dtype: torch.dtype | str | None = None,
    *,
    revision: str | None = None,
    cache_bytes: int | None = None,
    hub_only: bool = False,
) -> SamEngine:
    """Load a SAM or SAM 2 model ready for :class:`sam.SamPredictor`: the network
    (:class:`sam.modeling.Sam` or :class:`sam.modeling.sam2.Sam2`, as ``.model``) in the
    runtime its predictors share (a :class:`SamEngine`, :class:`Sam2Engine` for SAM 2).

    Args:
        source: a Hugging Face repo id (``facebook/sam-vit-base``, ``Zigeng/SlimSAM-uniform-77``,
            ``wanglab/medsam-vit-base``, ``facebook/sam2.1-hiera-tiny``, ...), a local folder
            with ``config.json`` and ``model.safetensors``/``pytorch_model.bin``, or a Meta
            ``.pth`` / ``.pt`` state dict (SAM's or SAM 2's, recognised from its tensors).
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
        dtype: weights/activations dtype of the image encoder; ``None`` picks automatically.
        revision: hub branch, tag or commit.
        cache_bytes: byte budget of the embedding cache shared by this model's predictors.
        hub_only: take ``source`` only as a hub repo id, never as a local path, even when a
            file or folder of that name exists (the app does so for names typed in its page).

    Raises:
        CheckpointError: with a message saying what to do.
    """
    files = find_checkpoint(source, revision, hub_only)
    target = resolve_device(device)
    raw = read_state_dict(files.weights)
    config_dict = None
    if files.config is not None:
        try:
            config_dict = _read_json(files.config)
        except ValueError as exc:
            raise CheckpointError(f"{files.config} is not valid JSON: {exc}") from exc
    encoder_dtype = resolve_dtype(dtype, target)
    cache = DEFAULT_CACHE_BYTES if cache_bytes is None else cache_bytes
    model_type = str((config_dict or {}).get("model_type", "sam"))
    if model_type.startswith("sam2") or (config_dict is None and is_sam2_state_dict(raw)):
        engine: SamEngine = _load_sam2(files, raw, config_dict, encoder_dtype, source, cache)
        del raw
    else:
        sd, extras = _normalise_keys(raw)
        del raw  # ``sd`` holds the same tensors; no second reference may keep converted ones alive
        engine = SamEngine(
            _build_sam(files, sd, extras, config_dict, encoder_dtype), os.fspath(source), cache
        )
    engine.model.to(device=target)
    params = sum(p.numel() for p in engine.model.parameters()) / 1e6
    logger.info(
        "Loaded %s from %s: %.1fM parameters, on %s (%s encoder)",
        engine.family,
        engine.source,
        params,
        target,
        str(encoder_dtype).replace("torch.", ""),
    )
    return engine


def _build_sam(
    files: CheckpointFiles,
    sd: dict[str, torch.Tensor],
    extras: dict,
    config_dict: dict | None,
    encoder_dtype: torch.dtype,
) -> Sam:
    """The SAM (ViT) network from an HF-named state dict; ``sd`` is consumed."""
    if config_dict is not None:
        model_type = config_dict.get("model_type", "sam")
        if model_type != "sam":
            raise CheckpointError(
                f"{files.config} describes a {model_type!r} model, not SAM ('sam') or SAM 2 "
                "('sam2'); this app runs those two architectures."
            )
        config = SamConfig.from_dict(config_dict)
    else:
        config = infer_config(sd)
    preprocess = (
        PreprocessConfig.from_json_file(files.preprocessor)
        if files.preprocessor is not None
        else PreprocessConfig()
    )
    if extras:
        preprocess = PreprocessConfig(
            longest_edge=preprocess.longest_edge,
            pad_size=preprocess.pad_size,
            image_mean=extras.get("image_mean", preprocess.image_mean),
            image_std=extras.get("image_std", preprocess.image_std),
        )
    _convert_in_place(sd, encoder_dtype)
    model = build_model(config, sd, preprocess, origin=str(files.weights))
    sd.clear()
    return model


def _load_sam2(
    files: CheckpointFiles,
    raw: dict[str, torch.Tensor],
    config_dict: dict | None,
    encoder_dtype: torch.dtype,
    source: str | os.PathLike,
    cache_bytes: int,
) -> Sam2Engine:
    """The SAM 2 / 2.1 network from a Meta or HF state dict, in its engine; ``raw`` is consumed."""
    meta_keys = set(raw)
    if not is_sam2_state_dict(raw):
        model_type = (config_dict or {}).get("model_type")
        raise CheckpointError(
            f"{files.config} describes a {model_type!r} model, but {files.weights} holds no SAM 2 "
            "(Hiera) tensors. The config.json may belong to another model."
        )
    sd = sam2_checkpoint.normalise_keys(raw)
    raw.clear()
    config = (
        Sam2Config.from_dict(config_dict)
        if config_dict is not None
        else sam2_checkpoint.infer_config(sd)
    )
    preprocess = (
        Sam2PreprocessConfig.from_json_file(files.preprocessor)
        if files.preprocessor is not None
        else Sam2PreprocessConfig()
    )
    _convert_in_place(sd, encoder_dtype)
    for key, tensor in sd.items():
        # A tensor memory-mapped from safetensors may start at any offset, and CPU kernels
        # pick their code path by alignment: the same weights from a .pt would then give
        # last-bit differences. A fresh copy is aligned like every allocation.
        if tensor.data_ptr() % 64:
            sd[key] = tensor.clone()
    with torch.device("meta"):
        model = Sam2(config, preprocess)
    _check_against(model, sd, str(files.weights))
    model.load_state_dict(sd, strict=True, assign=True)
    sd.clear()
    name = os.fspath(source)
    family = sam2_checkpoint.family_name(name, config.vision_config.backbone_config, meta_keys)
    return Sam2Engine(model.eval(), name, cache_bytes, family=family)


def _convert_in_place(sd: dict[str, torch.Tensor], encoder_dtype: torch.dtype) -> None:
    """Image-encoder tensors to ``encoder_dtype``, everything else to fp32, one tensor at a time
    so that the checkpoint's copy of each is freed as soon as it is converted (no full fp32
    copy of the weights lingers beside the converted ones).

    safetensors files are memory-mapped and their tensors are views of the mapping: once any
    tensor is converted, the others are copied too, so that no tensor keeps the whole file's
    mapping (and its pages, counted in the process's memory) alive.
    """
    converted = False
    for key, tensor in sd.items():
        if not tensor.is_floating_point():
            continue
        target = encoder_dtype if key.startswith("vision_encoder.") else torch.float32
        if tensor.dtype != target:
            sd[key] = tensor.to(target)
            converted = True
    if converted:
        for key, tensor in sd.items():
            if not (key.startswith("vision_encoder.") and tensor.dtype == encoder_dtype):
                sd[key] = tensor.clone()


def _read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict):
        raise ValueError("top level is not an object")
    return data
