// Pointer input on the image stage -> SAM prompts, plus the app's keyboard shortcuts.
// Runs as the stage component's `js_on_load` (Gradio gives us `element`, `trigger`, `upload`).
// The stage HTML is re-rendered by Python after every prompt, so listeners are delegated from
// `element`, which persists, and every coordinate is read from the current DOM.
//
// Coordinates sent to Python are ORIGINAL image pixels: the photo is shown scaled, so a display
// position is divided by the displayed size and multiplied by the natural size (data-w/data-h).
// A click picks the pixel under the pointer (floor); a box's corners are pixel edges (round).

const DRAG_THRESHOLD_PX = 5;

window.samToImage = function (rect, width, height, clientX, clientY) {
  const fx = ((clientX - rect.left) / rect.width) * width;
  const fy = ((clientY - rect.top) / rect.height) * height;
  return {
    px: Math.min(width - 1, Math.max(0, Math.floor(fx))),
    py: Math.min(height - 1, Math.max(0, Math.floor(fy))),
    ex: Math.min(width, Math.max(0, Math.round(fx))),
    ey: Math.min(height, Math.max(0, Math.round(fy))),
  };
};

function stageOf(target) {
  const canvas = target && target.closest ? target.closest(".sam-canvas") : null;
  if (!canvas || !element.contains(canvas)) return null;
  const stage = canvas.closest(".sam-stage");
  return {
    canvas,
    stage,
    width: Number(stage.dataset.w),
    height: Number(stage.dataset.h),
    key: stage.dataset.key,
  };
}

function pct(v, total) {
  return `${(100 * v) / total}%`;
}

// Shown at once; the server's re-render replaces it with the real marker.
function pendingMarker(info, x, y, negative) {
  const dot = document.createElement("div");
  dot.className = `sam-pt ${negative ? "sam-neg" : "sam-pos"} sam-pending`;
  dot.style.left = pct(x + 0.5, info.width);
  dot.style.top = pct(y + 0.5, info.height);
  info.canvas.appendChild(dot);
}

let gesture = null;

element.addEventListener("contextmenu", (e) => {
  if (stageOf(e.target)) e.preventDefault();
});

// A click on the image takes keyboard focus back from any text box (label name, Find objects,
// model), so Enter / Esc / shortcuts act on the stage again: the pointerdown's preventDefault
// below would otherwise leave the focus where it was.
function releaseFocus() {
  const active = document.activeElement;
  if (active && active !== document.body && (active.isContentEditable || active.matches("input, textarea, select"))) {
    active.blur();
  }
}

element.addEventListener("pointerdown", (e) => {
  const info = stageOf(e.target);
  if (!info) return;
  releaseFocus();
  if (startPan(e, info)) return;
  if (startStroke(e, info)) return;
  if (e.button !== 0 && e.button !== 2) return;
  e.preventDefault();
  info.canvas.setPointerCapture(e.pointerId);
  gesture = { info, button: e.button, shift: e.shiftKey, x0: e.clientX, y0: e.clientY, drag: false };
});

element.addEventListener("pointermove", (e) => {
  if (movePan(e)) return;
  if (moveStroke(e)) return;
  if (!gesture || gesture.button !== 0) return;
  const dx = e.clientX - gesture.x0;
  const dy = e.clientY - gesture.y0;
  if (!gesture.drag && Math.hypot(dx, dy) < DRAG_THRESHOLD_PX) return;
  gesture.drag = true;
  const { canvas } = gesture.info;
  const rect = canvas.getBoundingClientRect();
  let band = canvas.querySelector(".sam-band");
  if (!band) {
    band = document.createElement("div");
    band.className = "sam-box sam-band";
    canvas.appendChild(band);
  }
  const left = Math.max(0, Math.min(e.clientX, gesture.x0) - rect.left);
  const top = Math.max(0, Math.min(e.clientY, gesture.y0) - rect.top);
  const right = Math.min(rect.width, Math.max(e.clientX, gesture.x0) - rect.left);
  const bottom = Math.min(rect.height, Math.max(e.clientY, gesture.y0) - rect.top);
  const local = canvas.offsetWidth / rect.width; // screen px -> the canvas's own px when zoomed
  band.style.left = `${left * local}px`;
  band.style.top = `${top * local}px`;
  band.style.width = `${Math.max(0, right - left) * local}px`;
  band.style.height = `${Math.max(0, bottom - top) * local}px`;
});

