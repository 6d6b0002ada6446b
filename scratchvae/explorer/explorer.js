// The latent-space explorer: the page's data (posterior means, labels, the decoder's program and
// weights) is the JSON in #explorer-data, written by scratchvae/explorer/page.py. The decoder's
// forward pass below is the one JavaScript copy of the engine's decode (docs/explorer.md).
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("explorer-data").textContent);
  const META = DATA.meta;
  const D = META.latent_dim;
  const [C, H, W] = META.image_shape;
  const TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22", "#17becf"];
  const MARGIN = { left: 58, top: 12, right: 14, bottom: 46 };
  const SIZE = 500;                        // the plot's square, CSS pixels
  const R = META.extent;                   // the plane shows [-R, R] on both axes
  const STEPS = 10;                        // images in the interpolation strip
  const PICK_RADIUS = 6;                   // a click this close (CSS pixels) picks a test point
  const ZOOM = Math.max(2, Math.floor(224 / H));

  // -- embedded arrays ------------------------------------------------------------------------
  function bytesOf(b64) {
    const s = atob(b64);
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  function floatsOf(b64) {                  // little-endian float32, as every browser's platform
    const b = bytesOf(b64);
    return new Float32Array(b.buffer, 0, b.length / 4);
  }
  const MU = floatsOf(DATA.codes);          // (points, D), row-major
  const LABELS = bytesOf(DATA.labels);      // (points,)
  const N = META.points;
  const K = META.class_names.length;
  const WEIGHTS = DATA.decoder ? floatsOf(DATA.decoder.weights) : null;

  // -- the decoder: tensors are {shape, data}; shape (n) or (C, H, W) stored as H, W, C ------
  function channelsLast(flat, shape) {      // C, H, W order -> H, W, C
    const [c, h, w] = shape, out = new Float64Array(flat.length), hw = h * w;
    for (let ch = 0; ch < c; ch++) for (let i = 0; i < hw; i++) out[i * c + ch] = flat[ch * hw + i];
    return out;
  }
  function channelsFirst(t) {               // a tensor's values in C, H, W order
    if (t.shape.length !== 3) return t.data;
    const [c, h, w] = t.shape, out = new Float64Array(t.data.length), hw = h * w;
    for (let ch = 0; ch < c; ch++) for (let i = 0; i < hw; i++) out[ch * hw + i] = t.data[i * c + ch];
    return out;
  }
  function elementwise(t, f) {
    const y = new Float64Array(t.data.length);
    for (let i = 0; i < y.length; i++) y[i] = f(t.data[i]);
    return { shape: t.shape, data: y };
  }
  function bias(y, positions, cout, b) {   // y[p, co] = b[co]
    if (b < 0) return;
    for (let p = 0; p < positions; p++) for (let co = 0; co < cout; co++) y[p * cout + co] = WEIGHTS[b + co];
  }
  // every (pixel p of the strided grid, pixel q of the other grid, kernel tap) that a 2-D
  // convolution connects: q = p * stride - padding + tap, kept when inside (qh, qw)
  function eachTap(op, gh, gw, qh, qw, visit) {   // (gh, gw): the strided grid's size
    const [kh, kw] = op.k, [sh, sw] = op.stride, [ph, pw] = op.padding;
    for (let py = 0; py < gh; py++) for (let px = 0; px < gw; px++) {
      for (let ky = 0; ky < kh; ky++) {
        const qy = py * sh - ph + ky;
        if (qy < 0 || qy >= qh) continue;
        for (let kx = 0; kx < kw; kx++) {
          const qx = px * sw - pw + kx;
          if (qx < 0 || qx >= qw) continue;
          visit(py * gw + px, qy * qw + qx, ky * kw + kx);
        }
      }
    }
  }
  function multiplyAdd(y, yo, x, xo, tap, ci, co, op) {  // y[yo + o] += sum_c x[xo + c] W[tap, c, o]
    const wt = op.w + tap * ci * co;
    for (let c = 0; c < ci; c++) {
      const v = x[xo + c];
      if (v === 0) continue;
      const row = wt + c * co;
      for (let o = 0; o < co; o++) y[yo + o] += v * WEIGHTS[row + o];
    }
  }
  const OPS = {
    dense(op, t) {                          // y = x W + b, W (in, out)
      const x = t.data, n = op.in, m = op.out, y = new Float64Array(m);
      bias(y, 1, m, op.b);
      for (let i = 0; i < n; i++) {
        const v = x[i];
        if (v === 0) continue;
        const row = op.w + i * m;
        for (let o = 0; o < m; o++) y[o] += v * WEIGHTS[row + o];
      }
      return { shape: [m], data: y };
    },
    conv2d(op, t) {                         // cross-correlation; W as (kh, kw, C_in, C_out)
      const [ci, h, w] = t.shape, co = op.cout;
      const [kh, kw] = op.k, [sh, sw] = op.stride, [ph, pw] = op.padding;
      const ho = Math.floor((h + 2 * ph - kh) / sh) + 1, wo = Math.floor((w + 2 * pw - kw) / sw) + 1;
      const y = new Float64Array(ho * wo * co);
      bias(y, ho * wo, co, op.b);
      // each output pixel gathers from the input pixels its kernel covers
      eachTap(op, ho, wo, h, w, (out, inp, tap) => multiplyAdd(y, out * co, t.data, inp * ci, tap, ci, co, op));
      return { shape: [co, ho, wo], data: y };
    },
    conv_transpose2d(op, t) {               // the adjoint: each input pixel scatters a kernel
      const [ci, h, w] = t.shape, co = op.cout;
      const [kh, kw] = op.k, [sh, sw] = op.stride, [ph, pw] = op.padding, [oph, opw] = op.output_padding;
      const ho = (h - 1) * sh - 2 * ph + kh + oph, wo = (w - 1) * sw - 2 * pw + kw + opw;
      const y = new Float64Array(ho * wo * co);
      bias(y, ho * wo, co, op.b);
      // the same pairs of pixels as a convolution from (ho, wo) to (h, w), the roles swapped
      eachTap(op, h, w, ho, wo, (inp, out, tap) => multiplyAdd(y, out * co, t.data, inp * ci, tap, ci, co, op));
      return { shape: [co, ho, wo], data: y };
    },
    affine(op, t) {                         // batch norm, evaluation mode: x * scale + shift per channel
      const c = t.shape[0], y = new Float64Array(t.data.length);
      for (let i = 0; i < y.length; i++) {
        const ch = i % c;
        y[i] = t.data[i] * WEIGHTS[op.scale + ch] + WEIGHTS[op.shift + ch];
      }
      return { shape: t.shape, data: y };
    },
    upsample(op, t) {                       // nearest: each pixel copied into an s x s block
      const [c, h, w] = t.shape, s = op.scale, ho = h * s, wo = w * s, y = new Float64Array(c * ho * wo);
      for (let oy = 0; oy < ho; oy++) for (let ox = 0; ox < wo; ox++) {
        const src = (Math.floor(oy / s) * w + Math.floor(ox / s)) * c, dst = (oy * wo + ox) * c;
        for (let ch = 0; ch < c; ch++) y[dst + ch] = t.data[src + ch];
      }
      return { shape: [c, ho, wo], data: y };
    },
    residual(op, t) {                       // body(x) + shortcut(x), the identity shortcut when null
      const a = run(op.body, t), b = op.shortcut ? run(op.shortcut, t) : t;
      const y = new Float64Array(a.data.length);
      for (let i = 0; i < y.length; i++) y[i] = a.data[i] + b.data[i];
      return { shape: a.shape, data: y };
    },
    reshape(op, t) {
      const flat = channelsFirst(t);
      return { shape: op.shape, data: op.shape.length === 3 ? channelsLast(flat, op.shape) : flat };
    },
    flatten(op, t) { return { shape: [t.data.length], data: channelsFirst(t) }; },
    relu(op, t) { return elementwise(t, (v) => (v > 0 ? v : 0)); },
    leaky_relu(op, t) { return elementwise(t, (v) => (v > 0 ? v : op.slope * v)); },
    tanh(op, t) { return elementwise(t, Math.tanh); },
    sigmoid(op, t) {                        // 1 / (1 + e^-x) without overflow, as the engine's
      return elementwise(t, (v) => { const e = Math.exp(-Math.abs(v)); return v >= 0 ? 1 / (1 + e) : e / (1 + e); });
    },
    first_channels(op, t) {                 // a Gaussian's mean: the first half of the channels
      const [c, h, w] = t.shape, k = op.channels, y = new Float64Array(k * h * w);
      for (let i = 0; i < h * w; i++) for (let ch = 0; ch < k; ch++) y[i * k + ch] = t.data[i * c + ch];
      return { shape: [k, h, w], data: y };
    },
  };
  function run(ops, t) {
    for (const op of ops) t = OPS[op.op](op, t);
    return t;
  }
  function decode(z) {                      // z: D numbers -> the image mean, (C, H, W) stored H, W, C
    return run(DATA.decoder.ops, { shape: [D], data: Float64Array.from(z) });
  }
  function imageData(t) {                   // grey levels round(255 x), x clipped to [0, 1]
    const img = new ImageData(W, H), px = img.data, sym = META.preprocess === "symmetric";
    for (let i = 0; i < H * W; i++) {
      for (let k = 0; k < 3; k++) {
        let v = t.data[i * C + (C === 1 ? 0 : k)];
        if (sym) v = (v + 1) / 2;
        px[i * 4 + k] = Math.round(255 * (v < 0 ? 0 : v > 1 ? 1 : v));
      }
      px[i * 4 + 3] = 255;
    }
    return img;
  }

  // -- state ---------------------------------------------------------------------------------
  const state = {
    dimX: 0, dimY: D > 1 ? 1 : -1,         // the dimensions across and up (-1: up is the class)
    base: new Float64Array(D), baseImage: -1,  // the code the other dimensions take
    lastImage: -1, z: null, picks: [], strip: null,
    showPoints: true, showGrid: false, grid: null,
  };
  const stats = { updates: 0, last: 0, total: 0, max: 0, recent: [] };  // milliseconds per update
  const $ = (id) => document.getElementById(id);
  const SUB = "₀₁₂₃₄₅₆₇₈₉";
  const zName = (d) => "z" + String(d).replace(/[0-9]/g, (c) => SUB[+c]);
  const fmt = (v) => (Math.abs(v) < 0.005 ? 0 : v).toFixed(2);

  // the plane: x in [-R, R]; y in [-R, R], or the class (jittered) when D = 1
  const Y0 = D > 1 ? -R : -0.5, Y1 = D > 1 ? R : K - 0.5;
  const toX = (v) => MARGIN.left + ((v + R) / (2 * R)) * SIZE;
  const toY = (v) => MARGIN.top + ((Y1 - v) / (Y1 - Y0)) * SIZE;
  const fromX = (x) => ((x - MARGIN.left) / SIZE) * 2 * R - R;
  const fromY = (y) => Y1 - ((y - MARGIN.top) / SIZE) * (Y1 - Y0);
  const jitter = new Float64Array(N);
  for (let i = 0, s = 12345; i < N; i++) { s = (s * 1103515245 + 12345) % 2147483648; jitter[i] = (s / 2147483648 - 0.5) * 0.6; }
  const pointX = (i) => MU[i * D + state.dimX];
  const pointY = (i) => (D > 1 ? MU[i * D + state.dimY] : LABELS[i] + jitter[i]);
  const code = (i) => Float64Array.from(MU.subarray(i * D, (i + 1) * D));

  function latentAt(x, y) {                 // the full code at plot position (x, y), CSS pixels
    const z = Float64Array.from(state.base);
    z[state.dimX] = fromX(x);
    if (D > 1) z[state.dimY] = fromY(y);
    return z;
  }

  // -- canvases ------------------------------------------------------------------------------
  const PW = MARGIN.left + SIZE + MARGIN.right, PH = MARGIN.top + SIZE + MARGIN.bottom;
  function sized(canvas, w, h) {
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
    canvas.style.width = w + "px"; canvas.style.height = h + "px";
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    return ctx;
  }
  const plot = $("plot"), overlay = $("overlay");
  const pctx = sized(plot, PW, PH), octx = sized(overlay, PW, PH);
  $("plot-box").style.width = PW + "px"; $("plot-box").style.height = PH + "px";
  Object.assign(overlay.dataset, { left: MARGIN.left, top: MARGIN.top, size: SIZE, extent: R });
  const decoded = $("decoded");
  decoded.width = W; decoded.height = H;
  decoded.style.width = W * ZOOM + "px"; decoded.style.height = H * ZOOM + "px";
  const dctx = decoded.getContext("2d");
  const byClass = Array.from({ length: K }, () => []);
  for (let i = 0; i < N; i++) byClass[LABELS[i]].push(i);

  function ticks(lo, hi) {                  // [value, label] pairs
    const step = hi - lo > 12 ? 2 : hi - lo > 3 ? 1 : 0.5, out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) {
      out.push([v, (Math.abs(v) < 1e-9 ? 0 : v).toFixed(step < 1 ? 1 : 0)]);
    }
    return out;
  }
  function drawAxes() {
    const c = pctx;
    c.strokeStyle = "#333"; c.lineWidth = 1; c.fillStyle = "#222";
    c.strokeRect(MARGIN.left + 0.5, MARGIN.top + 0.5, SIZE, SIZE);
    c.font = "12px sans-serif"; c.textAlign = "center"; c.textBaseline = "top";
    for (const [v, label] of ticks(-R, R)) {
      const x = toX(v);
      c.beginPath(); c.moveTo(x, MARGIN.top + SIZE); c.lineTo(x, MARGIN.top + SIZE + 5); c.stroke();
      c.fillText(label, x, MARGIN.top + SIZE + 7);
    }
    c.textAlign = "right"; c.textBaseline = "middle";
    const yt = D > 1 ? ticks(-R, R) : META.class_names.map((name, k) => [k, name]);
    for (const [v, label] of yt) {
      const y = toY(v);
      c.beginPath(); c.moveTo(MARGIN.left - 5, y); c.lineTo(MARGIN.left, y); c.stroke();
      c.fillText(label, MARGIN.left - 7, y);
    }
    c.font = "15px sans-serif"; c.textAlign = "center"; c.textBaseline = "bottom";
    c.fillText(zName(state.dimX), MARGIN.left + SIZE / 2, PH - 2);
    c.save(); c.translate(14, MARGIN.top + SIZE / 2); c.rotate(-Math.PI / 2);
    c.fillText(D > 1 ? zName(state.dimY) : "class (jittered)", 0, 6); c.restore();
  }
  function gridEdges(g) {                   // cell borders halfway between the grid's values
    const n = g.length, e = [g[0] - (g[1] - g[0]) / 2];
    for (let i = 1; i < n; i++) e.push((g[i - 1] + g[i]) / 2);
    e.push(g[n - 1] + (g[n - 1] - g[n - 2]) / 2);
    return e;
  }
  function drawBase() {
    const c = pctx;
    c.fillStyle = "#fff"; c.fillRect(0, 0, PW, PH);
    c.save();
    c.beginPath(); c.rect(MARGIN.left, MARGIN.top, SIZE, SIZE); c.clip();
    if (state.showGrid && state.grid) {
      const g = META.grid, e = gridEdges(g), n = g.length;
      c.imageSmoothingEnabled = false;
      state.grid.tiles.forEach((tile, k) => {
        const r = Math.floor(k / n), col = k % n;
        const x0 = toX(e[col]), x1 = toX(e[col + 1]), y0 = toY(e[r + 1]), y1 = toY(e[r]);
        c.drawImage(tile, x0, y0, x1 - x0, y1 - y0);
      });
    }
    if (state.showPoints) {
      c.globalAlpha = state.showGrid ? 0.8 : 0.6;
      byClass.forEach((idx, k) => {
        c.fillStyle = TAB10[k % 10];
        for (const i of idx) c.fillRect(toX(pointX(i)) - 1, toY(pointY(i)) - 1, 2.2, 2.2);
      });
      c.globalAlpha = 1;
    }
    c.restore();
    drawAxes();
  }
  function drawOverlay() {
    const c = octx;
    c.clearRect(0, 0, PW, PH);
    const at = (z) => [toX(z[state.dimX]), toY(D > 1 ? z[state.dimY] : 0)];
    const pickXY = (p) => (p.index >= 0 ? [toX(pointX(p.index)), toY(pointY(p.index))] : at(p.z));
    if (state.picks.length === 2) {
      const [a, b] = state.picks.map(pickXY);
      c.strokeStyle = "#000"; c.lineWidth = 2;
      c.beginPath(); c.moveTo(a[0], a[1]); c.lineTo(b[0], b[1]); c.stroke();
    }
    state.picks.forEach((p, k) => {
      const [x, y] = pickXY(p);
      c.strokeStyle = "#000"; c.lineWidth = 2;
      c.beginPath(); c.arc(x, y, 6, 0, 2 * Math.PI); c.stroke();
      c.fillStyle = "#000"; c.font = "bold 14px sans-serif"; c.textAlign = "left"; c.textBaseline = "bottom";
      c.fillText(k === 0 ? "a" : "b", x + 7, y - 5);
    });
    if (state.z) {
      const [x, y] = [toX(state.z[state.dimX]), state.pointerY];
      c.strokeStyle = "#d00"; c.lineWidth = 1.5;
      c.beginPath(); c.moveTo(x - 8, y); c.lineTo(x + 8, y); c.moveTo(x, y - 8); c.lineTo(x, y + 8); c.stroke();
    }
  }

  // -- what the page says --------------------------------------------------------------------
  function describeBase() {
    if (state.baseImage < 0) return "0";
    const i = state.baseImage;
    return `the code μ of test image #${i} (${META.class_names[LABELS[i]]})`;
  }
  function describeSlice() {
    const pts = N < META.total ? `the first ${N.toLocaleString("en")} of ${META.total.toLocaleString("en")} test images`
                               : `the ${N.toLocaleString("en")} test images`;
    let s;
    if (D === 1) s = `z has 1 dimension, across; up is the class, jittered. The points are the posterior means μ(x) of ${pts}.`;
    else if (D === 2) s = `z has 2 dimensions: this plane is the whole latent space. The points are the posterior means μ(x) of ${pts}, coloured by class.`;
    else s = `Showing ${zName(state.dimX)} (across) and ${zName(state.dimY)} (up), 2 of the ${D} latent dimensions; ` +
             `the other ${D - 2} are fixed at ${describeBase()}. The points are the posterior means μ(x) of ${pts}, ` +
             "projected onto these two dimensions (their other coordinates are not those of the plane).";
    $("slice-note").textContent = s;
  }
  function describeImage(p) {
    if (p.index >= 0) return `test image #${p.index} (${META.class_names[LABELS[p.index]]})`;
    return D <= 2 ? `z = (${Array.from(p.z, fmt).join(", ")})` : `the point (${fmt(p.z[state.dimX])}, ${fmt(p.z[state.dimY])}) of the plane`;
  }

  // -- live decoding -------------------------------------------------------------------------
  let frame = 0, pending = null;
  function update() {
    frame = 0;
    const [x, y] = pending;
    if (x < MARGIN.left || x > MARGIN.left + SIZE || y < MARGIN.top || y > MARGIN.top + SIZE) return;
    const z = latentAt(x, y);
    state.z = z; state.pointerY = y;
    const shown = D <= 3 ? Array.from(z, fmt).join(", ") : `${zName(state.dimX)} = ${fmt(z[state.dimX])}, ${zName(state.dimY)} = ${fmt(z[state.dimY])}`;
    $("readout").textContent = D <= 3 ? `z = (${shown})` : shown;
    if (WEIGHTS) {
      const t0 = performance.now();
      dctx.putImageData(imageData(decode(z)), 0, 0);
      const dt = performance.now() - t0;
      stats.updates += 1; stats.last = dt; stats.total += dt; stats.max = Math.max(stats.max, dt);
      stats.recent.push(dt);
      if (stats.recent.length > 1000) stats.recent.shift();
      $("timing").textContent = `decode + draw ${dt.toFixed(1)} ms (mean ${(stats.total / stats.updates).toFixed(1)} ms over ${stats.updates})`;
    }
    drawOverlay();
  }
  function position(e) {
    const r = overlay.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  }
  overlay.addEventListener("pointermove", (e) => {
    pending = position(e);
    if (!frame) frame = requestAnimationFrame(update);
  });
  function nearestPoint(x, y) {
    let best = -1, bestD = PICK_RADIUS * PICK_RADIUS;
    for (let i = 0; i < N; i++) {
      const dx = toX(pointX(i)) - x, dy = toY(pointY(i)) - y, d = dx * dx + dy * dy;
      if (d <= bestD) { best = i; bestD = d; }
    }
    return best;
  }
  overlay.addEventListener("click", (e) => {
    const [x, y] = position(e);
    const i = state.showPoints ? nearestPoint(x, y) : -1;
    if (i >= 0) {
      state.lastImage = i;
      $("base-image").disabled = D <= 2;
      $("base-image").textContent = `others at the code of test image #${i} (${META.class_names[LABELS[i]]})`;
    }
    if (state.picks.length === 2) state.picks = [];
    state.picks.push(i >= 0 ? { index: i, z: code(i) } : { index: -1, z: latentAt(x, y) });
    if (state.picks.length === 2) drawStrip();
    else $("strip-note").textContent = `a = ${describeImage(state.picks[0])}; click a second point.`;
    drawOverlay();
  });

  function drawStrip() {
    const [a, b] = state.picks, strip = $("strip"), gap = 4, s = Math.max(2, Math.floor(84 / H));
    strip.width = STEPS * (W + gap) - gap; strip.height = H;
    strip.style.width = strip.width * s + "px"; strip.style.height = H * s + "px";
    strip.style.display = "block";
    const c = strip.getContext("2d");
    c.fillStyle = "#fff"; c.fillRect(0, 0, strip.width, strip.height);
    if (!WEIGHTS) return;
    for (let j = 0; j < STEPS; j++) {
      const t = j / (STEPS - 1), z = a.z.map((v, d) => (1 - t) * v + t * b.z[d]);
      c.putImageData(imageData(decode(z)), j * (W + gap), 0);
    }
    const length = Math.hypot(...a.z.map((v, d) => b.z[d] - v));
    state.strip = { a: a.index, b: b.index, steps: STEPS };
    $("strip-note").textContent = `From a = ${describeImage(a)} to b = ${describeImage(b)}: ` +
      `${STEPS} codes evenly spaced on the straight line between them (length ${fmt(length)}` +
      `${D > 2 ? `, in all ${D} dimensions` : ""}); t = 0 is decode(z_a), t = 1 is decode(z_b).`;
  }

  // -- the decoded grid layer ----------------------------------------------------------------
  function startGrid() {
    state.grid = { tiles: [], next: 0 };
    requestAnimationFrame(gridStep);
  }
  function gridStep() {
    const job = state.grid, g = META.grid, n = g.length;
    if (!job || !state.showGrid || job !== state.grid) return;
    const t0 = performance.now();
    while (job.next < n * n && performance.now() - t0 < 25) {  // a slice per frame keeps the page live
      const k = job.next++, z = Float64Array.from(state.base);
      z[state.dimX] = g[k % n]; z[state.dimY] = g[Math.floor(k / n)];
      const tile = document.createElement("canvas");
      tile.width = W; tile.height = H;
      tile.getContext("2d").putImageData(imageData(decode(z)), 0, 0);
      job.tiles.push(tile);
    }
    job.done = job.next === n * n;
    drawBase();
    if (!job.done) requestAnimationFrame(gridStep);
  }

  // -- controls ------------------------------------------------------------------------------
  function sliceChanged() {
    describeSlice();
    if (state.showGrid) startGrid(); else state.grid = null;
    drawBase(); drawOverlay();
  }
  if (D > 2) {
    for (const sel of [$("dim-x"), $("dim-y")]) {
      for (let d = 0; d < D; d++) sel.add(new Option(zName(d), d));
    }
    $("dim-x").value = 0; $("dim-y").value = 1;
    const pick = (which, other) => (e) => {
      const d = +e.target.value;
      if (d === state[other]) { state[other] = state[which]; $(other === "dimX" ? "dim-x" : "dim-y").value = state[which]; }
      state[which] = d;
      sliceChanged();
    };
    $("dim-x").addEventListener("change", pick("dimX", "dimY"));
    $("dim-y").addEventListener("change", pick("dimY", "dimX"));
    $("base-zero").addEventListener("click", () => { state.base = new Float64Array(D); state.baseImage = -1; sliceChanged(); });
    $("base-image").addEventListener("click", () => {
      state.base = code(state.lastImage); state.baseImage = state.lastImage; sliceChanged();
    });
  } else {
    $("dims").style.display = "none"; $("base").style.display = "none";
  }
  $("show-points").addEventListener("change", (e) => { state.showPoints = e.target.checked; drawBase(); });
  const gridBox = $("show-grid");
  if (META.grid && WEIGHTS && D > 1) {
    const n = META.grid.length;
    $("grid-label").textContent = `decoded ${n} × ${n} grid at N(0, 1) quantiles ${fmt(META.grid[0])} … ${fmt(META.grid[n - 1])}` +
      (D > 2 ? " (the other dimensions as above)" : "");
    gridBox.addEventListener("change", (e) => { state.showGrid = e.target.checked; sliceChanged(); });
  } else {
    gridBox.disabled = true;
    $("grid-label").textContent = "decoded grid (not available for this model)";
  }

  // -- the page's text -------------------------------------------------------------------------
  $("title").textContent = META.title;
  META.class_names.forEach((name, k) => {
    const li = document.createElement("li"), sw = document.createElement("span");
    sw.style.background = TAB10[k % 10];
    li.append(sw, `${name} (${byClass[k].length.toLocaleString("en")})`);
    $("legend").append(li);
  });
  if (WEIGHTS) {
    $("about").textContent = `The image under the pointer is decode(z), computed in this page by a JavaScript copy of ` +
      `the ${META.model} decoder (${DATA.decoder.parameters.toLocaleString("en")} float32 parameters embedded, ` +
      `${(DATA.decoder.macs / 1e6).toFixed(1)} million multiply-adds per image); it agrees with scratchvae's ` +
      "decode to within one grey level (docs/explorer.md). Grey level = 255 × the image mean" +
      (META.preprocess === "symmetric" ? " mapped from [−1, 1] to [0, 1]." : ".");
  } else {
    $("decoded").style.display = "none"; $("decoded-title").textContent = "No live decoding for this model";
    $("readout").textContent = "";
    $("strip-note").textContent = "Interpolation needs the decoder, which this page does not hold.";
    $("about").textContent = `What this page can show for ${META.model} (z has ${D} dimensions): where the test ` +
      "images' posterior means lie in any two latent dimensions you choose, coloured by class, with the code " +
      `under the pointer. It cannot decode images: ${META.decoder_note}. The model's reconstructions and ` +
      "samples are in the PNG figures of its run.";
  }
  describeSlice();
  drawBase();
  window.explorer = {                       // for tests and the curious: the page's own functions
    decode: (z) => { const t = decode(z); return { shape: t.shape, data: Array.from(t.data) }; },
    latentAt: (x, y) => Array.from(latentAt(x, y)),
    state, stats, live: !!WEIGHTS,
  };
})();
