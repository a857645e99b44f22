// Decodes clicks in the browser: SAM's prompt encoder + mask decoder (decoder.onnx, exported by
// the app with `sam.onnx_export`) run by ONNX Runtime Web (WebAssembly, SIMD) on the current
// image's embedding, which the server sends once per image as float16 bytes. SAM 2 graphs (they
// take `high_res_feats_0/1`) get the embedding and the two high-resolution maps in one file
// (dims: [C, h, w] of each, flattened) and SAM 2's frame: the image resized to the 1024 square
// without keeping its aspect, a "not a point" token always last, low-res masks straight to the
// image size (sam/engine.py: Sam2Engine).
//
// Messages in:  {type: "init", decoderUrl, vendorUrl, threads?} (threads: a cap, for benchmarks)
//               {type: "embedding", url, dims: [C, h, w] (SAM 2: of each of its three maps)}
//               {type: "decode", id, url, size: [H, W], display: [dh, dw], points: [[x, y, label]],
//                box: [x0, y0, x1, y1] | null, maskInput: Float32Array | null, multimask}
// Messages out: {type: "ready", decoderUrl, threads} / {type: "embedding", url} / {type: "failed", error}
//               {type: "decoded", id, masks: [best], scores: [..], lowRes: [Float32Array], ms}
//               then, for three candidates, {type: "more", id, masks: [second, third]}
//               masks: per display pixel 0 outside, 1 inside, 2 inside on the 2-pixel contour
//               (as the server draws the current mask: ui/render/overlay.py, outline)
//
// Masks come back at the display size of the stage's overlay, sampled exactly as the server's
// overlay samples the full-resolution mask (ui/render/overlay.py: sample_grid), so the painted
// mask is the server's mask as the page would show it.

"use strict";

let session = null;
let sessionUrl = null;
const embeddings = new Map(); // url -> {feeds: {input name: tensor}}; the current image's only
const MAP_INPUTS = ["image_embeddings", "high_res_feats_0", "high_res_feats_1"];
const LOW_RES = 256;
const INPUT_SIZE = 1024;
const PADDING_LABEL = -1;
const BOX_LABELS = [2, 3];

function half2floatTable() {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) table[h] = sign * 2 ** -14 * (frac / 1024);
    else if (exp === 31) table[h] = frac ? NaN : sign * Infinity;
    else table[h] = sign * 2 ** (exp - 15) * (1 + frac / 1024);
  }
  return table;
}
let HALF = null;

// WebAssembly threads share memory, which browsers allow only in a cross-origin isolated page
// (the app sends COOP/COEP headers: ui/isolation.py); elsewhere the decoder runs on one thread.
// At most 4: the decoder is small and the server wants a core too.
const MAX_THREADS = 4;
function wasmThreads(cap) {
  if (!self.crossOriginIsolated) return 1;
  return Math.max(1, Math.min(navigator.hardwareConcurrency || 1, MAX_THREADS, cap || MAX_THREADS));
}

async function init(decoderUrl, vendorUrl, threadCap) {
  if (sessionUrl === decoderUrl && session) return;
  if (typeof ort === "undefined") importScripts(`${vendorUrl}ort.wasm.min.js`);
  ort.env.wasm.wasmPaths = vendorUrl;
  ort.env.wasm.numThreads = wasmThreads(threadCap); // read once, when the WASM starts
  session = await ort.InferenceSession.create(decoderUrl, {
    executionProviders: ["wasm"],
    graphOptimizationLevel: "all",
  });
  sessionUrl = decoderUrl;
}

async function loadEmbedding(url, dims) {
  if (embeddings.has(url)) return;
  const response = await fetch(url);
  if (!response.ok) throw new Error(`embedding: HTTP ${response.status}`);
  const halves = new Uint16Array(await response.arrayBuffer());
  if (!HALF) HALF = half2floatTable();
  const feeds = {};
  let offset = 0;
  for (let m = 0; m < dims.length / 3; m++) {
    const shape = dims.slice(3 * m, 3 * m + 3);
    const floats = new Float32Array(shape[0] * shape[1] * shape[2]);
    for (let i = 0; i < floats.length; i++) floats[i] = HALF[halves[offset + i]];
    offset += floats.length;
    feeds[MAP_INPUTS[m]] = new ort.Tensor("float32", floats, [1, ...shape]);
  }
  if (offset !== halves.length) throw new Error("embedding: size does not match its dims");
  embeddings.clear();
  embeddings.set(url, { feeds });
}