function finish(e, cancelled) {
  if (!gesture) return;
  const g = gesture;
  gesture = null;
  const { info } = g;
  const band = info.canvas.querySelector(".sam-band");
  if (cancelled) {
    if (band) band.remove();
    return;
  }
  const rect = info.canvas.getBoundingClientRect();
  const a = window.samToImage(rect, info.width, info.height, g.x0, g.y0);
  const b = window.samToImage(rect, info.width, info.height, e.clientX, e.clientY);
  if (g.drag) {
    const box = [Math.min(a.ex, b.ex), Math.min(a.ey, b.ey), Math.max(a.ex, b.ex), Math.max(a.ey, b.ey)];
    if (box[2] - box[0] < 1 || box[3] - box[1] < 1) {
      if (band) band.remove();
      return;
    }
    sendPrompt(info.stage, { kind: "box", box, key: info.key }, { box });
    return;
  }
  const negative = g.button === 2 || g.shift || info.stage.dataset.mode === "neg";
  // While proposals are reviewed a click toggles one (no point is placed).
  if (!info.stage.dataset.proposals) pendingMarker(info, a.px, a.py, negative);
  const event = { kind: "point", x: a.px, y: a.py, negative, key: info.key };
  sendPrompt(info.stage, event, { point: [a.px, a.py, negative ? 0 : 1] });
}

element.addEventListener("pointerup", (e) => endPan(e) || endStroke(e, false) || finish(e, false));
element.addEventListener("pointercancel", (e) => endPan(e) || endStroke(e, true) || finish(e, true));

// ---- Zoom and pan ---------------------------------------------------------------------------
// The wheel zooms around the pointer, a middle-drag or Space+drag pans, 0 fits the image again.
// The canvas (photo, overlay, markers) is scaled and moved as one with a CSS transform, so the
// mapping of clicks to image pixels above (getBoundingClientRect) holds at every zoom.

const MAX_ZOOM = 16;
const WHEEL_RATE = 0.002; // zoom factor e^(-deltaY * rate) of a mouse wheel notch
const PINCH_RATE = 0.01; // a trackpad pinch: Chromium sends it as ctrl+wheel with small deltas
const zoom = { key: null, s: 1, tx: 0, ty: 0, space: false, pan: null, touches: new Map(), pinch: null };

function applyZoom() {
  const stage = currentStage();
  if (!stage) return;
  if (zoom.key !== stage.dataset.key) Object.assign(zoom, { key: stage.dataset.key, s: 1, tx: 0, ty: 0 });
  const canvas = stage.querySelector(".sam-canvas");
  if (!canvas) return;
  // Only what differs is written: these writes are themselves observed (below).
  const transform = zoom.s === 1 ? "" : `translate(${zoom.tx}px, ${zoom.ty}px) scale(${zoom.s})`;
  if (stage.style.overflow !== "hidden") stage.style.overflow = "hidden";
  if (canvas.style.transformOrigin !== "0px 0px") canvas.style.transformOrigin = "0 0";
  if (canvas.style.transform !== transform) canvas.style.transform = transform;
  if (stage.dataset.zoom !== zoom.s.toFixed(4)) stage.dataset.zoom = zoom.s.toFixed(4);
  // The overlay is a bitmap at data-dw pixels: once the screen shows it larger, app.css draws
  // its pixels as sharp squares instead of a blur (the photo itself stays smooth).
  const upscaled = zoom.s * canvas.offsetWidth * devicePixels() > Number(stage.dataset.dw) + 0.5;
  if (upscaled !== (stage.dataset.upscaled === "1")) {
    if (upscaled) stage.dataset.upscaled = "1";
    else delete stage.dataset.upscaled;
  }
  showZoom(stage, canvas);
}

// The read-out in the stage's corner: screen (device) pixels per image pixel, so "100 %" is
// pixel-exact on a HiDPI screen too, where one CSS pixel is 2 or 3 of the screen's.
function showZoom(stage, canvas) {
  const width = Number(stage.dataset.w);
  if (!width || !canvas.offsetWidth) return;
  let badge = stage.querySelector(":scope > .sam-zoom");
  if (!badge) {
    badge = document.createElement("div");
    badge.className = "sam-zoom";
    badge.title = "Zoom: 100 % is one image pixel per screen pixel (0 fits, Shift+1 is 100 %)";
    stage.appendChild(badge);
  }
  const percent = `${Math.round((100 * zoom.s * canvas.offsetWidth * devicePixels()) / width)} %`;
  if (badge.textContent !== percent) badge.textContent = percent;
  // In the image's bottom-left corner, above the line under the image: that line wraps on a
  // narrow screen, and a read-out at the stage's own bottom would cover its first words.
  const below = stage.clientHeight - canvas.offsetTop - canvas.offsetHeight;
  const bottom = `${Math.max(0, below) + 8}px`;
  if (badge.style.bottom !== bottom) badge.style.bottom = bottom;
}

function devicePixels() {
  return window.devicePixelRatio || 1;
}

