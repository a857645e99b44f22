"""Scale out on Ray: a pool of actors, one model each, working through a folder's images.

Imported only when a command gets ``--ray`` (``ray`` is the optional ``[scale]`` extra). The
driver lists the images once, drops those already done before scheduling anything, hands the
rest out in batches of ``batch_size`` (two batches in flight per actor, so none idles between
batches) and shows progress. An actor that dies (killed, out of memory, node lost) takes only
its batches in flight with it: they are reported as lost and a rerun finishes them; the other
actors carry on. Every worker must see the image folder and the embedding store under the
same paths (a shared filesystem); each checks that at start-up.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from tqdm import tqdm

from .checkpoint import load_model
from .disk_cache import EmbeddingDiskCache
from .errors import ClusterError, SamError
from .image_io import list_images
from .precompute import Outcome, Summary, check_writable, encode_file, todo
from .predictor import SamPredictor

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install '.[scale]'"
# Batches queued per actor: one running, one waiting, so an actor never idles on the driver.
_IN_FLIGHT_PER_ACTOR = 2


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run.

    ``address``: ``"local"`` (start a cluster on this machine), ``"auto"`` (the cluster this
    machine joined with ``ray start``) or a cluster address (``host:6379``, ``ray://host:10001``).
    ``num_workers``: actors; None: one per GPU when ``gpus_per_worker`` > 0, else one per CPU.
    """

    address: str = "local"
    num_workers: int | None = None
    gpus_per_worker: float = 0.0
    batch_size: int = 4

    def __post_init__(self) -> None:
        if self.num_workers is not None and self.num_workers < 1:
            raise ClusterError("--num-workers must be at least 1.")
        if self.gpus_per_worker < 0:
            raise ClusterError("--gpus-per-worker cannot be negative.")
        if self.batch_size < 1:
            raise ClusterError("--batch-size must be at least 1.")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RayOptions:
        return cls(args.ray, args.num_workers, args.gpus_per_worker, args.batch_size)