// SAM's resize of the longest side to 1024 (sam/transforms.py: resized_shape); SAM 2 resizes
// to the whole square.
function resizedShape(height, width, square) {
  if (square) return [INPUT_SIZE, INPUT_SIZE];
  const scale = (INPUT_SIZE * 1.0) / Math.max(height, width);
  return [Math.max(1, Math.floor(height * scale + 0.5)), Math.max(1, Math.floor(width * scale + 0.5))];
}

// PyTorch's bilinear source position (align_corners=False) of output `dst` for in/out sizes.
function source(dst, inSize, outSize) {
  const s = (inSize / outSize) * (dst + 0.5) - 0.5;
  const at = Math.max(0, s);
  const i0 = Math.min(Math.floor(at), inSize - 1);
  const i1 = Math.min(i0 + 1, inSize - 1);
  return [i0, i1, at - i0];
}

// Along one axis: the 4 low-res taps (index, weight) of the full-resolution logit at each
// display position, through SAM's upscaling (sam/transforms.py: upscale_logits): low-res 256 ->
// 1024 padded input (bilinear), crop to the resized size, -> original size (bilinear); the
// display samples the original pixel (i + 0.5) * full / display. SAM 2 (`direct`): low-res 256
// -> original size in one bilinear step (upscale_logits_direct), two taps.
function axisTaps(full, resized, display, direct) {
  const index = new Int32Array(display * 4);
  const weight = new Float32Array(display * 4);
  for (let d = 0; d < display; d++) {
    const pixel = Math.min(Math.floor(((d + 0.5) * full) / display), full - 1);
    if (direct) {
      const [m0, m1, b] = source(pixel, LOW_RES, full);
      index.set([m0, m1, m0, m1], d * 4);
      weight.set([1 - b, b, 0, 0], d * 4);
      continue;
    }
    const [k0, k1, a] = source(pixel, resized, full);
    let t = d * 4;
    for (const [k, w] of [[k0, 1 - a], [k1, a]]) {
      const [m0, m1, b] = source(k, LOW_RES, INPUT_SIZE);
      index[t] = m0;
      weight[t++] = w * (1 - b);
      index[t] = m1;
      weight[t++] = w * b;
    }
  }
  return { index, weight };
}

const tapCache = new Map();
function taps(size, display, square) {
  const key = `${size}|${display}|${square}`;
  if (!tapCache.has(key)) {
    const [height, width] = size;
    const [rh, rw] = resizedShape(height, width, square);
    tapCache.clear();
    tapCache.set(key, {
      rows: axisTaps(height, rh, display[0], square),
      cols: axisTaps(width, rw, display[1], square),
    });
  }
  return tapCache.get(key);
}

// One low-res logit map (256x256) -> display-size mask (1 inside).
function displayMask(low, offset, t, display) {
  const [dh, dw] = display;
  const rowsDone = new Float32Array(dh * LOW_RES);
  const ri = t.rows.index;
  const rwgt = t.rows.weight;
  for (let r = 0; r < dh; r++) {
    const out = r * LOW_RES;
    for (let k = 0; k < 4; k++) {
      const w = rwgt[r * 4 + k];
      if (w === 0) continue;
      const src = offset + ri[r * 4 + k] * LOW_RES;
      for (let c = 0; c < LOW_RES; c++) rowsDone[out + c] += w * low[src + c];
    }
  }
  const mask = new Uint8Array(dh * dw);
  const ci = t.cols.index;
  const cwgt = t.cols.weight;
  for (let r = 0; r < dh; r++) {
    const row = r * LOW_RES;
    const out = r * dw;
    for (let c = 0; c < dw; c++) {
      const t4 = c * 4;
      const v =
        cwgt[t4] * rowsDone[row + ci[t4]] +
        cwgt[t4 + 1] * rowsDone[row + ci[t4 + 1]] +
        cwgt[t4 + 2] * rowsDone[row + ci[t4 + 2]] +
        cwgt[t4 + 3] * rowsDone[row + ci[t4 + 3]];
      mask[out + c] = v > 0 ? 1 : 0;
    }
  }
  return mask;
}