// Scale `s`, with the image point that is under screen point (ax, ay) now moved to (x, y).
function zoomTo(s, ax, ay, x, y) {
  const stage = currentStage();
  if (!stage) return;
  const rect = stage.querySelector(".sam-canvas").getBoundingClientRect();
  if (s === 1) Object.assign(zoom, { s: 1, tx: 0, ty: 0 });
  else {
    const left = rect.left - zoom.tx; // the canvas's place without the transform
    const top = rect.top - zoom.ty;
    zoom.tx = x - left - (s * (ax - left - zoom.tx)) / zoom.s;
    zoom.ty = y - top - (s * (ay - top - zoom.ty)) / zoom.s;
    zoom.s = s;
  }
  applyZoom();
}

// Keep the image point under the pointer where it is. Below fit only from a 100 % that is
// smaller than fit (a small photo on a HiDPI screen): the wheel then zooms in from there.
function zoomAt(clientX, clientY, scale) {
  const least = Math.min(1, zoom.s);
  zoomTo(Math.min(MAX_ZOOM, Math.max(least, scale)), clientX, clientY, clientX, clientY);
}
window.__samZoomFit = () => {
  if (!currentStage()) return false;
  Object.assign(zoom, { s: 1, tx: 0, ty: 0 });
  applyZoom();
  return true;
};
// 100 %: one image pixel per screen (device) pixel, around the middle of the stage. On a HiDPI
// screen (devicePixelRatio 2) that is half an image's width in CSS pixels. The image's corner is
// then moved onto a whole device pixel, so the browser copies pixels instead of resampling them.
window.__samZoom100 = () => {
  const stage = currentStage();
  const canvas = stage && stage.querySelector(".sam-canvas");
  if (!canvas || !canvas.offsetWidth) return false;
  const rect = canvas.getBoundingClientRect();
  const x = rect.left - zoom.tx + canvas.offsetWidth / 2;
  const y = rect.top - zoom.ty + canvas.offsetHeight / 2;
  const dpr = devicePixels();
  zoomTo(Number(stage.dataset.w) / (canvas.offsetWidth * dpr), x, y, x, y);
  if (zoom.s !== 1) {
    const at = canvas.getBoundingClientRect();
    zoom.tx += (Math.round(at.left * dpr) - at.left * dpr) / dpr;
    zoom.ty += (Math.round(at.top * dpr) - at.top * dpr) / dpr;
    applyZoom();
  }
  return true;
};
// A window resize (or the browser's own zoom, which changes devicePixelRatio) changes the read-out.
window.addEventListener("resize", applyZoom);

element.addEventListener(
  "wheel",
  (e) => {
    if (!stageOf(e.target)) return;
    e.preventDefault(); // with ctrlKey (a trackpad pinch): no zoom of the whole page
    zoomAt(e.clientX, e.clientY, zoom.s * Math.exp(-e.deltaY * (e.ctrlKey ? PINCH_RATE : WHEEL_RATE)));
  },
  { passive: false },
);

// Two fingers on a touch screen pinch: zoom around their centre, which the image follows.
function touchCentre() {
  const [a, b] = zoom.touches.values();
  return { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2, d: Math.hypot(a.x - b.x, a.y - b.y) || 1 };
}

function startPan(e, info) {
  if (e.pointerType === "touch") {
    zoom.touches.set(e.pointerId, { x: e.clientX, y: e.clientY });
    if (zoom.touches.size !== 2) return false; // one finger clicks and drags boxes
    e.preventDefault();
    info.canvas.setPointerCapture(e.pointerId);
    if (gesture) {
      // The first finger's click or box becomes the pinch.
      const band = gesture.info.canvas.querySelector(".sam-band");
      if (band) band.remove();
      gesture = null;
    }
    endStroke(e, true); // and so does its brush stroke
    const c = touchCentre();
    zoom.pinch = { ...c, s: zoom.s, ids: new Set(zoom.touches.keys()) };
    return true;
  }
  if (!(e.button === 1 || (e.button === 0 && zoom.space))) return false;
  e.preventDefault();
  info.canvas.setPointerCapture(e.pointerId);
  zoom.pan = { x0: e.clientX, y0: e.clientY, tx: zoom.tx, ty: zoom.ty };
  return true;
}

function movePan(e) {
  if (zoom.touches.has(e.pointerId)) zoom.touches.set(e.pointerId, { x: e.clientX, y: e.clientY });
  const p = zoom.pinch;
  if (p && p.ids.has(e.pointerId)) {
    if (zoom.touches.size === 2) {
      const c = touchCentre();
      const s = Math.min(MAX_ZOOM, Math.max(1, (p.s * c.d) / p.d));
      zoomTo(s, p.x, p.y, c.x, c.y);
      Object.assign(p, { x: c.x, y: c.y, d: c.d, s });
    }
    return true;
  }
  if (!zoom.pan) return false;
  if (zoom.s > 1) {
    zoom.tx = zoom.pan.tx + e.clientX - zoom.pan.x0;
    zoom.ty = zoom.pan.ty + e.clientY - zoom.pan.y0;
    applyZoom();
  }
  return true;
}

