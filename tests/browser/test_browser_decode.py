"""Clicks decoded in the browser (static/decoder_worker.js, ONNX Runtime Web): the masks the page
paints equal the engine's for the same prompts, at the display resolution of the stage."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

from sam import SamPredictor, load_model
from sam.image_io import load_image
from ui.render.overlay import display_size, sample_grid

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
TRUCK = REPO / "static" / "examples" / "truck.jpg"
TIMEOUT = 30_000
AGREEMENT = 0.995

# Packs a 0/1/2 display mask into base64 bits (1 = inside), little bit order.
PACK = """(m) => { const bits = new Uint8Array(Math.ceil(m.length / 8));
  for (let i = 0; i < m.length; i++) if (m[i]) bits[i >> 3] |= 1 << (i & 7);
  let s = ''; for (let i = 0; i < bits.length; i++) s += String.fromCharCode(bits[i]);
  return btoa(s); }"""

# Sends one decode to the page's worker as stage.js does; answers the best mask, packed.
DECODE = (
    """async ([points, box, maskInput, multimask]) => {
  const pack = """
    + PACK
    + """;
  const d = window.__samDecoder;
  const s = document.querySelector('#sam-stage .sam-stage');
  const id = 1e9 + Math.floor(Math.random() * 1e6);
  const reply = await new Promise((resolve) => {
    const h = (e) => { if (e.data.id === id && e.data.type !== 'more') {
      d.worker.removeEventListener('message', h); resolve(e.data); } };
    d.worker.addEventListener('message', h);
    d.worker.postMessage({ type: 'decode', id, url: s.dataset.embedding,
      size: [+s.dataset.h, +s.dataset.w], display: [+s.dataset.dh, +s.dataset.dw],
      points, box, maskInput: maskInput ? Float32Array.from(maskInput) : null, multimask });
  });
  if (reply.type !== 'decoded') return { error: reply.error };
  return { mask: pack(reply.masks[0]), scores: reply.scores };
}"""
)


# Starts a fresh decoder worker of the page; answers its "ready" message and the core count.
WORKER_READY = """async () => {
        const s = document.querySelector('#sam-stage .sam-stage');
        const w = new Worker(s.dataset.worker);
        const ready = await new Promise((resolve) => {
          w.onmessage = (e) => resolve(e.data);
          w.postMessage({ type: 'init', decoderUrl: s.dataset.decoder,
                          vendorUrl: s.dataset.vendor });
        });
        w.terminate();
        return { ready, cores: navigator.hardwareConcurrency }; }"""


@pytest.fixture(scope="module")
def engine(tiny_checkpoint: Path) -> SamPredictor:
    predictor = SamPredictor(load_model(str(tiny_checkpoint), device="cpu"))
    predictor.set_image(load_image(str(TRUCK)))
    return predictor


def unpack(b64: str, shape: tuple[int, int]) -> np.ndarray:
    bits = np.frombuffer(base64.b64decode(b64), dtype=np.uint8)
    return np.unpackbits(bits, bitorder="little")[: shape[0] * shape[1]].reshape(shape).astype(bool)


def as_displayed(mask: np.ndarray) -> np.ndarray:
    """The engine's full-resolution mask as the page's overlay samples it."""
    dh, dw = display_size(*mask.shape)
    rows, cols = sample_grid(*mask.shape, dh, dw)
    return mask[rows][:, cols]


def open_ready(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#sam-model-status .sam-ok", timeout=TIMEOUT)
    page.set_input_files("#sam-upload input[type=file]", str(TRUCK))
    page.wait_for_selector("#sam-stage .sam-canvas", timeout=TIMEOUT)
    page.wait_for_selector("#sam-stage .sam-busy", state="detached", timeout=4 * TIMEOUT)
    # The decoder is exported once per model (seconds), then loaded by the worker.
    page.wait_for_function(
        "() => document.querySelector('#sam-stage .sam-stage').dataset.decoderReady === '1'",
        timeout=8 * TIMEOUT,
    )


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float((a == b).mean())


def assert_decodes_like_the_engine(page, engine: SamPredictor) -> None:
    """The page's worker (ready, on truck.jpg) paints the engine's masks for a click, a refining
    negative click and a box with a point, at the stage's display resolution."""
    dh, dw = display_size(*engine.original_size)

    def browser(points, box=None, mask_input=None, multimask=False):
        answer = page.evaluate(DECODE, [points, box, mask_input, multimask])
        assert "error" not in answer, answer
        return unpack(answer["mask"], (dh, dw)), answer["scores"]

    # One click: the best of three candidates.
    masks, scores, logits = engine.predict(np.array([[500, 375]]), np.array([1]))
    painted, browser_scores = browser([[500, 375, 1]], multimask=True)
    np.testing.assert_allclose(browser_scores, scores, atol=1e-2)  # fp16 embedding (SAM 2: maps)
    assert painted.any() and (~painted).any()
    assert agreement(painted, as_displayed(masks[0])) >= AGREEMENT

    # A refining negative click feeds the chosen candidate's logits back, as the app does.
    points = np.array([[500, 375], [1100, 300]])
    masks2, _, _ = engine.predict(
        points, np.array([1, 0]), mask_input=logits[:1], multimask_output=False
    )
    painted2, _ = browser([[500, 375, 1], [1100, 300, 0]], mask_input=logits[0].ravel().tolist())
    assert agreement(painted2, as_displayed(masks2[0])) >= AGREEMENT

    # A box with a point.
    box = [75, 275, 1725, 850]
    masks3, _, _ = engine.predict(
        np.array([[500, 375]]), np.array([1]), box=np.array(box), multimask_output=False
    )
    painted3, _ = browser([[500, 375, 1]], box=box)
    assert agreement(painted3, as_displayed(masks3[0])) >= AGREEMENT