def require_ray() -> ModuleType:
    """The ``ray`` module, or a ClusterError saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ClusterError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from exc
    return ray


@contextmanager
def connected(address: str) -> Iterator[ModuleType]:
    """Ray, joined to the cluster at ``address`` for the block. A session the caller already
    opened (a notebook, a test) is used as it is and left open."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    # Workers import this package: on a cluster started here they find it on the driver's path.
    package_root = str(Path(__file__).resolve().parent.parent)
    runtime_env = {"env_vars": {"PYTHONPATH": package_root}} if address == "local" else None
    try:
        ray.init(
            address=None if address == "local" else address,
            runtime_env=runtime_env,
            include_dashboard=False if address == "local" else None,
            logging_level=logging.WARNING,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(
            f"Cannot reach the Ray cluster at {address!r}: {exc}. Start one with `ray start "
            "--head`, pass its address (host:6379 or ray://host:10001), or use --ray local."
        ) from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def worker_count(ray: ModuleType, options: RayOptions) -> int:
    """``options.num_workers``, else as many actors as the cluster has room for."""
    if options.num_workers is not None:
        return options.num_workers
    resources = ray.cluster_resources()
    if options.gpus_per_worker > 0:
        return max(1, int(resources.get("GPU", 0) / options.gpus_per_worker))
    return max(1, int(resources.get("CPU", 1)))


def start_actors(
    ray: ModuleType, worker_class: type, options: RayOptions, *init_args: Any
) -> list[Any]:
    """``worker_count`` actors of ``worker_class`` (one CPU and ``gpus_per_worker`` GPUs each),
    all started: a worker that could not start raises ClusterError with its own message."""
    remote = ray.remote(num_cpus=1, num_gpus=options.gpus_per_worker, max_restarts=0)(worker_class)
    actors = [remote.remote(*init_args) for _ in range(worker_count(ray, options))]
    try:
        problems = ray.get([actor.problem.remote() for actor in actors])
    except ray.exceptions.RayError as exc:
        raise ClusterError(f"A Ray worker could not start: {exc}") from exc
    for problem in problems:
        if problem:
            for actor in actors:
                ray.kill(actor)
            raise ClusterError(problem)
    return actors


def run_batches(
    ray: ModuleType,
    actors: list[Any],
    method: str,
    items: Sequence[str],
    batch_size: int,
    on_results: Callable[[list[Any]], None],
    desc: str,
) -> list[str]:
    """Call ``actor.<method>(batch)`` over ``items`` in batches, keeping every actor busy;
    ``on_results`` gets each batch's returned list on the driver as it arrives (the driver
    writes, so a killed driver loses only what is in flight). Returns the items lost with an
    actor that died, and those left when no actor was left."""
    batches = [list(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]
    batches.reverse()  # popped from the end: first batch first
    alive = list(actors)
    running: dict[Any, tuple[Any, list[str]]] = {}  # future -> (actor, batch)
    lost: list[str] = []

    def submit(actor: Any) -> None:
        if batches:
            batch = batches.pop()
            running[getattr(actor, method).remote(batch)] = (actor, batch)

    for actor in alive:
        for _ in range(_IN_FLIGHT_PER_ACTOR):
            submit(actor)
    with tqdm(total=len(items), desc=desc, unit="image", smoothing=0.1) as bar:
        while running:
            [ready], _ = ray.wait(list(running), num_returns=1)
            actor, batch = running.pop(ready)
            try:
                results = ray.get(ready)
            except ray.exceptions.RayActorError as exc:
                lost.extend(batch)
                if actor in alive:
                    alive.remove(actor)
                    logger.warning("A worker died (%s); %d left", type(exc).__name__, len(alive))
                bar.update(len(batch))
                continue
            on_results(results)
            bar.update(len(batch))
            submit(actor)
    for batch in batches:  # no actor was left to take them
        lost.extend(batch)
    return lost


class EncoderWorker:
    """A Ray actor: one model, loaded once, encoding images into the shared embedding store.

    Start-up problems (model not loadable, store or folder not visible on this node) are kept
    and returned by :meth:`problem`, so the driver shows them as one clear message.
    """

    def __init__(
        self, model: str, device: str, precision: str, root: str, folder: str, probe: str
    ) -> None:
        self.folder = Path(folder)
        self.predictor: SamPredictor | None = None
        self._problem = _reachable(Path(root), probe, self.folder)
        if self._problem:
            return
        try:
            engine = load_model(model, device=device, dtype=precision)
        except SamError as exc:
            self._problem = f"A worker on {socket.gethostname()} cannot load the model: {exc}"
            return
        self.predictor = SamPredictor(engine, EmbeddingDiskCache(root, engine))

    def problem(self) -> str:
        return self._problem

    def pid(self) -> int:
        return os.getpid()

    def cache_folder(self) -> str:
        """The model's embedding folder (the model fingerprint's), as the local path names it."""
        assert self.predictor is not None and self.predictor.disk_cache is not None
        return str(self.predictor.disk_cache.folder)

    def encode(self, batch: list[str]) -> list[Outcome]:
        assert self.predictor is not None  # the driver only calls workers without a problem
        return [encode_file(self.predictor, self.folder, rel) for rel in batch]


def _reachable(root: Path, probe: str, folder: Path) -> str:
    """Why this worker cannot use the store or the images ("" when it can)."""
    host = socket.gethostname()
    if not (root / probe).is_file():
        return (
            f"The embedding store {root} is not reachable from the worker on {host}: every "
            "worker must see it under the same path (a shared filesystem such as NFS, or a "
            "volume mounted into every pod); pass that path as --cache-dir."
        )
    if not folder.is_dir():
        return f"The image folder {folder} is not visible on the worker on {host}."
    return ""


def precompute_on_ray(
    model: str,
    folder: Path,
    root: Path,
    options: RayOptions,
    device: str = "auto",
    precision: str = "auto",
) -> tuple[Summary, Path]:
    """Encode every image of ``folder`` not yet stored under ``root`` on a pool of Ray actors,
    into the same files the local path writes. Returns the summary and the model's folder."""
    folder, root = folder.resolve(), root.resolve()
    probe = check_writable(root)
    try:
        with connected(options.address) as ray:
            images = list_images(folder)
            args = (model, device, precision, str(root), str(folder), probe)
            actors = start_actors(ray, EncoderWorker, options, *args)
            try:
                folders = set(ray.get([actor.cache_folder.remote() for actor in actors]))
                if len(folders) > 1:
                    raise ClusterError(
                        "The workers compute different embeddings (another precision or device "
                        "kind per node): pass --precision fp32, bf16 or fp16 explicitly."
                    )
                cache_folder = Path(folders.pop())
                pending = todo(cache_folder, folder, images)
                summary = Summary(skipped=len(images) - len(pending))

                def record(outcomes: list[Outcome]) -> None:
                    for outcome in outcomes:
                        summary.add(outcome)

                summary.lost = run_batches(
                    ray, actors, "encode", pending, options.batch_size, record,
                    f"encoding on {len(actors)} worker(s)",
                )  # fmt: skip
            finally:
                for actor in actors:
                    ray.kill(actor)
    finally:
        (root / probe).unlink(missing_ok=True)
    return summary, cache_folder