function endPan(e) {
  zoom.touches.delete(e.pointerId);
  if (zoom.pinch && zoom.pinch.ids.has(e.pointerId)) {
    // The pinch is over; its fingers' releases make no click.
    zoom.pinch.ids.delete(e.pointerId);
    if (!zoom.pinch.ids.size) zoom.pinch = null;
    return true;
  }
  if (!zoom.pan) return false;
  zoom.pan = null;
  return true;
}

// ---- Brush and eraser -------------------------------------------------------------------------
// B / E pick the brush or the eraser (the same key again, or Esc: back to clicks and boxes);
// [ and ] change its radius in screen pixels, shown as a circle around the pointer. A stroke is
// drawn here while it is dragged and sent to the server once, on release: a polyline of image
// pixels and the radius in image pixels (so it paints the same pixels at every zoom), which
// ui/brush.py checks and paints on the current mask or the selected object.

const BRUSH_MIN_PX = 2;
const BRUSH_MAX_PX = 150;
const STROKE_MAX_POINTS = 4096; // ui/brush.py MAX_STROKE_POINTS: a longer drag goes in parts
const brush = { tool: null, radius: 12, stroke: null, cursor: null, at: null, last: null };
window.__samBrush = brush; // for tests

brush.use = (tool) => {
  if (tool && !currentStage()) return false;
  brush.tool = tool && brush.tool !== tool ? tool : null;
  if (brush.tool) element.dataset.tool = brush.tool;
  else delete element.dataset.tool;
  showCursor(brush.at);
  return true;
};

brush.resize = (direction) => {
  if (!brush.tool) return false;
  const step = Math.max(1, Math.round(brush.radius * 0.2));
  brush.radius = Math.min(BRUSH_MAX_PX, Math.max(BRUSH_MIN_PX, brush.radius + direction * step));
  showCursor(brush.at);
  return true;
};

function showCursor(at) {
  let ring = brush.cursor;
  if (!ring || !ring.isConnected) {
    ring = document.createElement("div");
    ring.className = "sam-brush-cursor";
    document.body.appendChild(ring);
    brush.cursor = ring;
  }
  ring.hidden = !brush.tool || !at;
  if (ring.hidden) return;
  ring.classList.toggle("sam-erasing", brush.tool === "erase");
  ring.style.width = ring.style.height = `${2 * brush.radius}px`;
  ring.style.left = `${at.x - brush.radius}px`;
  ring.style.top = `${at.y - brush.radius}px`;
}

element.addEventListener("pointermove", (e) => {
  brush.at = brush.tool && (brush.stroke || stageOf(e.target)) ? { x: e.clientX, y: e.clientY } : null;
  showCursor(brush.at);
});
element.addEventListener("pointerleave", () => {
  brush.at = null;
  showCursor(null);
});

function startStroke(e, info) {
  if (!brush.tool || e.button !== 0) return false;
  e.preventDefault();
  info.canvas.setPointerCapture(e.pointerId);
  const rect = info.canvas.getBoundingClientRect();
  const radius = (brush.radius * info.width) / rect.width; // image px at this zoom
  const ink = document.createElement("canvas");
  ink.className = "sam-ink";
  ink.width = Number(info.stage.dataset.dw) || info.width;
  ink.height = Number(info.stage.dataset.dh) || info.height;
  const ctx = ink.getContext("2d");
  const k = ink.width / info.width;
  ctx.setTransform(k, 0, 0, k, 0, 0); // drawn in image pixels
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.lineWidth = 2 * Math.round(radius) + 1;
  ctx.strokeStyle = ctx.fillStyle = brush.tool === "erase" ? "#ffffff" : rgbCss(info.stage.dataset.color);
  if (brush.tool === "erase") ink.classList.add("sam-erasing");
  info.canvas.appendChild(ink);
  brush.stroke = { mode: brush.tool, radius, points: [], ink, ctx, key: info.key };
  addStrokePoint(brush.stroke, e);
  return true;
}

function rgbCss(color) {
  return /^#[0-9a-f]{6}$/i.test(color || "") ? color : "#3b82f6";
}

// The pixel under the pointer, read from the stage as it is now (a render may replace it).
function strokePoint(s, e) {
  const stage = currentStage();
  const canvas = stage && stage.querySelector(".sam-canvas");
  if (!canvas || stage.dataset.key !== s.key) return null;
  const rect = canvas.getBoundingClientRect();
  const p = window.samToImage(rect, Number(stage.dataset.w), Number(stage.dataset.h), e.clientX, e.clientY);
  if (!s.ink.isConnected) canvas.appendChild(s.ink);
  return [p.px, p.py];
}