def test_browser_masks_equal_the_engines(page, app_server, engine):
    open_ready(page, app_server.url)
    assert_decodes_like_the_engine(page, engine)
    assert not page.js_errors


def test_the_page_is_cross_origin_isolated_so_the_decoder_runs_threads(page, app_server):
    """COOP/COEP (ui/isolation.py) make the page cross-origin isolated: the decoder worker gets
    WebAssembly threads (up to 4, as many as the machine has cores), where it had one."""
    open_ready(page, app_server.url)
    assert page.evaluate("crossOriginIsolated")
    answer = page.evaluate(WORKER_READY)
    assert answer["ready"]["type"] == "ready", answer
    assert answer["ready"]["threads"] == max(1, min(answer["cores"], 4))
    assert not page.js_errors


def test_a_page_without_isolation_decodes_on_one_thread(page, app_server, engine):
    """Where the page cannot be isolated (a proxy dropping the headers, a browser without
    ``credentialless``), the worker runs one thread and still paints the engine's mask."""

    def without_isolation(route):
        response = route.fetch()
        headers = {
            name: value
            for name, value in response.headers.items()
            if not name.startswith("cross-origin-")
        }
        route.fulfill(response=response, headers=headers)

    page.route(app_server.url + "/", without_isolation)  # the document decides isolation
    open_ready(page, app_server.url)
    assert page.evaluate("crossOriginIsolated") is False
    answer = page.evaluate(WORKER_READY)
    assert answer["ready"]["type"] == "ready" and answer["ready"]["threads"] == 1, answer
    reply = page.evaluate(DECODE, [[[500, 375, 1]], None, None, True])
    assert "error" not in reply, reply
    masks, _, _ = engine.predict(np.array([[500, 375]]), np.array([1]))
    painted = unpack(reply["mask"], display_size(*engine.original_size))
    assert agreement(painted, as_displayed(masks[0])) >= AGREEMENT
    assert not page.js_errors


def test_candidate_switch_is_painted_from_the_browser(page, app_server, engine, screenshots):
    """Choosing the second candidate paints it at once from the masks decoded in the page."""
    open_ready(page, app_server.url)
    page.evaluate(
        """() => { window.__painted = [];
        window.addEventListener('sam-painted', (e) => {
          const c = document.querySelector('#sam-stage canvas.sam-preview');
          const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          const m = new Uint8Array(c.width * c.height);
          for (let i = 0; i < m.length; i++) m[i] = px[4 * i + 3] > 0 ? 1 : 0;
          window.__painted.push({ selected: e.detail.selected, mask: ("""
        + PACK
        + """)(m) });
        }); }"""
    )
    info = page.evaluate(
        """() => { const c = document.querySelector('#sam-stage .sam-canvas');
        const r = c.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; }"""
    )
    height, width = engine.original_size
    page.mouse.click(info[0] + 500.5 * info[2] / width, info[1] + 375.5 * info[3] / height)
    page.wait_for_function(
        "() => document.querySelectorAll('#sam-stage .sam-pt:not(.sam-pending)').length === 1"
        " && document.querySelectorAll('#sam-cands .sam-cand').length === 3"
        " && !window.__samDecoder.preview && window.__samDecoder.memo.size > 0"
        " && [...window.__samDecoder.memo.values()].every((m) => m.masks.length === 3)",
        timeout=TIMEOUT,
    )
    page.evaluate("() => { window.__painted = []; }")
    page.click("#sam-cands .sam-cand >> nth=1")
    painted = page.evaluate("() => window.__painted")
    assert painted and painted[0]["selected"] == 1  # painted before the server answered
    masks, _, _ = engine.predict(np.array([[500, 375]]), np.array([1]))
    dh, dw = display_size(height, width)
    assert agreement(unpack(painted[0]["mask"], (dh, dw)), as_displayed(masks[1])) >= AGREEMENT
    # The server follows: candidate 2 selected, the page's canvas gives way to its overlay.
    page.wait_for_selector("#sam-cands .sam-cand:nth-child(2).sam-selected", timeout=TIMEOUT)
    page.wait_for_selector("#sam-stage canvas.sam-preview", state="detached", timeout=TIMEOUT)
    page.screenshot(path=str(screenshots / "browser-decode-switch.png"))
    assert not page.js_errors
