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

element.addEventListener("pointerdown", (e) => {
  const info = stageOf(e.target);
  if (!info || (e.button !== 0 && e.button !== 2)) return;
  e.preventDefault();
  info.canvas.setPointerCapture(e.pointerId);
  gesture = { info, button: e.button, shift: e.shiftKey, x0: e.clientX, y0: e.clientY, drag: false };
});

element.addEventListener("pointermove", (e) => {
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
  band.style.left = `${left}px`;
  band.style.top = `${top}px`;
  band.style.width = `${Math.max(0, right - left)}px`;
  band.style.height = `${Math.max(0, bottom - top)}px`;
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
    trigger("prompt", { kind: "box", box, key: info.key });
    return;
  }
  const negative = g.button === 2 || g.shift || info.stage.dataset.mode === "neg";
  // While proposals are reviewed a click toggles one (no point is placed).
  if (!info.stage.dataset.proposals) pendingMarker(info, a.px, a.py, negative);
  trigger("prompt", { kind: "point", x: a.px, y: a.py, negative, key: info.key });
}

element.addEventListener("pointerup", (e) => finish(e, false));
element.addEventListener("pointercancel", (e) => finish(e, true));

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
    else if (e.key === "Escape") handled = press("#sam-clear");
    else if (key === "n") {
      const inputs = document.querySelectorAll("#sam-mode input[type=radio]");
      const next = Array.from(inputs).find((i) => !i.checked);
      if (next) {
        next.click();
        handled = true;
      }
    } else if (e.key === "." || e.key === "PageDown") handled = press("#sam-next");
    else if (e.key === "," || e.key === "PageUp") handled = press("#sam-prev");
    else if (key === "d") handled = press("#sam-done");
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
