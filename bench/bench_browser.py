"""Click latency of the real app in headless Chromium: mouse-down to new mask painted.

    python bench/bench_browser.py [--clicks 30] [--json out.json] [--image PATH]
                                  [--model-dims vit-b|tiny|sam2-hiera-tiny]

Builds a random-weight checkpoint (ViT-B dimensions by default, the Hugging Face format, no
download), starts ``python app.py`` on it, opens the photo in headless Chromium (the system's
``/usr/bin/chromium`` or ``SAM_CHROMIUM``) and then, like an annotator:

- clicks ``--clicks`` times at varied spots (positive, some negative; every few clicks Esc starts
  a new object, so both first clicks with three candidates and refining clicks are measured),
  plus a few box drags;
- switches candidate (clicks the second candidate card) after first clicks;
- accepts (Enter) at the end of each object.

A script added to the page marks the time of every mouse-down on the stage and of every paint
of a mask: a new overlay image from the server (``.sam-overlay``, once decoded, at the next
animation frame) or a mask the page drew itself (the ``sam-painted`` event of
``static/stage.js``). Reported per action kind: p50/p95 of mouse-down -> first new mask
painted, and mouse-down -> the server's mask painted. Each action waits for the server to
catch up before the next one, as a user looks before clicking again.

Then the decoder alone, one thread against several: two extra workers of the page
(``static/decoder_worker.js``, one capped at 1 thread, one with the page's default: up to 4
when the page is cross-origin isolated) decode the same prompts in turn on the same embedding;
reported per worker: p50/p95 of its ``session.run`` (``--decoder-rounds`` prompts each, after
one warm-up).

The machine is shared: the 1-minute load average is recorded before and after. The results are
printed as a table and written as JSON (``--json``, default ``bench/results/browser.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = REPO / "static" / "examples" / "truck.jpg"
TIMEOUT_MS = 60_000

# Marks in the page: performance.now() of each stage mouse-down and each mask paint.
PAGE_MARKS = """
(() => {
  const marks = { downs: [], paints: [], serverPaints: [] };
  window.__benchMarks = marks;
  const paintedAt = (list) => requestAnimationFrame(() => list.push(performance.now()));
  document.addEventListener('pointerdown', (e) => {
    if (e.target.closest && (e.target.closest('.sam-canvas') || e.target.closest('.sam-cand')))
      marks.downs.push(performance.now());
  }, true);
  window.addEventListener('sam-painted', () => paintedAt(marks.paints));
  // Every server render has a new data-rev: its overlay counts once decoded (or at once
  // when the overlay did not change, e.g. the same mask chosen again).
  let rev = null;
  let src = null;
  new MutationObserver(() => {
    const stage = document.querySelector('#sam-stage .sam-stage');
    if (!stage || stage.dataset.rev === rev) return;
    rev = stage.dataset.rev;
    const img = stage.querySelector('.sam-overlay');
    const now = img ? img.src : null;
    const changed = now !== src;
    src = now;
    const mark = () => {
      if (changed) paintedAt(marks.paints);
      paintedAt(marks.serverPaints);
    };
    if (img && changed) img.decode().then(mark, mark);
    else mark();
  }).observe(document, { subtree: true, childList: true, attributes: true,
                         attributeFilter: ['src', 'data-rev'] });
})();
"""


# Two fresh workers of the page, one capped at 1 thread, one with the default; each decodes
# the same prompts in turn (after one warm-up) on the current image's embedding.
DECODER_THREADS = """
async (rounds) => {
  const s = document.querySelector('#sam-stage .sam-stage');
  const dims = s.dataset.dims.split(',').map(Number);
  const size = [+s.dataset.h, +s.dataset.w];
  const display = [+s.dataset.dh, +s.dataset.dw];
  const start = async (threads) => {
    const w = new Worker(s.dataset.worker);
    const inbox = [];
    let waiting = null;
    w.onmessage = (e) => {
      if (waiting) { waiting(e.data); waiting = null; } else inbox.push(e.data);
    };
    const next = () => inbox.length ? Promise.resolve(inbox.shift())
                                    : new Promise((resolve) => { waiting = resolve; });
    w.postMessage({ type: 'init', decoderUrl: s.dataset.decoder, vendorUrl: s.dataset.vendor,
                    threads });
    const ready = await next();
    if (ready.type !== 'ready') throw new Error(ready.error);
    w.postMessage({ type: 'embedding', url: s.dataset.embedding, dims });
    await next();
    const decode = async (k) => {
      w.postMessage({ type: 'decode', id: k, url: s.dataset.embedding, size, display,
        points: [[Math.round(size[1] * (0.2 + 0.6 * ((k * 7) % 10) / 10)),
                  Math.round(size[0] * (0.2 + 0.6 * ((k * 3) % 10) / 10)), 1]],
        box: null, maskInput: null, multimask: true });
      let reply = await next();
      if (reply.type !== 'decoded') throw new Error(reply.error);
      const ms = reply.ms.decoder;
      while (reply.type !== 'more') reply = await next();  // the other candidates
      return ms;
    };
    return { w, threads: ready.threads, decode };
  };
  const workers = [await start(1), await start(undefined)];
  for (const wk of workers) await wk.decode(-1);  // warm-up
  const ms = workers.map(() => []);
  for (let k = 0; k < rounds; k++)
    for (let i = 0; i < workers.length; i++) ms[i].push(await workers[i].decode(k));
  workers.forEach((wk) => wk.w.terminate());
  return { threads: workers.map((wk) => wk.threads), ms };
}
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def load_average() -> float:
    return os.getloadavg()[0]


