"""SAM Annotator: interactive Segment Anything annotation in the browser.

    python app.py [--model SOURCE] [--models-dir DIR] [--device auto|cpu|cuda] [--host 127.0.0.1]
                  [--port 7860] [--precision auto|fp32|bf16|fp16] [--max-cache-mb N]
                  [--images DIR [--db PATH] [--labels labels.txt]]

With ``--images`` a folder of images is a project: a gallery with per-image status, every
change saved at once to SQLite, embeddings kept on disk, the next image encoded in advance.

The app starts even when the model cannot be loaded (offline, wrong path): the page then says
why and how to fix it, and offers other models.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import gradio as gr
from starlette.middleware import Middleware

from sam.device import PRECISION_CHOICES
from sam.errors import StoreError
from sam.text_prompt import DEFAULT_DETECTOR
from ui.isolation import CrossOriginIsolation
from ui.layout import build_demo, launch_options
from ui.models import ModelManager, default_model
from ui.project import Project

logger = logging.getLogger("sam_annotator")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python app.py",
        description="Interactive Segment Anything annotation app (Gradio).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model",
        default=None,
        help="SAM checkpoint (default: facebook/sam2.1-hiera-tiny on a CPU, facebook/sam-vit-base "
        "on a GPU): a Hugging Face repo id (facebook/sam-vit-base, facebook/sam2.1-hiera-tiny, "
        "facebook/sam-vit-large, facebook/sam-vit-huge, Zigeng/SlimSAM-uniform-50, "
        "Zigeng/SlimSAM-uniform-77, wanglab/medsam-vit-base), a local folder with config.json + "
        "model.safetensors, or a Meta .pth file. Hub models are downloaded on first use.",
    )
    parser.add_argument(
        "--models-dir",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="A folder whose checkpoints the page's Model box may load by path (repeatable). "
        "Without it the page loads only hub repo ids and --model, never other server paths.",
    )
    parser.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="Where the model runs: auto picks CUDA when a GPU is visible, else CPU.",
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=PRECISION_CHOICES,
        help="Image-encoder precision: auto picks bf16 on CPUs with native bf16 (avx512_bf16/"
        "AMX) and on GPUs, else fp32; the mask decoder always runs in fp32.",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="Address to listen on; 0.0.0.0 makes the app reachable from other machines.",
    )
    parser.add_argument("--port", type=int, default=7860, help="Port of the web server.")
    parser.add_argument(
        "--max-cache-mb",
        type=int,
        default=None,
        metavar="N",
        help="Memory for cached image embeddings in MiB (a ViT-B embedding takes 4 MiB); "
        "default: the engine's default (256 MiB).",
    )
    parser.add_argument(
        "--images",
        type=Path,
        metavar="DIR",
        help="Annotate this folder of images as a project (a gallery with status per image, "
        "autosave, resume). Without it, the app annotates single uploads.",
    )
    parser.add_argument(
        "--db",
        type=Path,
        metavar="PATH",
        help="The project's SQLite database (default: DIR/.sam-annotator/annotations.sqlite).",
    )
    parser.add_argument(
        "--labels",
        type=Path,
        metavar="FILE",
        help="Add the labels of this text file to the project: one per line, 'name' or "
        "'name,#rrggbb'.",
    )
    parser.add_argument(
        "--text-model",
        default=DEFAULT_DETECTOR,
        metavar="SOURCE",
        help="Grounding DINO checkpoint behind 'Find objects' (needs the [text] extra): a hub "
        "repo id or a local folder, e.g. for offline use.",
    )
    parser.add_argument(
        "--auth",
        metavar="USER:PASSWORD",
        default=os.environ.get("SAM_ANNOTATOR_AUTH"),
        help="Require this login (or set SAM_ANNOTATOR_AUTH=user:password, which keeps the "
        "password out of the process list). Use it whenever --host is not 127.0.0.1.",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=int,
        default=200,
        metavar="N",
        help="Largest file a browser may upload, in MB.",
    )
    args = parser.parse_args(argv)
    if args.auth is not None and (":" not in args.auth or args.auth.startswith(":")):
        parser.error("--auth takes USER:PASSWORD")
    if args.max_upload_mb < 1:
        parser.error("--max-upload-mb must be at least 1")
    if args.max_cache_mb is not None and args.max_cache_mb < 1:
        parser.error("--max-cache-mb must be at least 1")
    for folder in args.models_dir:
        if not folder.expanduser().is_dir():
            parser.error(f"--models-dir {folder} is not a folder")
    if args.images is None and (args.db is not None or args.labels is not None):
        parser.error("--db and --labels belong to a project: give --images DIR too")
    if args.model is None:
        args.model = default_model(args.device)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("LOGLEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    project = None
    if args.images is not None:
        try:
            project = Project(args.images, args.db, args.labels)
        except StoreError as exc:
            logger.error("%s", exc)
            return 2
        atexit.register(project.close)
    cache_bytes = None if args.max_cache_mb is None else args.max_cache_mb * 2**20
    manager = ModelManager(
        args.model,
        device=args.device,
        precision=args.precision,
        cache_bytes=cache_bytes,
        embeddings_dir=project.embeddings_dir if project else None,
        models_dirs=args.models_dir,
    )
    # Load while the server starts: a first download takes minutes, and a failure is not fatal
    # (the page explains it and offers other models).
    manager.load_in_background()
    demo = build_demo(manager, project=project, text_detector=args.text_model)
    demo.queue(default_concurrency_limit=QUEUE_CONCURRENCY)
    if args.host not in ("127.0.0.1", "localhost") and args.auth is None:
        logger.warning(
            "Serving on %s without --auth: anyone who can reach it can use it", args.host
        )
    stop_on_sigterm(demo)
    demo.launch(**server_options(args))
    return 0


def stop_on_sigterm(demo: gr.Blocks) -> None:
    """Make SIGTERM (``docker stop``, systemd, ``kill``) a clean shutdown, as Ctrl+C is.

    Python's default is to die at once, leaving the export and media folders in the temp dir
    and the project database unclosed. Here the server stops (Gradio deletes its cached uploads
    and results), then ``SystemExit`` runs the same ``atexit`` cleanup as a normal exit: the
    app's temp folders are removed and the project is closed; the exit status is 0.
    """

    def stop(signum: int, frame: FrameType | None) -> None:
        logger.info("Stopping (SIGTERM)")
        demo.close()
        raise SystemExit(0)

    if threading.current_thread() is threading.main_thread():  # signals go to the main thread
        signal.signal(signal.SIGTERM, stop)


# Events of one kind (one handler) that may run at once; image encodes are serialised by the
# engine regardless. Clicks and other quick edits share their own lane instead
# (QUICK_CONCURRENCY in ui/layout.py), where each session's run one at a time, in order, and
# different sessions' side by side (ui/lanes.py).
QUEUE_CONCURRENCY = 4


def server_options(args: argparse.Namespace) -> dict:
    """Keyword arguments for ``demo.launch()`` from the command line."""
    options = {
        "server_name": args.host,
        "server_port": args.port,
        "max_file_size": f"{args.max_upload_mb}mb",
        # Cross-origin isolated, so the page's click decoder may use threads (ui/isolation.py).
        "app_kwargs": {"middleware": [Middleware(CrossOriginIsolation)]},
        **launch_options(),
    }
    if args.auth is not None:
        user, password = args.auth.split(":", 1)
        options["auth"] = [(user, password)]
    return options


if __name__ == "__main__":
    sys.exit(main())
