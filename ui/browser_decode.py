"""The files the page's decoder worker (``static/decoder_worker.js``) loads to answer clicks in
the browser: the decoder once per model (``sam.onnx_export``, cut to the low-res masks), and
each image's embedding (float16 bytes). They are written into the folder Gradio serves the
photos from.

SAM 2 models ship three maps per image (the embedding and the two high-resolution feature
maps, ``sam.onnx_export.embedding_bytes``), four times a SAM embedding's bytes.

Exporting a model's decoder takes seconds, so it runs on a thread of its own; until it is done
(or when it cannot be done: no ``onnx`` package) the page sends every click to the server, as
without a browser decoder. The server stays the source of truth either way.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from sam import SamPredictor
from sam.errors import SamError
from sam.onnx_export import embedding_bytes, embedding_dims, export_decoder

from .render.media import file_url

logger = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent.parent / "static"
#: The page's decoder worker and the ONNX Runtime Web files it loads (served by the app).
WORKER = STATIC / "decoder_worker.js"
VENDOR = STATIC / "vendor" / "onnxruntime-web"
#: Bytes of embedding files kept in the served folder (a ViT-B embedding is 2 MiB, SAM 2's maps
#: 8 MiB): the oldest are deleted beyond it.
EMBEDDING_BUDGET_BYTES = 128 * 2**20
_READY_ENTRIES = 1024


@dataclass(frozen=True)
class DecoderFiles:
    """URLs of a model's decoder and one image's embedding; ``size`` is the embedding's
    ``(C, h, w)`` (SAM 2: of each of its three maps, in the file's order, flattened);
    ``embedding_path`` where the embedding lies."""

    decoder_url: str
    embedding_url: str
    size: tuple[int, ...]
    embedding_path: Path


class BrowserDecodeFiles:
    """Writes and remembers the decoder and embedding files under ``folder``."""

    def __init__(self, folder: Path, budget_bytes: int = EMBEDDING_BUDGET_BYTES) -> None:
        self.folder = folder / "decoder"
        self.budget_bytes = budget_bytes
        self._lock = threading.Lock()
        self._exports: dict[str, threading.Thread] = {}
        self._failed: dict[str, str] = {}
        self._tags: dict[str | None, str] = {}  # model source as sessions name it -> file tag
        # (image key, model source as the session names it) -> files, newest last.
        self._ready: OrderedDict[tuple[str, str | None], DecoderFiles] = OrderedDict()

    def files(self, image_key: str, source: str | None) -> DecoderFiles | None:
        """The files of an image prepared earlier by :meth:`prepare`, if still there."""
        with self._lock:
            found = self._ready.get((image_key, source))
        return found if found is not None and found.embedding_path.exists() else None

    def state(self, source: str | None) -> str | None:
        """``"exporting"``, ``"ready"`` or ``"off"`` (no decoder for this model: clicks use the
        server) for a model asked for by :meth:`prepare`; None before."""
        with self._lock:
            tag = self._tags.get(source)
            if tag is None:
                return None
            if tag in self._failed:
                return "off"
            return "exporting" if tag in self._exports else "ready"

    def prepare(
        self, predictor: SamPredictor, image_key: str, source: str | None
    ) -> DecoderFiles | None:
        """Write the current image's embedding and, once exported, return both files' URLs;
        None while the model's decoder is still being exported (or cannot be).

        ``predictor`` must hold the image (``set_image`` done).
        """
        tag = _model_tag(predictor)
        with self._lock:
            self._tags[source] = tag
        decoder = self.folder / f"decoder-lowres-{tag}.onnx"
        if not decoder.exists():
            self._start_export(predictor, tag, decoder)
            return None
        features = predictor.get_image_embedding()
        embedding = self.folder / f"{image_key}-{tag}.f16"
        if not embedding.exists():
            tmp = embedding.with_suffix(".tmp")
            tmp.write_bytes(embedding_bytes(features))
            tmp.replace(embedding)  # a reader never sees half a file
            self._prune(keep=embedding)
        files = DecoderFiles(
            file_url(decoder), file_url(embedding), embedding_dims(features), embedding
        )
        with self._lock:
            self._ready[(image_key, source)] = files
            self._ready.move_to_end((image_key, source))
            while len(self._ready) > _READY_ENTRIES:
                self._ready.popitem(last=False)
        return files

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the exports in flight (tests, shutdown)."""
        with self._lock:
            threads = list(self._exports.values())
        for thread in threads:
            thread.join(timeout)

    def _start_export(self, predictor: SamPredictor, tag: str, path: Path) -> None:
        with self._lock:
            if tag in self._exports or tag in self._failed:
                return
            thread = threading.Thread(
                target=self._export, args=(predictor, tag, path), name="onnx-export", daemon=True
            )
            self._exports[tag] = thread
        thread.start()

    def _export(self, predictor: SamPredictor, tag: str, path: Path) -> None:
        try:
            export_decoder(predictor.model, path, low_res_only=True)
        except SamError as exc:
            logger.warning("Clicks are decoded on the server only: %s", exc)
            with self._lock:
                self._failed[tag] = str(exc)
        except Exception:
            logger.exception("Exporting the ONNX decoder failed; clicks use the server")
            with self._lock:
                self._failed[tag] = "the export failed"
        with self._lock:
            self._exports.pop(tag, None)

    def _prune(self, keep: Path) -> None:
        """Delete the oldest embedding files beyond the byte budget."""
        sizes = []
        for path in self.folder.glob("*.f16"):
            try:
                info = path.stat()
            except FileNotFoundError:  # pruned by another session meanwhile
                continue
            sizes.append((info.st_mtime, info.st_size, path))
        total = 0
        for _, size, path in sorted(sizes, reverse=True):
            total += size
            if total > self.budget_bytes and path != keep:
                path.unlink(missing_ok=True)


_registries: dict[Path, BrowserDecodeFiles] = {}
_registries_lock = threading.Lock()


def for_folder(folder: Path) -> BrowserDecodeFiles:
    """The one registry of the served ``folder`` (the handlers write, the stage reads)."""
    with _registries_lock:
        return _registries.setdefault(folder, BrowserDecodeFiles(folder))


def _model_tag(predictor: SamPredictor) -> str:
    """Names a model's files: its source and encoder precision (the embedding depends on it)."""
    engine = predictor.engine
    return hashlib.sha256(f"{engine.source}|{engine.dtype}".encode()).hexdigest()[:16]