function addStrokePoint(s, e) {
  const p = strokePoint(s, e);
  if (!p) return;
  const last = s.points[s.points.length - 1];
  if (last && last[0] === p[0] && last[1] === p[1]) return;
  if (s.points.length === STROKE_MAX_POINTS) {
    sendStroke(s);
    s.points = [last];
  }
  s.points.push(p);
  const from = last || p;
  s.ctx.beginPath();
  s.ctx.moveTo(from[0] + 0.5, from[1] + 0.5);
  s.ctx.lineTo(p[0] + 0.5, p[1] + 0.5);
  s.ctx.stroke();
}

function moveStroke(e) {
  if (!brush.stroke) return false;
  addStrokePoint(brush.stroke, e);
  return true;
}

function endStroke(e, cancelled) {
  const s = brush.stroke;
  if (!s) return false;
  brush.stroke = null;
  if (cancelled) s.ink.remove();
  else {
    addStrokePoint(s, e);
    sendStroke(s);
  }
  return true;
}
// A release outside the page's stage still ends the stroke.
document.addEventListener("pointerup", (e) => endStroke(e, false));

function sendStroke(s) {
  if (!s.points.length) return;
  const event = {
    kind: "stroke",
    mode: s.mode,
    points: s.points.slice(),
    radius: Math.round(s.radius * 1000) / 1000,
    key: s.key,
  };
  brush.last = event;
  const stage = currentStage();
  s.ink.dataset.rev = stage ? stage.dataset.rev : "";
  const send = () => trigger("prompt", event);
  dec.toServer = dec.toServer.then(send, send); // after the clicks made before it
}

// The server's render shows the stroke's result: drop what was drawn for it.
function dropInk() {
  const stage = currentStage();
  element.querySelectorAll("canvas.sam-ink[data-rev]").forEach((ink) => {
    if (!stage || ink.dataset.rev !== stage.dataset.rev) ink.remove();
  });
}