// Mark the pixels of `mask` (0/1) within 2 four-neighbour steps of the outside (the image
// border counts as outside) with 2: the server's 2-pixel inner contour of the current mask.
function markContour(mask, height, width) {
  let inner = mask;
  for (let step = 0; step < 2; step++) {
    const next = new Uint8Array(height * width);
    for (let r = 1; r < height - 1; r++) {
      for (let c = 1, i = r * width + 1; c < width - 1; c++, i++) {
        next[i] = inner[i] && inner[i - 1] && inner[i + 1] && inner[i - width] && inner[i + width];
      }
    }
    inner = next;
  }
  for (let i = 0; i < mask.length; i++) if (mask[i] && !inner[i]) mask[i] = 2;
  return mask;
}

async function decode(msg) {
  const emb = embeddings.get(msg.url);
  if (!session || !emb) throw new Error("decoder or embedding not loaded");
  const sam2 = session.inputNames.includes("high_res_feats_0");
  const [height, width] = msg.size;
  const [rh, rw] = resizedShape(height, width, sam2);
  const sx = rw / width;
  const sy = rh / height;
  const coords = [];
  const labels = [];
  for (const [x, y, label] of msg.points) {
    coords.push(x * sx, y * sy);
    labels.push(label);
  }
  if (msg.box) {
    const [x0, y0, x1, y1] = msg.box;
    coords.push(x0 * sx, y0 * sy, x1 * sx, y1 * sy);
    labels.push(...BOX_LABELS);
  }
  if (!msg.box || sam2) {
    coords.push(0, 0);
    labels.push(PADDING_LABEL);
  }
  const n = labels.length;
  const hasMask = msg.maskInput != null;
  const feeds = {
    ...emb.feeds,
    point_coords: new ort.Tensor("float32", Float32Array.from(coords), [1, n, 2]),
    point_labels: new ort.Tensor("float32", Float32Array.from(labels), [1, n]),
    mask_input: new ort.Tensor(
      "float32",
      hasMask ? msg.maskInput : new Float32Array(LOW_RES * LOW_RES),
      [1, 1, LOW_RES, LOW_RES],
    ),
    has_mask_input: new ort.Tensor("float32", Float32Array.from([hasMask ? 1 : 0]), [1]),
  };
  // The graph ends at the low-res logits and scores (ui/browser_decode.py exports it so): the
  // upscaling is done here for the shown pixels only.
  const started = performance.now();
  const out = await session.run(feeds);
  const ran = performance.now();
  const iou = out.iou_predictions.data;
  const low = out.low_res_masks.data;
  // Token 0 is the single-mask answer, tokens 1-3 the candidates; best first, as the engine.
  const tokens = msg.multimask ? [1, 2, 3].sort((a, b) => iou[b] - iou[a]) : [0];
  const t = taps(msg.size, msg.display, sam2);
  const plane = LOW_RES * LOW_RES;
  const lowRes = tokens.map((token) => low.slice(token * plane, (token + 1) * plane));
  const render = (token) => markContour(displayMask(low, token * plane, t, msg.display), ...msg.display);
  // The best mask first, painted at once; the other candidates follow for a quick switch.
  const first = render(tokens[0]);
  const ms = { decoder: ran - started, masks: performance.now() - ran };
  const scores = tokens.map((tk) => iou[tk]);
  const transfer = [first.buffer, ...lowRes.map((l) => l.buffer)];
  self.postMessage({ type: "decoded", id: msg.id, masks: [first], lowRes, scores, ms }, transfer);
  if (tokens.length > 1) {
    const rest = tokens.slice(1).map(render);
    self.postMessage({ type: "more", id: msg.id, masks: rest }, rest.map((m) => m.buffer));
  }
}

self.onmessage = async (event) => {
  const msg = event.data;
  try {
    if (msg.type === "init") {
      await init(msg.decoderUrl, msg.vendorUrl, msg.threads);
      self.postMessage({ type: "ready", decoderUrl: msg.decoderUrl, threads: ort.env.wasm.numThreads });
    } else if (msg.type === "embedding") {
      await loadEmbedding(msg.url, msg.dims);
      self.postMessage({ type: "embedding", url: msg.url });
    } else if (msg.type === "decode") {
      await decode(msg);
    }
  } catch (err) {
    self.postMessage({ type: "failed", id: msg.id, stage: msg.type, error: String(err && err.message || err) });
  }
};