MODEL_DIMS = ("vit-b", "tiny", "sam2-hiera-tiny")


def build_checkpoint(dims_name: str, folder: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from checkpoints import TINY_DIMS, VIT_B_DIMS, random_hf_sam, save_hf_checkpoint
    from sam2_checkpoints import HIERA_TINY_DIMS, random_hf_sam2, save_hf_sam2

    if dims_name == "sam2-hiera-tiny":
        return save_hf_sam2(random_hf_sam2(HIERA_TINY_DIMS), folder)
    dims = {"vit-b": VIT_B_DIMS, "tiny": TINY_DIMS}[dims_name]
    return save_hf_checkpoint(random_hf_sam(dims), folder)


class Stage:
    """The page's stage: where image pixels are on the screen, and the marks."""

    def __init__(self, page: Any) -> None:
        self.page = page

    def screen_xy(self, x: float, y: float) -> tuple[float, float]:
        info = self.page.evaluate(
            """() => { const c = document.querySelector('#sam-stage .sam-canvas');
            const s = c.closest('.sam-stage'); const r = c.getBoundingClientRect();
            return {x: r.x, y: r.y, w: r.width, h: r.height, W: +s.dataset.w, H: +s.dataset.h};
            }"""
        )
        return info["x"] + x * info["w"] / info["W"], info["y"] + y * info["h"] / info["H"]

    def marks(self) -> dict[str, list[float]]:
        return self.page.evaluate("() => JSON.parse(JSON.stringify(window.__benchMarks))")

    def settled(self, points: int, box: str | None) -> None:
        """Wait until the server's stage shows ``points`` points (and ``box``)."""
        self.page.wait_for_function(
            """([n, box]) => {
              const s = document.querySelector('#sam-stage .sam-stage');
              if (!s || s.querySelector('.sam-busy')) return false;
              const pts = s.querySelectorAll('.sam-pt:not(.sam-pending)').length;
              const b = s.querySelector('.sam-box[data-box]');
              return pts === n && (box === null ? true : b && b.dataset.box === box);
            }""",
            arg=[points, box],
            timeout=TIMEOUT_MS,
        )


def timed(stage: Stage, act: Any, settle: Any) -> tuple[float, float]:
    """Run ``act`` (which presses the mouse), wait for ``settle``; return (first paint ms,
    server paint ms) after the mouse-down."""
    before = stage.marks()
    act()
    settle()
    deadline = time.monotonic() + 10
    while True:
        marks = stage.marks()
        down = (
            marks["downs"][len(before["downs"])]
            if len(marks["downs"]) > len(before["downs"])
            else None
        )
        later = [p for p in marks["paints"] if down is not None and p > down]
        server = [p for p in marks["serverPaints"] if down is not None and p > down]
        if down is not None and server:
            # No new paint at all: the mask did not change, it was "painted" with the stage.
            return min(later or server) - down, min(server) - down
        if time.monotonic() > deadline:
            raise RuntimeError(f"no paint recorded after the mouse-down: {marks}")
        time.sleep(0.05)


def click_plan(width: int, height: int, clicks: int) -> list[dict[str, Any]]:
    """Varied spots over the photo: objects of 1-5 clicks (one negative in some), and boxes."""
    plan: list[dict[str, Any]] = []
    spots = [
        (0.28, 0.55), (0.62, 0.40), (0.45, 0.70), (0.80, 0.62), (0.15, 0.30),
        (0.52, 0.22), (0.70, 0.80), (0.35, 0.42), (0.90, 0.35), (0.22, 0.78),
    ]  # fmt: skip
    i = 0
    while sum(1 for a in plan if a["kind"] == "point") < clicks:
        cx, cy = spots[i % len(spots)]
        n = 1 + i % 5
        for j in range(n):
            jitter = 0.03 * j
            x = int(width * min(0.97, cx + jitter * (1 if j % 2 else -1)))
            y = int(height * min(0.97, cy + jitter))
            plan.append({"kind": "point", "x": x, "y": y, "negative": j == 3})
        if i % 3 == 2:  # a box around the spot, combined with the points
            x0, y0 = int(width * max(0.0, cx - 0.12)), int(height * max(0.0, cy - 0.12))
            x1, y1 = int(width * min(1.0, cx + 0.12)), int(height * min(1.0, cy + 0.12))
            plan.append({"kind": "box", "box": (x0, y0, x1, y1)})
        plan.append({"kind": "accept" if i % 2 == 0 else "clear"})
        i += 1
    return plan


def run(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(REPO / "tests" / "browser"))
    from conftest import CHROMIUM_ARGS, launch_app
    from PIL import Image
    from playwright.sync_api import sync_playwright

    width, height = Image.open(args.image).size
    tmp = Path(tempfile.mkdtemp(prefix="bench-browser-"))
    checkpoint = build_checkpoint(args.model_dims, tmp / "model")
    results: dict[str, list[float]] = {
        "click": [], "click_server": [], "box": [], "box_server": [],
        "switch": [], "switch_server": [], "accept": [],
    }  # fmt: skip
    load_before = load_average()
    chromium = os.environ.get("SAM_CHROMIUM", "/usr/bin/chromium")
    with (
        launch_app(["--model", str(checkpoint), "--device", "cpu"], tmp / "app.log") as app,
        sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.add_init_script(PAGE_MARKS)
        page.goto(app.url)
        page.wait_for_selector("#sam-model-status .sam-ok", timeout=TIMEOUT_MS)
        page.set_input_files("#sam-upload input[type=file]", str(args.image))
        page.wait_for_selector("#sam-stage .sam-canvas", timeout=TIMEOUT_MS)
        # Encoding a ViT-B image takes seconds to a minute on a busy 2-core CPU.
        page.wait_for_selector("#sam-stage .sam-busy", state="detached", timeout=5 * TIMEOUT_MS)
        # With a browser decoder (static/stage.js), wait until it is loaded or known to be off.
        page.wait_for_function(
            "() => { const s = document.querySelector('#sam-stage .sam-stage');"
            " return !window.__samDecoder || window.__samDecoder.failed"
            " || s.dataset.decoderState === 'off' || s.dataset.decoderReady === '1'; }",
            timeout=5 * TIMEOUT_MS,
        )
        stage = Stage(page)
        points, objects = 0, 0
        box: str | None = None
        for action in click_plan(width, height, args.clicks):
            kind = action["kind"]
            if kind == "point":
                sx, sy = stage.screen_xy(action["x"] + 0.5, action["y"] + 0.5)
                button = "right" if action["negative"] else "left"
                points += 1
                first, server = timed(
                    stage,
                    partial(page.mouse.click, sx, sy, button=button),
                    partial(stage.settled, points, box),
                )
                results["click"].append(first)
                results["click_server"].append(server)
                if points == 1 and box is None:
                    first, server = timed(
                        stage,
                        lambda: page.click("#sam-cands .sam-cand >> nth=1"),
                        lambda: page.wait_for_selector(
                            "#sam-cands .sam-cand:nth-child(2).sam-selected", timeout=TIMEOUT_MS
                        ),
                    )
                    results["switch"].append(first)
                    results["switch_server"].append(server)
            elif kind == "box":
                x0, y0, x1, y1 = action["box"]
                a, b = stage.screen_xy(x0, y0), stage.screen_xy(x1, y1)
                box = f"{x0},{y0},{x1},{y1}"

                def drag(a: tuple[float, float] = a, b: tuple[float, float] = b) -> None:
                    page.mouse.move(*a)
                    page.mouse.down()
                    page.mouse.move((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, steps=3)
                    page.mouse.move(*b, steps=3)
                    page.mouse.up()

                first, server = timed(stage, drag, partial(stage.settled, points, box))
                results["box"].append(first)
                results["box_server"].append(server)
            elif kind == "accept":
                objects += 1
                start = time.perf_counter()
                page.keyboard.press("Enter")
                page.wait_for_function(
                    f"document.querySelectorAll('#sam-objects .sam-obj').length === {objects}",
                    timeout=TIMEOUT_MS,
                )
                stage.settled(0, None)
                results["accept"].append((time.perf_counter() - start) * 1000)
                points, box = 0, None
            else:
                page.keyboard.press("Escape")
                stage.settled(0, None)
                points, box = 0, None
        isolated = page.evaluate("crossOriginIsolated")
        threads = None
        if args.decoder_rounds > 0 and page.evaluate(
            "() => document.querySelector('#sam-stage .sam-stage').dataset.decoderReady === '1'"
        ):
            threads = page.evaluate(DECODER_THREADS, args.decoder_rounds)
            for count, values in zip(threads["threads"], threads["ms"], strict=True):
                results[f"decoder_{count}_threads"] = values
        browser.close()
    summary = {
        name: {
            "n": len(values),
            "p50_ms": round(percentile(values, 0.5), 1),
            "p95_ms": round(percentile(values, 0.95), 1),
            "mean_ms": round(statistics.fmean(values), 1) if values else None,
        }
        for name, values in results.items()
    }
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_1min_before": round(load_before, 2),
            "load_1min_after": round(load_average(), 2),
        },
        "model_dims": args.model_dims,
        "cross_origin_isolated": isolated,
        "image": args.image.name,
        "summary": summary,
        "raw_ms": {k: [round(v, 1) for v in vs] for k, vs in results.items()},
    }


LABELS = {
    "click": "click -> first mask painted",
    "click_server": "click -> server's mask painted",
    "box": "box drag -> first mask painted",
    "box_server": "box drag -> server's mask painted",
    "switch": "candidate switch -> painted",
    "switch_server": "candidate switch -> server's mask",
    "accept": "accept (Enter) -> object listed",
}


def label(name: str) -> str:
    if name.startswith("decoder_"):
        return f"decoder session.run, {name.split('_')[1]} thread(s)"
    return LABELS[name]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clicks", type=int, default=30, help="point clicks to measure")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="photo to annotate")
    parser.add_argument(
        "--model-dims",
        default="vit-b",
        choices=MODEL_DIMS,
        help="random-weight checkpoint: SAM ViT-B or tiny dims, or SAM 2.1 Hiera-Tiny",
    )
    parser.add_argument(
        "--decoder-rounds",
        type=int,
        default=20,
        help="prompts each of the 1-thread and default-thread decoder workers runs (0: skip)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=REPO / "bench" / "results" / "browser.json",
        help="also write the results here",
    )
    args = parser.parse_args()
    report = run(args)
    m = report["machine"]
    print(
        f"{m['cpus']} CPUs ({m['processor']}), load {m['load_1min_before']} -> "
        f"{m['load_1min_after']}, {report['model_dims']} dims, {report['image']}"
    )
    print(f"{'action':40s} {'n':>3s} {'p50 ms':>8s} {'p95 ms':>8s}")
    for name, row in report["summary"].items():
        print(f"{label(name):40s} {row['n']:3d} {row['p50_ms']:8.1f} {row['p95_ms']:8.1f}")
    print(f"page cross-origin isolated: {report['cross_origin_isolated']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print(f"written: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