const typingIn = (t) =>
  t && (t.isContentEditable || (["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName) && !["radio", "checkbox", "range"].includes(t.type)));
document.addEventListener("keydown", (e) => {
  if (e.key === " " && !typingIn(e.target) && currentStage()) {
    zoom.space = true;
    e.preventDefault(); // no page scroll while Space pans
  }
});
document.addEventListener("keyup", (e) => {
  if (e.key === " ") zoom.space = false;
});

// ---- Clicks decoded in the browser ------------------------------------------------------------
// The server names its decoder graph and the image's embedding in the stage's data-decoder /
// data-embedding once written (ui/browser_decode.py); a worker (static/decoder_worker.js) runs
// them with ONNX Runtime Web. A click is then painted from the browser's own decode on a canvas
// over the photo at once, while the same prompt still goes to the server, whose mask is the
// one kept (accept, export); its overlay replaces the canvas when it arrives. Without
// WebAssembly or workers, or while the files are not ready, clicks wait for the server as before.
// A click is only decoded here when the browser can repeat the server's computation exactly:
// the chosen candidate's low-res logits fed back as mask_input must be the ones it decoded.

const MEMO_ENTRIES = 64;
const PREVIEW_TIMEOUT_MS = 15000;
const ASK_EVERY_MS = 2000;
const SERVER_AFTER_MS = 1000;
const dec = {
  worker: null,
  readyUrl: null, // decoder graph the worker has loaded
  embeddingUrl: null, // embedding the worker has loaded
  sent: { init: null, embedding: null },
  failed: false,
  asked: new Map(), // image key -> time the server was last asked for the files
  seq: 0,
  calls: new Map(), // request id -> resolve
  moreFor: new Map(), // request id -> signature whose other candidates are still coming
  memo: new Map(), // prompt signature -> {masks, lowRes, scores}
  preview: null, // {key, sig, selected, chain: Set, masks, since}
  toServer: Promise.resolve(), // the prompts sent to the server so far, in order
};
window.__samDecoder = dec; // for tests and the benchmark

const supported = typeof WebAssembly === "object" && typeof Worker === "function";

function currentStage() {
  return element.querySelector(".sam-stage[data-key]");
}

function signature(key, points, box) {
  return `${key}|${points.map((p) => p.join(",")).join(";")}|${box ? box.join(",") : ""}`;
}

// The prompt and candidates the server's stage shows.
function shown(stage) {
  const points = Array.from(stage.querySelectorAll(".sam-pt:not(.sam-pending)")).map((p) => [
    Number(p.dataset.x),
    Number(p.dataset.y),
    p.classList.contains("sam-neg") ? 0 : 1,
  ]);
  const frame = stage.querySelector(".sam-box[data-box]");
  const box = frame ? frame.dataset.box.split(",").map(Number) : null;
  const key = stage.dataset.key;
  return {
    key,
    points,
    box,
    sig: signature(key, points, box),
    hasCands: stage.dataset.cands !== undefined,
    selected: Number(stage.dataset.selected || 0),
  };
}

function workerCall(message, transfer, onId) {
  const id = ++dec.seq;
  if (onId) onId(id);
  return new Promise((resolve) => {
    dec.calls.set(id, resolve);
    dec.worker.postMessage({ ...message, id }, transfer || []);
  });
}

function startWorker(stage) {
  dec.worker = new Worker(stage.dataset.worker);
  dec.worker.onmessage = (event) => {
    const msg = event.data;
    if (msg.type === "ready") dec.readyUrl = msg.decoderUrl;
    else if (msg.type === "embedding") dec.embeddingUrl = msg.url;
    else if (msg.type === "failed" && msg.stage !== "decode") {
      dec.failed = true; // the server path answers every click
      console.warn("In-browser decoding is off:", msg.error);
    }
    if (msg.type === "more") {
      const known = dec.memo.get(dec.moreFor.get(msg.id));
      dec.moreFor.delete(msg.id);
      if (known) known.masks.push(...msg.masks);
      return;
    }
    const resolve = dec.calls.get(msg.id);
    if (resolve) {
      dec.calls.delete(msg.id);
      resolve(msg);
    }
    syncDecoder();
  };
  dec.worker.onerror = (event) => {
    dec.failed = true;
    console.warn("In-browser decoding is off:", event.message);
  };
}

function ready(stage) {
  return (
    !dec.failed &&
    dec.readyUrl !== null &&
    dec.readyUrl === stage.dataset.decoder &&
    dec.embeddingUrl === stage.dataset.embedding
  );
}

// After every render of the stage: ask for the files, load them, keep or end the preview.
function syncDecoder() {
  const stage = currentStage();
  if (!stage || !supported || dec.failed) return;
  if (!stage.dataset.embedding) {
    const state = stage.dataset.decoderState;
    const last = dec.asked.get(stage.dataset.key) || 0;
    if (state !== "off" && !stage.querySelector(".sam-busy") && Date.now() - last > ASK_EVERY_MS) {
      dec.asked.set(stage.dataset.key, Date.now());
      trigger("decoder", { key: stage.dataset.key, state: state || null });
      setTimeout(syncDecoder, ASK_EVERY_MS + 100); // nothing is re-rendered while exporting
    }
  } else {
    if (!dec.worker) startWorker(stage);
    if (dec.sent.init !== stage.dataset.decoder) {
      dec.sent.init = stage.dataset.decoder;
      dec.worker.postMessage({ type: "init", decoderUrl: stage.dataset.decoder, vendorUrl: stage.dataset.vendor });
    }
    if (dec.sent.embedding !== stage.dataset.embedding) {
      dec.sent.embedding = stage.dataset.embedding;
      const dims = stage.dataset.dims.split(",").map(Number);
      dec.worker.postMessage({ type: "embedding", url: stage.dataset.embedding, dims });
    }
    if (ready(stage) && stage.dataset.decoderReady !== "1") stage.dataset.decoderReady = "1";
  }
  settlePreview(stage);
}

function remember(sig, result) {
  dec.memo.delete(sig);
  dec.memo.set(sig, result);
  while (dec.memo.size > MEMO_ENTRIES) dec.memo.delete(dec.memo.keys().next().value);
}

// A click or box on `stage`: decoded here first, then sent to the server, the source of truth.
// On a small CPU the server's decode of the same prompt would compete with the worker's for the
// cores, so the server is asked once the browser has painted (or could not decode, or after
// SERVER_AFTER_MS at most); prompts reach the server in the order they were made.
function sendPrompt(stage, event, change) {
  const painted = Promise.race([decodeHere(stage, change), wait(SERVER_AFTER_MS)]);
  const send = () => trigger("prompt", event);
  dec.toServer = dec.toServer.then(() => painted).then(send, send);
}

function wait(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// A click or box on `stage`: decode it here and paint it, when that repeats the server exactly.
async function decodeHere(stage, change) {
  if (!supported || !ready(stage) || stage.dataset.proposals || stage.dataset.editing || stage.dataset.painted) return;
  const p = dec.preview;
  const pending = p && p.key === stage.dataset.key ? p : null;
  const base = pending
    ? { ...pending.prompt, hasCands: true, selected: pending.selected, sig: pending.sig }
    : shown(stage);
  const points = change.point ? [...base.points, change.point] : base.points;
  const box = change.box || base.box;
  const multimask = points.length === 1 && !box;
  let maskInput = null;
  if (!multimask && base.hasCands) {
    const known = dec.memo.get(base.sig);
    if (!known || !known.lowRes[base.selected]) return; // the server's mask_input is unknown here
    maskInput = known.lowRes[base.selected].slice();
  }
  const key = stage.dataset.key;
  const sig = signature(key, points, box);
  const chain = new Set(pending ? pending.chain : []);
  chain.add(base.sig);
  const mine = { key, sig, selected: 0, chain, masks: null, prompt: { points, box }, since: Date.now() };
  dec.preview = mine;
  const reply = await workerCall(
    {
      type: "decode",
      url: stage.dataset.embedding,
      size: [Number(stage.dataset.h), Number(stage.dataset.w)],
      display: [Number(stage.dataset.dh), Number(stage.dataset.dw)],
      points,
      box,
      maskInput,
      multimask,
    },
    maskInput ? [maskInput.buffer] : [],
    (id) => multimask && dec.moreFor.set(id, sig),
  );
  if (reply.type !== "decoded") {
    console.warn("In-browser decoding failed; the server's mask follows:", reply.error);
    if (dec.preview === mine) dec.preview = null;
    return;
  }
  remember(sig, { masks: reply.masks, lowRes: reply.lowRes, scores: reply.scores });
  if (dec.preview !== mine) return; // a newer click, or the server was faster
  mine.masks = reply.masks;
  paintPreview(currentStage());
}

function rgbOf(color) {
  const m = /^#([0-9a-f]{6})$/i.exec(color || "");
  const v = m ? parseInt(m[1], 16) : 0x3b82f6;
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

function paintPreview(stage) {
  const p = dec.preview;
  if (!stage || !p || !p.masks || stage.dataset.key !== p.key) return;
  const box = stage.querySelector(".sam-canvas");
  let canvas = box.querySelector("canvas.sam-preview");
  const dh = Number(stage.dataset.dh);
  const dw = Number(stage.dataset.dw);
  if (!canvas) {
    canvas = document.createElement("canvas");
    canvas.className = "sam-preview";
    canvas.style.cssText =
      "position:absolute;inset:0;width:100%;height:100%;pointer-events:none;image-rendering:pixelated";
    box.insertBefore(canvas, box.querySelector(".sam-box, .sam-pt, .sam-live"));
  }
  const painted = `${p.sig}#${p.selected}`;
  if (canvas.dataset.painted !== painted) {
    canvas.width = dw;
    canvas.height = dh;
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(dw, dh);
    const pixels = new Uint32Array(image.data.buffer); // little-endian: 0xAABBGGRR
    const [r, g, b] = rgbOf(stage.dataset.color);
    const alpha = Math.round(255 * Math.min(1, Math.max(0, Number(stage.dataset.opacity || 0.5))));
    const fill = ((alpha << 24) | (b << 16) | (g << 8) | r) >>> 0;
    const codes = p.masks[p.selected];
    for (let i = 0; i < codes.length; i++) {
      if (codes[i] === 1) pixels[i] = fill;
      else if (codes[i] === 2) pixels[i] = 0xffffffff;
    }
    ctx.putImageData(image, 0, 0);
    canvas.dataset.painted = painted;
    window.dispatchEvent(new CustomEvent("sam-painted", { detail: { sig: p.sig, selected: p.selected } }));
  }
  // The server's overlay still shows the previous current mask: show its objects-only twin.
  const overlay = box.querySelector(".sam-overlay");
  const under = box.querySelector(".sam-under");
  const showsCurrent = stage.dataset.cands !== undefined;
  if (overlay && showsCurrent && overlay.style.visibility !== "hidden") overlay.style.visibility = "hidden";
  if (under && showsCurrent && under.hidden) under.hidden = false;
}

function endPreview(stage) {
  dec.preview = null;
  if (!stage) return;
  const canvas = stage.querySelector("canvas.sam-preview");
  const overlay = stage.querySelector(".sam-overlay");
  const done = () => {
    if (canvas) canvas.remove();
    if (overlay) overlay.style.visibility = "";
    const under = stage.querySelector(".sam-under");
    if (under) under.hidden = true;
  };
  // Keep the canvas until the server's overlay is decoded: no frame without a mask.
  if (overlay && overlay.decode) overlay.decode().then(done, done);
  else done();
}

// A server render arrived: it shows the previewed prompt (done), an earlier step of it (keep
// painting), or something else (undo, clear, an error: drop the preview).
function settlePreview(stage) {
  const p = dec.preview;
  if (!p) return;
  const now = shown(stage);
  if (now.key !== p.key || Date.now() - p.since > PREVIEW_TIMEOUT_MS) endPreview(stage);
  else if (now.sig === p.sig && now.selected === p.selected) endPreview(stage);
  else if (now.sig === p.sig || p.chain.has(now.sig)) paintPreview(stage);
  else endPreview(stage);
}

// Choosing another candidate: painted from the masks decoded here, the server follows.
document.addEventListener(
  "click",
  (e) => {
    const card = e.target.closest && e.target.closest("#sam-cands .sam-cand");
    const stage = currentStage();
    if (!card || !stage || dec.preview || !ready(stage)) return;
    const now = shown(stage);
    const known = dec.memo.get(now.sig);
    const index = Number(card.dataset.index);
    if (!known || !known.masks[index] || index === now.selected) return;
    dec.preview = {
      key: now.key, sig: now.sig, selected: index, chain: new Set([now.sig]), masks: known.masks,
      prompt: { points: now.points, box: now.box }, since: Date.now(),
    };
    paintPreview(stage);
  },
  true,
);

// Gradio may patch the stage's attributes in place (dropping the zoom) as well as replace it.
new MutationObserver(() => {
  syncDecoder();
  applyZoom();
  dropInk();
}).observe(element, { childList: true, subtree: true, attributes: true, attributeFilter: ["style", "data-rev", "data-zoom"] });
syncDecoder();

// The empty stage is a drop zone; clicking it opens the file picker of the Upload box.
element.addEventListener("click", (e) => {
  if (!e.target.closest(".sam-drop")) return;
  const input = document.querySelector("#sam-upload input[type=file]");
  if (input) input.click();
});

// Drag and drop an image file straight onto the stage.
element.addEventListener("dragover", (e) => {
  if (e.dataTransfer && Array.from(e.dataTransfer.types || []).includes("Files")) {
    e.preventDefault();
    element.classList.add("sam-dragover");
  }
});
element.addEventListener("dragleave", () => element.classList.remove("sam-dragover"));
element.addEventListener("drop", async (e) => {
  element.classList.remove("sam-dragover");
  const file = e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files[0];
  if (!file) return;
  e.preventDefault();
  const uploaded = await upload(file);
  trigger("dropped", { path: uploaded.path, name: file.name });
});

// "Encoding image… 3.2 s": ticks any busy veil on the page. A long task re-renders its veil to
// show progress; veils with the same data-job share one clock.
if (!window.__samTicker) {
  const seen = new WeakMap();
  const jobs = new Map();
  window.__samTicker = setInterval(() => {
    document.querySelectorAll(".sam-elapsed").forEach((el) => {
      const job = el.dataset.job;
      if (job && !jobs.has(job)) jobs.set(job, Date.now());
      if (!seen.has(el)) seen.set(el, job ? jobs.get(job) : Date.now());
      el.textContent = `${((Date.now() - seen.get(el)) / 1000).toFixed(1)} s`;
    });
  }, 100);
}

// Keyboard shortcuts press the visible buttons, so they do exactly what a click would.
if (!window.__samKeys) {
  window.__samKeys = true;
  const press = (selector) => {
    const el = document.querySelector(selector);
    if (el && !el.disabled) el.click();
    return Boolean(el);
  };
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    const typing =
      t && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName));
    if (typing && !(t.type === "radio" || t.type === "checkbox" || t.type === "range")) return;
    const mod = e.ctrlKey || e.metaKey;
    const key = e.key.toLowerCase();
    let handled = false;
    if (mod && key === "z") handled = press(e.shiftKey ? "#sam-redo" : "#sam-undo");
    else if (mod && key === "y") handled = press("#sam-redo");
    else if (mod || e.altKey) return;
    else if (e.key === "Enter") handled = press("#sam-accept");
    else if (e.key === "Escape") {
      const tools = window.__samBrush;
      handled = tools && tools.tool ? tools.use(null) : press("#sam-clear");
    } else if (key === "b" || key === "e") {
      handled = Boolean(window.__samBrush && window.__samBrush.use(key === "b" ? "brush" : "erase"));
    } else if (e.key === "[" || e.key === "]") {
      handled = Boolean(window.__samBrush && window.__samBrush.resize(e.key === "]" ? 1 : -1));
    } else if (key === "n") {
      const inputs = document.querySelectorAll("#sam-mode input[type=radio]");
      const next = Array.from(inputs).find((i) => !i.checked);
      if (next) {
        next.click();
        handled = true;
      }
    } else if (e.key === "." || e.key === "PageDown") handled = press("#sam-next");
    else if (e.key === "," || e.key === "PageUp") handled = press("#sam-prev");
    else if (key === "d") handled = press(e.shiftKey ? "#sam-done" : "#sam-done-next");
    else if (e.key === "0") handled = Boolean(window.__samZoomFit && window.__samZoomFit());
    // 100 %: Shift+1 by its key's place (e.code), whatever the layout types there; 1-9 pick labels.
    else if (e.code === "Digit1" && e.shiftKey) handled = Boolean(window.__samZoom100 && window.__samZoom100());
    else if (key === "h") handled = press("#sam-only input[type=checkbox]");
    else if (key === "c") {
      const cards = Array.from(document.querySelectorAll("#sam-cands .sam-cand"));
      const at = cards.findIndex((c) => c.classList.contains("sam-selected"));
      if (cards.length > 1) {
        cards[(at + 1) % cards.length].click();
        handled = true;
      }
    } else if (/^[1-9]$/.test(e.key)) {
      handled = press(`#sam-labels [data-index="${Number(e.key) - 1}"]`);
    }
    if (handled) e.preventDefault();
  });
}
