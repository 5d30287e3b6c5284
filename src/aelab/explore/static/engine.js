/* aelab explorer engine: runs a model exported by aelab/explore/export.py.
 * One sample at a time, flat Float32Arrays in C, H, W order; sums are taken in
 * doubles and stored as float32, as PyTorch's float32 kernels store them.
 * The NumPy twin of every op is run_ops() in export.py. */
"use strict";
const AelabEngine = (function () {
  function bytes(b64) {
    const bin = atob(b64), n = bin.length, u8 = new Uint8Array(n);
    for (let i = 0; i < n; i++) u8[i] = bin.charCodeAt(i);
    return u8;
  }
  function float32(b64) { return new Float32Array(bytes(b64).buffer); }

  const ACT = {
    relu: v => (v > 0 ? v : 0),
    sigmoid: v => 1 / (1 + Math.exp(-v)),
    tanh: v => Math.tanh(v),
    leaky_relu: v => (v > 0 ? v : 0.01 * v),
    elu: v => (v > 0 ? v : Math.expm1(v)),
  };

  const STEP = {
    linear(op, W, x) {
      const n = op.in, m = op.out, y = new Float32Array(m);
      for (let o = 0; o < m; o++) {
        let s = W[op.b + o];
        const r = op.w + o * n;
        for (let i = 0; i < n; i++) s += W[r + i] * x[i];
        y[o] = s;
      }
      return y;
    },
    act(op, W, x) {
      const f = ACT[op.fn], y = new Float32Array(x.length);
      for (let i = 0; i < x.length; i++) y[i] = f(x[i]);
      return y;
    },
    /* TopK SAE: the k largest values, then ReLU; the rest zero (ties: the lower index first). */
    topk(op, W, x) {
      const order = Array.from(x.keys()).sort((a, b) => x[b] - x[a] || a - b), y = new Float32Array(x.length);
      for (let j = 0; j < op.k; j++) { const i = order[j]; y[i] = x[i] > 0 ? x[i] : 0; }
      return y;
    },
    /* BatchTopK SAE at inference: the values above the learned threshold. */
    threshold(op, W, x) {
      const y = new Float32Array(x.length);
      for (let i = 0; i < x.length; i++) y[i] = x[i] > op.t ? x[i] : 0;
      return y;
    },
    clamp(op, W, x) {
      const y = new Float32Array(x.length);
      for (let i = 0; i < x.length; i++) y[i] = Math.min(op.hi, Math.max(op.lo, x[i]));
      return y;
    },
    affine(op, W, x) {
      const y = new Float32Array(x.length);
      for (let c = 0; c < op.c; c++) {
        const s = W[op.scale + c], t = W[op.shift + c];
        for (let i = c * op.hw; i < (c + 1) * op.hw; i++) y[i] = x[i] * s + t;
      }
      return y;
    },
    conv(op, W, x) {
      const { cin, cout, k, pad, h, w } = op, oh = h + 2 * pad - k + 1, ow = w + 2 * pad - k + 1;
      const acc = new Float64Array(oh * ow), y = new Float32Array(cout * oh * ow);
      for (let co = 0; co < cout; co++) {
        acc.fill(W[op.b + co]);
        for (let ci = 0; ci < cin; ci++) {
          const xb = ci * h * w;
          for (let ky = 0; ky < k; ky++) {
            for (let kx = 0; kx < k; kx++) {
              const wv = W[op.wt + ((co * cin + ci) * k + ky) * k + kx];
              if (wv === 0) continue;
              const y0 = Math.max(0, pad - ky), y1 = Math.min(oh, h + pad - ky);
              const x0 = Math.max(0, pad - kx), x1 = Math.min(ow, w + pad - kx);
              for (let oy = y0; oy < y1; oy++) {
                const xr = xb + (oy + ky - pad) * w + kx - pad, ar = oy * ow;
                for (let ox = x0; ox < x1; ox++) acc[ar + ox] += wv * x[xr + ox];
              }
            }
          }
        }
        y.set(acc, co * oh * ow);
      }
      return y;
    },
    maxpool(op, W, x) {
      const { c, h, w, oh, ow } = op, y = new Float32Array(c * oh * ow);
      for (let ch = 0; ch < c; ch++) {
        for (let oy = 0; oy < oh; oy++) {
          for (let ox = 0; ox < ow; ox++) {
            let m = -Infinity;
            for (let dy = 0; dy < 2; dy++) {
              const iy = 2 * oy + dy;
              if (iy >= h) continue;
              for (let dx = 0; dx < 2; dx++) {
                const ix = 2 * ox + dx;
                if (ix < w) m = Math.max(m, x[(ch * h + iy) * w + ix]);
              }
            }
            y[(ch * oh + oy) * ow + ox] = m;
          }
        }
      }
      return y;
    },
    gather(op, W, x) {
      const { c, h, w, rows, cols } = op, oh = rows.length, ow = cols.length, y = new Float32Array(c * oh * ow);
      for (let ch = 0; ch < c; ch++)
        for (let oy = 0; oy < oh; oy++) {
          const src = (ch * h + rows[oy]) * w, dst = (ch * oh + oy) * ow;
          for (let ox = 0; ox < ow; ox++) y[dst + ox] = x[src + cols[ox]];
        }
      return y;
    },
  };

  function run(ops, W, x) {
    let cur = x;
    for (const op of ops) cur = STEP[op.op](op, W, cur);
    return cur;
  }

  /* One exported model: encode (a VAE: the mean), decode (after the output activation). */
  class Net {
    constructor(spec) {
      this.spec = spec;
      this.W = float32(spec.weights);
      this.enc = spec.encoder;
      this.dec = spec.decoder;
    }
    encode(x) { return run(this.enc, this.W, x); }
    decode(z) { return run(this.dec, this.W, z); }
    /* VAE: {mu, logvar} from one pass through the shared trunk. */
    stats(x) {
      const t = run(this.enc.slice(0, this.spec.trunk_len), this.W, x);
      return { mu: run(this.enc.slice(this.spec.trunk_len), this.W, t), logvar: run(this.spec.logvar, this.W, t) };
    }
    /* Decoder output before a sigmoid output activation (BCE is computed on logits, as PyTorch does). */
    decodeLogits(z) {
      const d = this.dec, last = d[d.length - 1];
      return last && last.op === "act" && last.fn === "sigmoid" ? run(d.slice(0, -1), this.W, z) : null;
    }
  }

  return { Net, run, bytes, float32, ACT };
})();
