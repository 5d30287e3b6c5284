/* aelab explorer page: drawing, code editing, maps, VAE grids and weights, on AelabEngine. */
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("aelab-data").textContent);
  const [C, H, W] = D.input_shape, N = C * H * W;
  const IMAGES = AelabEngine.bytes(D.images);
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const $ = id => document.getElementById(id);
  const el = (tag, attrs = {}, kids = []) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const k of kids) e.appendChild(k);
    return e;
  };

  // -- language --------------------------------------------------------------
  let lang = "en";
  try {
    const saved = localStorage.getItem("aelab-lang");
    // the first of English or Japanese among the browser's preferred languages (as the run report picks)
    const first = (navigator.languages || [navigator.language || "en"]).find(l => /^(en|ja)\b/i.test(l)) || "en";
    lang = saved === "en" || saved === "ja" ? saved : (/^ja/i.test(first) ? "ja" : "en");
  } catch (e) {
    lang = /^ja/i.test(navigator.language || "") ? "ja" : "en";
  }
  const texts = [];  // [element, key, vars] re-rendered on a language switch
  function t(key, vars) {
    let s = (D.strings[lang] && D.strings[lang][key]) || D.strings.en[key] || key;
    for (const [k, v] of Object.entries(vars || {})) s = s.split("{" + k + "}").join(String(v));
    return s;
  }
  function tr(e, key, vars) { texts.push([e, key, vars]); e.textContent = t(key, typeof vars === "function" ? vars() : vars); return e; }
  function applyLang() {
    document.documentElement.lang = lang;
    document.querySelectorAll("[data-t]").forEach(e => { e.textContent = t(e.dataset.t); });
    for (const [e, key, vars] of texts) e.textContent = t(key, typeof vars === "function" ? vars() : vars);
    $("lang").textContent = t("lang");
    for (const rv of RUNS) if (rv.net) showScore(rv);
  }

  // -- images ------------------------------------------------------------------
  function image(i) {
    const x = new Float32Array(N), o = i * N;
    for (let k = 0; k < N; k++) x[k] = IMAGES[o + k] / 255;
    return x;
  }
  const clamp01 = v => (v < 0 ? 0 : v > 1 ? 1 : v);
  function paint(canvas, x, shape) {
    const [c, h, w] = shape || D.input_shape;
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    const ctx = canvas.getContext("2d"), im = ctx.createImageData(w, h), px = im.data, hw = h * w;
    for (let p = 0; p < hw; p++) {
      const r = clamp01(x[p]), g = c === 3 ? clamp01(x[hw + p]) : r, b = c === 3 ? clamp01(x[2 * hw + p]) : r;
      px[4 * p] = Math.round(r * 255); px[4 * p + 1] = Math.round(g * 255); px[4 * p + 2] = Math.round(b * 255); px[4 * p + 3] = 255;
    }
    ctx.putImageData(im, 0, 0);
    return canvas;
  }
  const thumb = (x, cls) => paint(el("canvas", cls ? { class: cls } : {}), x);

  // -- noise (the run's corruption, amount from the slider) ------------------------
  const NOISE = (D.runs.find(r => r.noise && r.noise.length) || {}).noise || [];
  let noiseAmount = NOISE.length ? NOISE[0].amount : 0, noiseSeed = 1;
  function rng(seed) {  // mulberry32
    let a = seed >>> 0;
    return () => { a = (a + 0x6d2b79f5) >>> 0; let t = a; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
  }
  function noisy(x) {
    if (!NOISE.length || noiseAmount === 0) return x;
    const r = rng(noiseSeed), y = Float32Array.from(x);
    NOISE.forEach((nz, j) => {
      const amount = j === 0 ? noiseAmount : nz.amount;
      for (let i = 0; i < N; i++) {
        if (nz.kind === "gaussian") {
          const g = Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
          y[i] = nz.clip ? clamp01(y[i] + amount * g) : y[i] + amount * g;
        } else if (nz.kind === "masking") {
          if (r() < amount) y[i] = 0;
        } else {
          const u = r();
          if (u < amount / 2) y[i] = 0; else if (u < amount) y[i] = 1;
        }
      }
    });
    return y;
  }

  // -- runs ----------------------------------------------------------------------
  const RUNS = D.runs.map((d, r) => ({ d, r, net: d.unsupported ? null : new AelabEngine.Net(d) }));
  let input = new Float32Array(N), modelInput = input;

  function scoreOf(rv, x) {
    const net = rv.net, d = rv.d, m = d.score_metric;
    if (m === "nelbo") {
      const { mu, logvar } = net.stats(x), draws = 4, R = rng(12345);
      let kl = 0;
      for (let j = 0; j < mu.length; j++) kl += 0.5 * (mu[j] * mu[j] + Math.exp(logvar[j]) - 1 - logvar[j]);
      let rec = 0;
      for (let s = 0; s < draws; s++) {
        const z = new Float32Array(mu.length);
        for (let j = 0; j < mu.length; j++) z[j] = mu[j] + Math.exp(0.5 * logvar[j]) * Math.sqrt(-2 * Math.log(1 - R())) * Math.cos(2 * Math.PI * R());
        const l = net.decodeLogits(z);
        if (d.likelihood === "bernoulli") for (let i = 0; i < N; i++) rec += Math.max(l[i], 0) - l[i] * x[i] + Math.log1p(Math.exp(-Math.abs(l[i])));
        else {
          const mean = l ? l.map(v => 1 / (1 + Math.exp(-v))) : net.decode(z), ls = d.log_sigma, iv = Math.exp(-2 * ls);
          for (let i = 0; i < N; i++) rec += 0.5 * (x[i] - mean[i]) ** 2 * iv + ls + 0.9189385332046727;
        }
      }
      return rec / draws + kl;
    }
    const z = net.encode(x), l = net.decodeLogits(z);
    let s = 0;
    if (m === "bce") {
      if (l) for (let i = 0; i < N; i++) s += Math.max(l[i], 0) - l[i] * x[i] + Math.log1p(Math.exp(-Math.abs(l[i])));
      else { const p = net.decode(z); for (let i = 0; i < N; i++) { const q = Math.min(1 - 1e-7, Math.max(1e-7, p[i])); s -= x[i] * Math.log(q) + (1 - x[i]) * Math.log(1 - q); } }
    } else {
      const p = net.decode(z);
      for (let i = 0; i < N; i++) s += (p[i] - x[i]) ** 2;
    }
    return s / N;
  }
  function showScore(rv) {
    const d = rv.d, box = rv.ui.score, s = rv.score;
    if (s === undefined) return;
    box.textContent = "";
    box.appendChild(el("span", { text: t("score", { metric: d.score_metric }) + ": " }));
    box.appendChild(el("b", { text: s.toPrecision(4) }));
    box.appendChild(document.createTextNode(" · "));
    if (d.anomaly) {
      const out = s > d.anomaly.threshold;
      box.appendChild(el("span", { text: t("threshold", { t: d.anomaly.threshold.toPrecision(4), src: "q=" + d.anomaly.quantile }) + " → " }));
      box.appendChild(el("span", { class: out ? "bad" : "good", text: t(out ? "outlier" : "inlier") }));
    } else box.appendChild(el("span", { class: "small", text: t("no_threshold", { run: d.path }) }));
  }

  // -- the code editor -------------------------------------------------------------
  function codeEditor(rv) {
    const d = rv.d, shp = d.code_shape, box = el("div");
    const n = shp.reduce((a, b) => a * b, 1);
    rv.sel = 0;
    const slider = el("input", { type: "range", step: "any" }), out = el("output");
    const where = el("span");
    slider.addEventListener("input", () => { rv.code[rv.sel] = parseFloat(slider.value); decodeCode(rv); });
    const setSel = i => {
      rv.sel = i; slider.min = d.code_lo[i]; slider.max = d.code_hi[i]; slider.step = (d.code_hi[i] - d.code_lo[i]) / 400;
      drawCode(rv);
    };
    rv.setSel = setSel;
    const reset = el("button", { type: "button" });
    tr(reset, "reset");
    reset.addEventListener("click", () => { rv.code = Float32Array.from(rv.encoded); decodeCode(rv); });
    if (shp.length === 1) {
      box.appendChild(tr(el("p", { class: "help small" }), "code_dense_help", { n }));
      const bars = el("canvas", { class: "codebars" });
      box.appendChild(bars);
      rv.ui.bars = bars;
      let dragging = false;
      const setFrom = e => {
        const rc = bars.getBoundingClientRect(), i = Math.min(n - 1, Math.max(0, Math.floor((e.clientX - rc.left) / rc.width * n)));
        const f = 1 - (e.clientY - rc.top) / rc.height;
        rv.code[i] = d.code_lo[i] + clamp01(f) * (d.code_hi[i] - d.code_lo[i]);
        rv.sel = i; setSel(i); decodeCode(rv);
      };
      bars.addEventListener("pointerdown", e => { dragging = true; bars.setPointerCapture(e.pointerId); setFrom(e); });
      bars.addEventListener("pointermove", e => { if (dragging) setFrom(e); });
      bars.addEventListener("pointerup", () => { dragging = false; });
      const pick = el("div", { class: "pick" }, [where, slider, out, reset]);
      box.appendChild(pick);
      if (n <= 1024) {
        const grid = el("div", { class: "sliders" });
        rv.ui.sliders = [];
        for (let i = 0; i < n; i++) {
          const s = el("input", { type: "range", min: d.code_lo[i], max: d.code_hi[i], step: (d.code_hi[i] - d.code_lo[i]) / 400, "data-i": i, "aria-label": "z" + i });
          const o = el("output");
          s.addEventListener("input", () => { rv.code[i] = parseFloat(s.value); rv.sel = i; setSel(i); decodeCode(rv); });
          grid.appendChild(el("label", {}, [el("span", { text: "z" + i }), s, o]));
          rv.ui.sliders.push([s, o]);
        }
        box.appendChild(grid);
      }
    } else {
      const [cc, ch, cw] = shp;
      box.appendChild(tr(el("p", { class: "help small" }), "code_conv_help", { c: cc, h: ch, w: cw }));
      const maps = el("div", { class: "convmaps" });
      rv.ui.maps = [];
      for (let c = 0; c < cc; c++) {
        const cv = el("canvas", { width: cw * 8, height: ch * 8, title: "channel " + c });
        cv.addEventListener("pointerdown", e => {
          const rc = cv.getBoundingClientRect();
          const x = Math.min(cw - 1, Math.floor((e.clientX - rc.left) / rc.width * cw)), y = Math.min(ch - 1, Math.floor((e.clientY - rc.top) / rc.height * ch));
          setSel((c * ch + y) * cw + x);
        });
        maps.appendChild(cv);
        rv.ui.maps.push(cv);
      }
      box.appendChild(maps);
      const chSel = el("select", { "aria-label": "channel" });
      for (let c = 0; c < cc; c++) chSel.appendChild(el("option", { value: c, text: String(c) }));
      const ySel = el("input", { type: "number", min: 0, max: ch - 1, value: 0, style: "width:3.5em", "aria-label": "row" });
      const xSel = el("input", { type: "number", min: 0, max: cw - 1, value: 0, style: "width:3.5em", "aria-label": "column" });
      const fromPick = () => setSel((+chSel.value * ch + Math.min(ch - 1, Math.max(0, +ySel.value))) * cw + Math.min(cw - 1, Math.max(0, +xSel.value)));
      [chSel, ySel, xSel].forEach(e => e.addEventListener("change", fromPick));
      rv.ui.pick = [chSel, ySel, xSel];
      box.appendChild(el("div", { class: "pick" }, [tr(el("span"), "channel"), chSel, tr(el("span"), "position"), ySel, xSel]));
      box.appendChild(el("div", { class: "pick" }, [where, slider, out, reset]));
    }
    rv.ui.slider = slider; rv.ui.sliderOut = out; rv.ui.where = where;
    setTimeout(() => setSel(0), 0);
    return box;
  }

  function drawCode(rv) {
    const d = rv.d, shp = d.code_shape, code = rv.code, enc = rv.encoded;
    if (!code) return;
    const i = rv.sel;
    rv.ui.slider.min = d.code_lo[i]; rv.ui.slider.max = d.code_hi[i];
    rv.ui.slider.value = code[i];
    rv.ui.sliderOut.textContent = code[i].toFixed(3);
    if (shp.length === 1) {
      rv.ui.where.textContent = "z" + i;
      const cv = rv.ui.bars, dpr = window.devicePixelRatio || 1, wpx = Math.max(200, cv.clientWidth * dpr), hpx = 110 * dpr;
      if (cv.width !== wpx) { cv.width = wpx; cv.height = hpx; }
      const ctx = cv.getContext("2d"), n = code.length, bw = wpx / n;
      ctx.clearRect(0, 0, wpx, hpx);
      for (let k = 0; k < n; k++) {
        const f = clamp01((code[k] - d.code_lo[k]) / (d.code_hi[k] - d.code_lo[k]));
        const f0 = clamp01((0 - d.code_lo[k]) / (d.code_hi[k] - d.code_lo[k]));
        ctx.fillStyle = k === i ? "#d62728" : "#2458a6";
        const top = hpx * (1 - Math.max(f, f0)), bot = hpx * (1 - Math.min(f, f0));
        ctx.fillRect(k * bw, top, Math.max(1, bw - (bw > 3 ? 1 : 0)), Math.max(1, bot - top));
        if (enc && enc[k] !== code[k]) {
          const fe = clamp01((enc[k] - d.code_lo[k]) / (d.code_hi[k] - d.code_lo[k]));
          ctx.fillStyle = "#ff7f0e"; ctx.fillRect(k * bw, hpx * (1 - fe) - 1, Math.max(2, bw), 2);
        }
      }
      if (rv.ui.sliders) rv.ui.sliders.forEach(([s, o], k) => { s.value = code[k]; o.textContent = code[k].toFixed(2); });
    } else {
      const [cc, ch, cw] = shp;
      let lo = Infinity, hi = -Infinity;
      for (let k = 0; k < d.code_lo.length; k++) { lo = Math.min(lo, d.code_lo[k]); hi = Math.max(hi, d.code_hi[k]); }
      const c0 = Math.floor(i / (ch * cw)), y0 = Math.floor(i / cw) % ch, x0 = i % cw;
      rv.ui.where.textContent = `[${c0}, ${y0}, ${x0}]`;
      const [chSel, ySel, xSel] = rv.ui.pick;
      chSel.value = c0; ySel.value = y0; xSel.value = x0;
      rv.ui.maps.forEach((cv, c) => {
        const ctx = cv.getContext("2d");
        for (let y = 0; y < ch; y++) for (let x = 0; x < cw; x++) {
          const v = Math.round(255 * clamp01((code[(c * ch + y) * cw + x] - lo) / (hi - lo)));
          ctx.fillStyle = `rgb(${v},${v},${v})`; ctx.fillRect(x * 8, y * 8, 8, 8);
        }
        cv.classList.toggle("sel", c === c0);
        if (c === c0) { ctx.strokeStyle = "#d62728"; ctx.lineWidth = 2; ctx.strokeRect(x0 * 8 + 1, y0 * 8 + 1, 6, 6); }
      });
    }
  }

  function decodeCode(rv) {
    rv.recon = rv.net.decode(rv.code);
    paint(rv.ui.recon, rv.recon);
    drawCode(rv);
    scheduleVae(rv);
    if (rv.redrawMap) rv.redrawMap();
  }

  // -- update: input -> every run ----------------------------------------------------
  function update() {
    modelInput = noisy(input);
    paint($("pad"), input);
    for (const rv of RUNS) {
      if (!rv.net) continue;
      if (rv.ui.noisy) paint(rv.ui.noisy, modelInput);
      rv.encoded = rv.net.encode(modelInput);
      rv.code = Float32Array.from(rv.encoded);
      rv.score = scoreOf(rv, modelInput);
      showScore(rv);
      decodeCode(rv);
    }
  }
  function setInput(x) { input = Float32Array.from(x); update(); }

  // -- run cards ------------------------------------------------------------------------
  function runCard(rv) {
    const d = rv.d, card = el("div", { class: "card" });
    rv.ui = {};
    card.appendChild(el("h3", {}, [document.createTextNode(d.name + " "), el("span", { text: d.model + (d.code_shape ? " · " + d.code_shape.join("×") : "") })]));
    const m = d.metrics, facts = Object.entries(m).filter(([k]) => ["bce", "mse", "psnr", "nelbo", "accuracy"].includes(k))
      .map(([k, v]) => `${k} ${Number(v).toPrecision(4)}`).join(" · ");
    const fe = el("div", { class: "facts" });
    if (facts) fe.appendChild(tr(el("span"), "test_metrics")), fe.appendChild(document.createTextNode(": " + facts));
    card.appendChild(fe);
    if (!rv.net) {
      card.appendChild(tr(el("p", { class: "unsupported" }), "unsupported", { reason: d.unsupported }));
      return card;
    }
    const pics = el("div", { class: "pics" });
    if (NOISE.length) {
      rv.ui.noisy = el("canvas");
      pics.appendChild(el("div", {}, [tr(el("div", { class: "cap" }), "model_input"), rv.ui.noisy]));
    }
    rv.ui.recon = el("canvas", { class: "recon" });
    pics.appendChild(el("div", {}, [tr(el("div", { class: "cap" }), "reconstruction"), rv.ui.recon]));
    card.appendChild(pics);
    rv.ui.score = el("div", { class: "score" });
    card.appendChild(rv.ui.score);
    rv.ui.timing = el("div", { class: "facts" });
    card.appendChild(rv.ui.timing);
    card.appendChild(tr(el("div", { class: "cap" }), "code"));
    card.appendChild(codeEditor(rv));
    return card;
  }

  // -- drawing pad ------------------------------------------------------------------------
  function setupPad() {
    const pad = $("pad");
    let last = null, down = false;
    const colour = () => {
      const h = $("colour").value;
      return [parseInt(h.slice(1, 3), 16) / 255, parseInt(h.slice(3, 5), 16) / 255, parseInt(h.slice(5, 7), 16) / 255];
    };
    const dab = (px, py) => {
      const r = parseFloat($("brush").value), erase = $("eraser").checked, col = colour(), hw = H * W;
      for (let y = Math.max(0, Math.floor(py - r - 1)); y <= Math.min(H - 1, Math.ceil(py + r + 1)); y++) {
        for (let x = Math.max(0, Math.floor(px - r - 1)); x <= Math.min(W - 1, Math.ceil(px + r + 1)); x++) {
          const dd = Math.hypot(x + 0.5 - px, y + 0.5 - py), a = clamp01(r - dd + 0.5);
          if (a <= 0) continue;
          const p = y * W + x;
          for (let c = 0; c < C; c++) {
            const target = erase ? 0 : (C === 3 ? col[c] : 1);
            const v = input[c * hw + p];
            input[c * hw + p] = C === 1 && !erase ? Math.max(v, a) : v * (1 - a) + target * a;
          }
        }
      }
    };
    const at = e => { const rc = pad.getBoundingClientRect(); return [(e.clientX - rc.left) / rc.width * W, (e.clientY - rc.top) / rc.height * H]; };
    const stroke = e => {
      const p = at(e);
      if (last) {
        const steps = Math.max(1, Math.ceil(Math.hypot(p[0] - last[0], p[1] - last[1]) / 0.25));
        for (let s = 1; s <= steps; s++) dab(last[0] + (p[0] - last[0]) * s / steps, last[1] + (p[1] - last[1]) * s / steps);
      } else dab(p[0], p[1]);
      last = p;
      update();
    };
    pad.addEventListener("pointerdown", e => { down = true; last = null; pad.setPointerCapture(e.pointerId); stroke(e); e.preventDefault(); });
    pad.addEventListener("pointermove", e => { if (down) stroke(e); });
    const up = () => { down = false; last = null; };
    pad.addEventListener("pointerup", up);
    pad.addEventListener("pointercancel", up);
    $("clear").addEventListener("click", () => setInput(new Float32Array(N)));
    document.querySelectorAll(".rgb-only").forEach(e => { e.hidden = C !== 3; });
    if (NOISE.length) {
      $("noise-box").hidden = false;
      const s = $("noise"), nz = NOISE[0];
      s.max = nz.kind === "gaussian" ? Math.max(1, 2 * nz.amount) : 1;
      s.value = noiseAmount;
      $("noise-val").textContent = noiseAmount.toFixed(2);
      tr($("noise-help"), "noise_help", { kind: nz.kind, amount: nz.amount });
      s.addEventListener("input", () => { noiseAmount = parseFloat(s.value); $("noise-val").textContent = noiseAmount.toFixed(2); update(); });
      $("renoise").addEventListener("click", () => { noiseSeed += 1; update(); });
    }
    const strip = $("strip");
    for (const i of D.strip) {
      const cv = thumb(image(i));
      cv.title = D.labels ? (D.classes ? D.classes[D.labels[i]] : String(D.labels[i])) : "#" + i;
      cv.dataset.i = i;
      cv.addEventListener("click", () => setInput(image(i)));
      strip.appendChild(cv);
    }
  }

  // -- the map ------------------------------------------------------------------------------
  function mapView(rv) {
    const d = rv.d, box = el("div", { class: "mapbox" });
    box.appendChild(el("h3", { text: d.name }));
    if (!rv.net) { box.appendChild(tr(el("p", { class: "unsupported" }), "unsupported", { reason: d.unsupported })); return box; }
    const methods = Object.keys(d.maps);
    const tools = el("div", { class: "maptools" }), sel = el("select", { "aria-label": "projection" }), note = el("span", { class: "help small" });
    methods.forEach(m => sel.appendChild(el("option", { value: m, text: m === "tsne" ? "t-SNE" : m.toUpperCase() })));
    tools.appendChild(sel); tools.appendChild(note);
    box.appendChild(tools);
    const cv = el("canvas", { class: "map" }), tip = el("div", { class: "tip" });
    const left = el("div", { class: "mapcol" }, [cv]), side = el("div", { class: "side" });
    box.appendChild(el("div", { class: "row" }, [left, side])); box.appendChild(tip);
    if (D.labels) {
      const leg = el("div", { class: "legend" });
      const seen = [...new Set(D.labels)].sort((a, b) => a - b);
      seen.forEach(k => leg.appendChild(el("span", {}, [el("i", { style: "background:" + PALETTE[k % 10] }), document.createTextNode(D.classes ? D.classes[k] : String(k))])));
      left.appendChild(leg);
    }
    const pathCap = el("div", { class: "cap" }), path = el("div", { class: "path" });
    tr(pathCap, "pick_first");
    side.appendChild(pathCap); side.appendChild(path);
    const state = { method: methods[0], picked: [], px: null };
    rv.map = state;
    const SIZE = 560;
    function layout() {
      const pts = d.maps[state.method].points;
      let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
      for (const [x, y] of pts) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
      const s = (SIZE - 24) / Math.max(x1 - x0, y1 - y0, 1e-9);
      const ox = (SIZE - s * (x1 - x0)) / 2, oy = (SIZE - s * (y1 - y0)) / 2;
      state.toPx = (x, y) => [ox + (x - x0) * s, SIZE - (oy + (y - y0) * s)];
      state.px = pts.map(([x, y]) => state.toPx(x, y));
      note.textContent = d.maps[state.method].note;
    }
    function draw() {
      const dpr = window.devicePixelRatio || 1;
      cv.width = SIZE * dpr; cv.height = SIZE * dpr;
      const ctx = cv.getContext("2d");
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, SIZE, SIZE);
      ctx.globalAlpha = 0.75;
      state.px.forEach(([x, y], i) => {
        ctx.fillStyle = D.labels ? PALETTE[D.labels[i] % 10] : "#2458a6";
        ctx.beginPath(); ctx.arc(x, y, 2.6, 0, 2 * Math.PI); ctx.fill();
      });
      ctx.globalAlpha = 1;
      state.picked.forEach((i, k) => {
        const [x, y] = state.px[i];
        ctx.strokeStyle = "#000"; ctx.lineWidth = 2; ctx.beginPath(); ctx.arc(x, y, 7, 0, 2 * Math.PI); ctx.stroke();
        ctx.fillStyle = "#000"; ctx.font = "bold 12px system-ui"; ctx.fillText(k ? "B" : "A", x + 8, y - 8);
      });
      if (state.picked.length === 2) {
        const [a, b] = state.picked.map(i => state.px[i]);
        ctx.setLineDash([4, 3]); ctx.beginPath(); ctx.moveTo(a[0], a[1]); ctx.lineTo(b[0], b[1]); ctx.stroke(); ctx.setLineDash([]);
      }
      const A = d.maps[state.method].linear;
      if (A && rv.code) {  // the current code (drawn, picked or edited) on the PCA map
        const n = rv.code.length;
        let x = A[n][0], y = A[n][1];
        for (let j = 0; j < n; j++) { x += rv.code[j] * A[j][0]; y += rv.code[j] * A[j][1]; }
        const [cx, cy] = state.toPx(x, y);
        state.here = [cx, cy];
        for (const [width, colour, r] of [[5, "#fff", 13], [2, "#000", 12]]) {
          ctx.lineWidth = width; ctx.strokeStyle = colour;
          ctx.beginPath(); ctx.moveTo(cx - r, cy); ctx.lineTo(cx + r, cy); ctx.moveTo(cx, cy - r); ctx.lineTo(cx, cy + r); ctx.stroke();
          ctx.beginPath(); ctx.arc(cx, cy, 6, 0, 2 * Math.PI); ctx.stroke();
        }
      } else state.here = null;
    }
    let queued = false;
    rv.redrawMap = () => { if (!queued) { queued = true; requestAnimationFrame(() => { queued = false; draw(); }); } };
    const nearest = e => {
      const rc = cv.getBoundingClientRect(), x = (e.clientX - rc.left) / rc.width * SIZE, y = (e.clientY - rc.top) / rc.height * SIZE;
      let best = -1, bd = 100;
      state.px.forEach(([px, py], i) => { const dd = (px - x) ** 2 + (py - y) ** 2; if (dd < bd) { bd = dd; best = i; } });
      return best;
    };
    const hoverAt = e => {
      const i = nearest(e);
      if (i < 0) { tip.style.display = "none"; state.hover = -1; return; }
      state.hover = i;
      const x = image(i), rec = rv.net.decode(rv.net.encode(x));
      tip.textContent = "";
      tip.appendChild(thumb(x)); tip.appendChild(thumb(rec));
      tip.appendChild(el("div", { text: "#" + i + (D.labels ? " · " + (D.classes ? D.classes[D.labels[i]] : D.labels[i]) : "") }));
      const rc = cv.getBoundingClientRect(), brc = box.getBoundingClientRect();
      tip.style.display = "block";
      tip.style.left = (e.clientX - brc.left + 14) + "px"; tip.style.top = (e.clientY - brc.top + 14) + "px";
      state.tipRecon = rec;
    };
    cv.addEventListener("pointermove", hoverAt);
    cv.addEventListener("pointerdown", e => { if (e.pointerType !== "mouse") hoverAt(e); });  // touch has no hover
    cv.addEventListener("pointerleave", () => { tip.style.display = "none"; });
    cv.addEventListener("click", e => {
      const i = nearest(e);
      if (i < 0) return;
      state.picked = state.picked.length >= 2 ? [i] : [...state.picked, i];
      draw();
      path.textContent = "";
      if (state.picked.length < 2) { tr(pathCap, "pick_two"); return; }
      tr(pathCap, "path");
      const [za, zb] = state.picked.map(k => rv.net.encode(image(k))), steps = 10;
      state.path = [];
      for (let s = 0; s <= steps; s++) {
        const z = za.map((v, j) => v + (zb[j] - v) * s / steps), img = rv.net.decode(z);
        state.path.push(img);
        path.appendChild(thumb(img));
      }
    });
    sel.addEventListener("change", () => { state.method = sel.value; layout(); draw(); });
    layout(); draw();
    state.screen = i => { const rc = cv.getBoundingClientRect(); return [rc.left + state.px[i][0] / SIZE * rc.width, rc.top + state.px[i][1] / SIZE * rc.height]; };
    return box;
  }

  // -- VAEs: latent grid and traversals ------------------------------------------------------------
  function vaeView(rv) {
    const d = rv.d, box = el("div"), k = d.code_shape[0];
    box.appendChild(el("h3", { text: d.name }));
    const si = el("select", { "aria-label": "dimension i" }), sj = el("select", { "aria-label": "dimension j" });
    for (let q = 0; q < k; q++) { si.appendChild(el("option", { value: q, text: "z" + q })); sj.appendChild(el("option", { value: q, text: "z" + q })); }
    sj.value = Math.min(1, k - 1);
    const gridHelp = el("p", { class: "help small" });
    tr(gridHelp, "grid_help", () => ({ i: "z" + si.value, j: "z" + sj.value }));
    const grid = el("canvas", { class: "grid" }), trav = el("div", { class: "trav" });
    box.appendChild(tr(el("div", { class: "cap" }), "grid"));
    box.appendChild(el("div", { class: "maptools" }, [si, sj]));
    box.appendChild(gridHelp);
    box.appendChild(grid);
    box.appendChild(tr(el("div", { class: "cap" }), "traversals"));
    box.appendChild(tr(el("p", { class: "help small" }), "traversal_help"));
    box.appendChild(trav);
    const G = 11, vals = [...Array(G)].map((_, q) => -3 + 6 * q / (G - 1));
    rv.renderVae = () => {
      const base = rv.code || new Float32Array(k), i = +si.value, j = +sj.value;
      gridHelp.textContent = t("grid_help", { i: "z" + i, j: "z" + j });
      grid.width = G * W; grid.height = G * H;
      const ctx = grid.getContext("2d"), tmp = el("canvas");
      for (let r = 0; r < G; r++) for (let c = 0; c < G; c++) {
        const z = Float32Array.from(base); z[i] = vals[c]; if (j !== i) z[j] = vals[G - 1 - r];
        ctx.drawImage(paint(tmp, rv.net.decode(z)), c * W, r * H);
      }
      trav.textContent = "";
      const T = 9;
      for (let q = 0; q < Math.min(k, 16); q++) {
        trav.appendChild(el("span", { text: "z" + q }));
        for (let s = 0; s < T; s++) {
          const z = Float32Array.from(base); z[q] = -3 + 6 * s / (T - 1);
          trav.appendChild(thumb(rv.net.decode(z)));
        }
      }
    };
    [si, sj].forEach(s => s.addEventListener("change", rv.renderVae));
    return box;
  }
  const vaeTimers = new Map();
  function scheduleVae(rv) {
    if (!rv.renderVae) return;
    clearTimeout(vaeTimers.get(rv.r));
    vaeTimers.set(rv.r, setTimeout(rv.renderVae, 120));
  }

  // -- first-layer weights ------------------------------------------------------------------------------
  function weightsView(rv) {
    const d = rv.d, box = el("div");
    box.appendChild(el("h3", { text: d.name }));
    if (!rv.net || !d.first_layer) return box;
    const op = d.first_layer, Wt = rv.net.W;
    let units, th, tw, tc, at;
    if (op.op === "linear") { units = op.out; tc = C; th = H; tw = W; at = (u, q) => Wt[op.w + u * op.in + q]; }
    else { units = op.cout; tc = op.cin; th = op.k; tw = op.k; at = (u, q) => Wt[op.wt + u * op.cin * op.k * op.k + q]; }
    box.appendChild(tr(el("p", { class: "help small" }), "weights_help", { n: units }));
    const cols = Math.ceil(Math.sqrt(units)), rows = Math.ceil(units / cols), s = Math.max(1, Math.ceil(24 / tw)), gap = 1;
    const cw = tw * s + gap, chh = th * s + gap;
    const cv = el("canvas", { class: "wgrid", width: cols * cw + gap, height: rows * chh + gap });
    const ctx = cv.getContext("2d"), im = ctx.createImageData(cv.width, cv.height), px = im.data;
    px.fill(255);
    for (let q = 0; q < px.length; q += 4) { px[q] = px[q + 1] = px[q + 2] = 200; }
    const thw = th * tw;
    for (let u = 0; u < units; u++) {
      let m = 1e-12;
      for (let q = 0; q < tc * thw; q++) m = Math.max(m, Math.abs(at(u, q)));
      const ox = gap + (u % cols) * cw, oy = gap + Math.floor(u / cols) * chh;
      for (let y = 0; y < th * s; y++) for (let x = 0; x < tw * s; x++) {
        const p = Math.floor(y / s) * tw + Math.floor(x / s), o = 4 * ((oy + y) * cv.width + ox + x);
        let r, g, b;
        if (tc === 3) { r = 127.5 + 127.5 * at(u, p) / m; g = 127.5 + 127.5 * at(u, thw + p) / m; b = 127.5 + 127.5 * at(u, 2 * thw + p) / m; }
        else {
          let v = 0;
          for (let c = 0; c < tc; c++) v += at(u, c * thw + p);
          v /= tc * m;
          // diverging: blue (negative) - white - red (positive)
          r = v > 0 ? 255 : 255 * (1 + v); b = v < 0 ? 255 : 255 * (1 - v); g = 255 * (1 - Math.abs(v));
        }
        px[o] = r; px[o + 1] = g; px[o + 2] = b; px[o + 3] = 255;
      }
    }
    ctx.putImageData(im, 0, 0);
    const big = el("canvas", { class: "unit" }), topsCap = el("div", { class: "cap" }), tops = el("div", { class: "tops" });
    big.hidden = true;
    box.appendChild(el("div", { class: "row" }, [cv, el("div", { class: "side" }, [big, topsCap, tops])]));
    const show = u => {
      tops.textContent = "";
      tr(topsCap, "top_images", { u });
      big.hidden = false;
      big.width = cw - gap; big.height = chh - gap;
      big.getContext("2d").putImageData(ctx.getImageData(gap + (u % cols) * cw, gap + Math.floor(u / cols) * chh, cw - gap, chh - gap), 0, 0);
      for (const i of d.top_images[u]) {
        const c = thumb(image(i)); c.title = "#" + i; c.style.cursor = "pointer";
        c.addEventListener("click", () => setInput(image(i)));
        tops.appendChild(c);
      }
      rv.shownUnit = u;
    };
    cv.addEventListener("click", e => {
      const rc = cv.getBoundingClientRect(), x = (e.clientX - rc.left) / rc.width * cv.width, y = (e.clientY - rc.top) / rc.height * cv.height;
      const u = Math.floor(y / chh) * cols + Math.floor(x / cw);
      if (u >= 0 && u < units) show(u);
    });
    rv.unitAt = u => { const rc = cv.getBoundingClientRect(); return [rc.left + (gap + (u % cols) * cw + cw / 2) / cv.width * rc.width, rc.top + (gap + Math.floor(u / cols) * chh + chh / 2) / cv.height * rc.height]; };
    return box;
  }

  // -- timing ---------------------------------------------------------------------------------------
  function bench(rv, reps, x) {
    const times = [], inp = x || modelInput;
    for (let q = 0; q < reps; q++) {
      const t0 = performance.now();
      rv.net.decode(rv.net.encode(inp));
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    return times[Math.floor(times.length / 2)];
  }

  // -- start ------------------------------------------------------------------------------------------
  document.body.classList.toggle("two-runs", RUNS.length > 1);
  const cards = $("run-cards");
  RUNS.forEach(rv => cards.appendChild(runCard(rv)));
  setupPad();
  RUNS.forEach(rv => $("maps").appendChild(mapView(rv)));
  const vaes = RUNS.filter(rv => rv.net && rv.d.vae);
  if (vaes.length) { $("vae-section").hidden = false; vaes.forEach(rv => $("vaes").appendChild(vaeView(rv))); }
  RUNS.forEach(rv => $("weights").appendChild(weightsView(rv)));
  $("lang").addEventListener("click", () => {
    lang = lang === "ja" ? "en" : "ja";
    try { localStorage.setItem("aelab-lang", lang); } catch (e) { /* file:// without storage */ }
    applyLang();
  });
  setInput(D.strip.length ? image(D.strip[0]) : new Float32Array(N));
  for (const rv of RUNS) if (rv.net) {
    bench(rv, 3, image(0));
    const ms = bench(rv, 15, image(0));
    rv.ms = ms;
    tr(rv.ui.timing, "timing", { ms: ms.toFixed(2) });
  }
  applyLang();

  // explore.html#probe=I: test image I's reconstruction by the first run, 10 screen pixels per pixel at the
  // page's top-left corner, so a browser without a driver (`firefox --headless --screenshot`) can be checked
  const probe = /[#&]probe=(\d+)/.exec(location.hash);
  const probed = RUNS.find(rv => rv.net);
  if (probe && probed && +probe[1] < D.count) {
    setInput(image(+probe[1]));
    const c = paint(el("canvas", { id: "probe" }), probed.recon);
    c.style.cssText = `position:fixed;left:0;top:0;width:${W * 10}px;height:${H * 10}px;z-index:99`;
    document.body.appendChild(c);
  }

  window.aelab = { data: D, runs: RUNS, image, setInput, update, bench, get input() { return input; }, get modelInput() { return modelInput; },
    get lang() { return lang; }, setNoise(a, seed) { noiseAmount = a; if (seed !== undefined) noiseSeed = seed; update(); } };
})();
