/* Fused CPU kernels for the written-out dense step (train/native.py compiles and loads this file).
 *
 * Each kernel does in one pass over memory what the torch path does in several: the loss, its
 * gradient and the last bias gradient; an activation's derivative and its bias gradient; the Adam
 * update with the bf16 copy of the weights the next forward needs. Activations and gradients are
 * either float32 or bfloat16 (stored as uint16, rounded to nearest even as torch rounds), selected by
 * an argument; the Adam update does torch's fused-Adam arithmetic in torch's order, so with
 * -ffp-contract=off it gives torch's bits (tests/test_native.py).
 *
 * Threads come from OpenMP: torch's own libgomp, which is already loaded under the same soname when
 * this library is, so the kernels share torch's thread pool, thread count and wait policy.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define EXPORT __attribute__((visibility("default")))

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16; /* round to nearest even */
    return (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)0x7fc0 : (uint16_t)r; /* NaN stays NaN */
}

static inline float load(const void *p, int bf16, int64_t i) {
    return bf16 ? bf16_to_f32(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

/* exp(x) for x <= 0, within 2 ulp: 2^n * e^r with |r| <= ln2/2, a degree-6 polynomial in r. */
static inline float exp_nonpos(float x) {
    x = x < -104.0f ? -104.0f : x;
    float n = rintf(x * 1.44269504088896341f);
    float r = fmaf(n, -0.693145751953125f, x);
    r = fmaf(n, -1.428606765330187045e-06f, r);
    float p = 1.0f / 720.0f;
    p = fmaf(p, r, 1.0f / 120.0f);
    p = fmaf(p, r, 1.0f / 24.0f);
    p = fmaf(p, r, 1.0f / 6.0f);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    int32_t e = (int32_t)n + 127; /* n >= -151: below -126 the scale is 0 and the result flushes */
    uint32_t bits = e > 0 ? (uint32_t)e << 23 : 0u;
    float scale;
    memcpy(&scale, &bits, 4);
    return p * scale;
}

/* log(1 + e) for e in [0, 1] as 2 atanh(e / (2 + e)): no cancellation for small e, rel. error < 1e-7. */
static inline float log1p_unit(float e) {
    float s = e / (2.0f + e);
    float s2 = s * s;
    float p = 1.0f / 13.0f;
    p = fmaf(p, s2, 1.0f / 11.0f);
    p = fmaf(p, s2, 1.0f / 9.0f);
    p = fmaf(p, s2, 1.0f / 7.0f);
    p = fmaf(p, s2, 1.0f / 5.0f);
    p = fmaf(p, s2, 1.0f / 3.0f);
    p = fmaf(p, s2, 1.0f);
    return 2.0f * s * p;
}

static int threads_for(int64_t work) {
#ifdef _OPENMP
    int t = omp_get_max_threads();
    int64_t most = work / 16384 + 1; /* a thread needs ~16k elements to pay for waking it */
    return most < t ? (int)most : t;
#else
    (void)work;
    return 1;
#endif
}

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* This thread's share [lo, hi) of count items, split evenly across the OpenMP team it runs in. */
static void share(int64_t count, int64_t *lo, int64_t *hi) {
#ifdef _OPENMP
    int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
    int64_t t = 0, nt = 1;
#endif
    *lo = count * t / nt;
    *hi = count * (t + 1) / nt;
}

/* Column sums of per-thread partials (rows were split between threads) into out, in thread order. */
static void reduce_columns(float *partial, int nthreads, int64_t cols, float *out) {
    for (int64_t c = 0; c < cols; c++) out[c] = partial[c];
    for (int t = 1; t < nthreads; t++)
        for (int64_t c = 0; c < cols; c++) out[c] += partial[t * cols + c];
}

/* k / divisor for a byte k: the product with the reciprocal, corrected by one FMA of its residual (division's
 * throughput is a tenth of the multiplier's). */
static inline float byte_over(float k, float divisor, float reciprocal) {
    float q = k * reciprocal;
    return fmaf(fmaf(-q, divisor, k), reciprocal, q);
}

/* Whether byte_over gives float32 division's quotient for every byte (255 and 1 do): byte targets need it. */
EXPORT int aelab_byte_division_exact(float divisor) {
    float reciprocal = 1.0f / divisor;
    int exact = 1;
    for (int k = 0; k < 256; k++) exact &= byte_over((float)k, divisor, reciprocal) == (float)k / divisor;
    return exact;
}

/* BCE with logits of x against y, and sigmoid(x) into *s, both without overflow: the loss and validation
 * kernels' element (inlined, so a caller that needs only one of the two computes only that one). */
static inline __attribute__((always_inline)) float bce_sigmoid(float x, float y, float *s) {
    float e = exp_nonpos(-fabsf(x));
    float inv = 1.0f / (1.0f + e);
    *s = x >= 0.0f ? inv : e * inv;
    return (x > 0.0f ? x : 0.0f) - x * y + log1p_unit(e);
}

/* One row of the loss kernel; `kind` and the dtypes are constants where it is inlined, so each
 * combination compiles to its own branch-free vector loop. */
static inline __attribute__((always_inline)) float loss_row(int64_t cols, const void *restrict z, const int z_bf16,
                                                            const void *restrict t, const int t_u8, float divisor,
                                                            float reciprocal, void *restrict g, const int g_bf16,
                                                            float *restrict colsum, const int kind, float scale) {
    float row_loss = 0.0f;
#pragma omp simd reduction(+ : row_loss)
    for (int64_t c = 0; c < cols; c++) {
        float x = load(z, z_bf16, c), d, l;
        float y = t_u8 ? byte_over((float)((const uint8_t *)t)[c], divisor, reciprocal) : ((const float *)t)[c];
        if (kind == 2) {
            float diff = x - y;
            l = diff * diff;
            d = diff * scale;
        } else {
            float s, bce = bce_sigmoid(x, y, &s);
            if (kind == 0) {
                l = bce;
                d = (s - y) * scale;
            } else {
                float diff = s - y;
                l = diff * diff;
                d = diff * (s * (1.0f - s)) * scale;
            }
        }
        row_loss += l;
        if (g_bf16) {
            uint16_t b = f32_to_bf16(d);
            ((uint16_t *)g)[c] = b;
            colsum[c] += bf16_to_f32(b);
        } else {
            ((float *)g)[c] = d;
            colsum[c] += d;
        }
    }
    return row_loss;
}

#define LOSS_ROW(ZB, GB, K, TB) \
    loss_row(cols, zr, ZB, (const char *)t + base * (TB ? 1 : 4), TB, divisor, reciprocal, gr, GB, colsum, K, scale)
#define LOSS_KINDS(ZB, GB, TB) \
    (kind == 0 ? LOSS_ROW(ZB, GB, 0, TB) : kind == 1 ? LOSS_ROW(ZB, GB, 1, TB) : LOSS_ROW(ZB, GB, 2, TB))

/* The loss summed over a (rows, cols) batch of logits z against targets t, and its gradient times `scale`
 * into g, with g's column sums (the last layer's bias gradient) into bias_grad. t is float32, or (t_u8) the
 * bytes the float32 targets were scaled from, t / divisor, for a divisor aelab_byte_division_exact takes;
 * then z and g share a dtype. kind 0: BCE with logits; 1: squared error of sigmoid(z); 2: squared error of z.
 * The column sums add the gradient as stored (rounded to bf16 when g is bf16), as the torch path does.
 * Returns the sum of the loss over all elements (also written as the mean to *mean unless NULL), or NaN if
 * allocating scratch failed. */
EXPORT double aelab_loss_grad(int64_t rows, int64_t cols, const void *z, int z_bf16, const void *t, int t_u8,
                              float divisor, void *g, int g_bf16, float *bias_grad, int kind, float scale,
                              float *mean) {
    int nthreads = threads_for(rows * cols);
    float *partial = calloc((size_t)nthreads * (size_t)cols, sizeof(float));
    double *sums = calloc((size_t)nthreads, sizeof(double));
    if (!partial || !sums) {
        free(partial);
        free(sums);
        if (mean) *mean = NAN;
        return NAN;
    }
    int zs = z_bf16 ? 2 : 4, gs = g_bf16 ? 2 : 4;
    float reciprocal = 1.0f / divisor;
#pragma omp parallel num_threads(nthreads)
    {
        int tid = thread_id();
        int64_t lo, hi;
        share(rows, &lo, &hi);
        float *colsum = partial + (int64_t)tid * cols;
        double total = 0.0;
        for (int64_t r = lo; r < hi; r++) {
            int64_t base = r * cols;
            const void *zr = (const char *)z + base * zs;
            void *gr = (char *)g + base * gs;
            float l;
            if (t_u8)
                l = z_bf16 ? LOSS_KINDS(1, 1, 1) : LOSS_KINDS(0, 0, 1);
            else if (z_bf16 && g_bf16)
                l = LOSS_KINDS(1, 1, 0);
            else if (!z_bf16 && !g_bf16)
                l = LOSS_KINDS(0, 0, 0);
            else if (z_bf16)
                l = LOSS_KINDS(1, 0, 0);
            else
                l = LOSS_KINDS(0, 1, 0);
            total += l;
        }
        sums[tid] = total;
    }
    double loss = 0.0;
    for (int i = 0; i < nthreads; i++) loss += sums[i];
    if (bias_grad) reduce_columns(partial, nthreads, cols, bias_grad);
    if (mean) *mean = (float)(loss / (double)(rows * cols)); /* straight into a tensor: no Python float to wrap */
    free(partial);
    free(sums);
    return loss;
}

/* Random rows come from DRAM one cache line at a time unless asked for ahead: the hardware prefetcher
 * follows a stream within a row, not the jump to the next row. */
#define AHEAD 8
static inline void prefetch_row(const uint8_t *row, int64_t cols) {
    for (int64_t c = 0; c < cols; c += 64) __builtin_prefetch(row + c);
    __builtin_prefetch(row + cols - 1);
}

/* A batch's rows of a uint8 dataset as the values they were scaled to: out[i, :] = src[idx[i], :] / divisor with
 * float32 division's result (numpy's uint8 / 255 scaling), float32 or rounded to bf16 (out_bf16), and, unless
 * bytes is NULL, the rows' bytes themselves (targets for aelab_loss_grad). For training sets that were bytes
 * (data.Splits.train_bytes): a quarter of the float32 rows' bytes to fetch in random order, and no float32
 * batch to write and cast. Returns 0, or -1 for an index outside [0, src_rows). */
EXPORT int aelab_gather_bytes(int64_t n, const int64_t *idx, int64_t cols, const uint8_t *src, int64_t src_rows,
                              float divisor, void *out, int out_bf16, uint8_t *bytes) {
    for (int64_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= src_rows) return -1;
    float reciprocal = 1.0f / divisor;
    int exact = aelab_byte_division_exact(divisor); /* else divide */
    int nthreads = threads_for(n * cols);
#pragma omp parallel num_threads(nthreads)
    {
        int64_t lo, hi;
        share(n, &lo, &hi);
        for (int64_t i = lo; i < lo + AHEAD && i < hi; i++) prefetch_row(src + idx[i] * cols, cols);
        for (int64_t i = lo; i < hi; i++) {
            if (i + AHEAD < hi) prefetch_row(src + idx[i + AHEAD] * cols, cols);
            const uint8_t *restrict row = src + idx[i] * cols;
            if (bytes) memcpy(bytes + i * cols, row, (size_t)cols);
            if (out_bf16) {
                uint16_t *restrict o = (uint16_t *)out + i * cols;
#pragma omp simd
                for (int64_t c = 0; c < cols; c++)
                    o[c] = f32_to_bf16(exact ? byte_over((float)row[c], divisor, reciprocal) : (float)row[c] / divisor);
            } else {
                float *restrict o = (float *)out + i * cols;
#pragma omp simd
                for (int64_t c = 0; c < cols; c++)
                    o[c] = exact ? byte_over((float)row[c], divisor, reciprocal) : (float)row[c] / divisor;
            }
        }
    }
    return 0;
}

/* One row's summed BCE of logits z against t and squared error of sigmoid(z) against t. */
static inline __attribute__((always_inline)) void errors_row(int64_t cols, const void *restrict z, const int z_bf16,
                                                             const float *restrict t, float *bce, float *se) {
    float lb = 0.0f, ls = 0.0f;
#pragma omp simd reduction(+ : lb, ls)
    for (int64_t c = 0; c < cols; c++) {
        float x = load(z, z_bf16, c), y = t[c], s;
        lb += bce_sigmoid(x, y, &s);
        float d = s - y;
        ls += d * d;
    }
    *bce = lb;
    *se = ls;
}

/* The validation pass's per-sample errors of a sigmoid-output model in one read of its logits: each row's
 * mean BCE of logits z (rows, cols) against t (float32) into bce[r], and mean squared error of sigmoid(z)
 * into mse[r] (evaluate.per_sample_errors computes the same in seven passes). */
EXPORT void aelab_row_errors(int64_t rows, int64_t cols, const void *z, int z_bf16, const float *t, float *bce,
                             float *mse) {
    int nthreads = threads_for(rows * cols);
#pragma omp parallel num_threads(nthreads)
    {
        int64_t lo, hi;
        share(rows, &lo, &hi);
        for (int64_t r = lo; r < hi; r++) {
            float b, m;
            if (z_bf16)
                errors_row(cols, (const uint16_t *)z + r * cols, 1, t + r * cols, &b, &m);
            else
                errors_row(cols, (const float *)z + r * cols, 0, t + r * cols, &b, &m);
            bce[r] = b / (float)cols;
            mse[r] = m / (float)cols;
        }
    }
}

static inline __attribute__((always_inline)) void act_row(int64_t cols, void *restrict g, const void *restrict h,
                                                          const int bf16, const int act, float a,
                                                          float *restrict colsum) {
#pragma omp simd
    for (int64_t c = 0; c < cols; c++) {
        float d = load(g, bf16, c), y = load(h, bf16, c);
        if (act == 1)
            d = y <= 0.0f ? 0.0f : d;
        else if (act == 2)
            d = d * (1.0f - y) * y;
        else if (act == 3)
            d = d * (1.0f - y * y);
        else if (act == 4)
            d = y > 0.0f ? d : d * a;
        else if (act == 5)
            d = y <= 0.0f ? d * (y + a) : d;
        if (bf16) {
            uint16_t b = f32_to_bf16(d);
            ((uint16_t *)g)[c] = b;
            colsum[c] += bf16_to_f32(b);
        } else {
            ((float *)g)[c] = d;
            colsum[c] += d;
        }
    }
}

#define ACT_ROWS(B)                                                             \
    switch (act) {                                                              \
        case 1: act_row(cols, gr, hr, B, 1, a, colsum); break;                  \
        case 2: act_row(cols, gr, hr, B, 2, a, colsum); break;                  \
        case 3: act_row(cols, gr, hr, B, 3, a, colsum); break;                  \
        case 4: act_row(cols, gr, hr, B, 4, a, colsum); break;                  \
        case 5: act_row(cols, gr, hr, B, 5, a, colsum); break;                  \
        default: act_row(cols, gr, hr, B, 0, a, colsum); break;                 \
    }

/* g <- g * act'(.) in place, the derivative read from the activation's output h (as autograd's
 * *_backward kernels do), and g's column sums (the bias gradient of the layer before) into bias_grad.
 * act 0: identity; 1: relu; 2: sigmoid; 3: tanh; 4: leaky relu (slope a); 5: elu (alpha a).
 * Returns 0, or -1 if allocating scratch failed. */
EXPORT int aelab_act_backward(int64_t rows, int64_t cols, void *g, const void *h, int bf16, int act, float a,
                              float *bias_grad) {
    int nthreads = threads_for(rows * cols);
    float *partial = calloc((size_t)nthreads * (size_t)cols, sizeof(float));
    if (!partial) return -1;
    int es = bf16 ? 2 : 4;
#pragma omp parallel num_threads(nthreads)
    {
        int tid = thread_id();
        int64_t lo, hi;
        share(rows, &lo, &hi);
        float *colsum = partial + (int64_t)tid * cols;
        for (int64_t r = lo; r < hi; r++) {
            void *gr = (char *)g + r * cols * es;
            const void *hr = (const char *)h + r * cols * es;
            if (bf16) {
                ACT_ROWS(1)
            } else {
                ACT_ROWS(0)
            }
        }
    }
    if (bias_grad) reduce_columns(partial, nthreads, cols, bias_grad);
    free(partial);
    return 0;
}

struct adam_consts {
    float step_size, bc2_sqrt, c1, c2, b2, eps, wd, decay, coeff;
    int small;
};

static inline __attribute__((always_inline)) void adam_range(int64_t lo, int64_t hi, float *restrict p,
                                                             const void *restrict grad, const int g_bf16,
                                                             float *restrict m, float *restrict v,
                                                             uint16_t *restrict copy, const int with_copy,
                                                             const int decay_mode, struct adam_consts k) {
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) {
        float gi = load(grad, g_bf16, i), pi = p[i];
        if (decay_mode == 1) gi = fmaf(pi, k.wd, gi);   /* Adam: L2 on the gradient */
        if (decay_mode == 2) pi = pi * k.decay;      /* AdamW: decoupled */
        float mi = m[i];
        mi = fmaf(k.coeff, gi - mi, k.small ? mi : gi); /* exp_avg.lerp_(grad, 1 - beta1), torch's way */
        float vi = fmaf(k.c2 * gi, gi, v[i] * k.b2); /* torch's build contracts this one to an FMA */
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / k.bc2_sqrt + k.eps;
        pi = pi + (-k.step_size) * mi / denom;
        p[i] = pi;
        if (with_copy) copy[i] = f32_to_bf16(pi);
    }
}

#define ADAM(GB, WC, DM) adam_range(lo, hi, p, grad, GB, m, v, copy, WC, DM, k)

/* The per-step constants of one Adam (decoupled = 0) or AdamW (1) update, after counting its step:
 * step_count is the optimizer state's step tensor (float32), incremented first as torch's Adam does. */
static struct adam_consts adam_setup(float *step_count, double lr, double beta1, double beta2, double eps,
                                     double weight_decay, int decoupled, int *decay_mode) {
    struct adam_consts k;
    *step_count += 1.0f;
    double step = *step_count;
    double bias_correction1 = 1 - pow(beta1, step);
    double bias_correction2 = 1 - pow(beta2, step);
    k.step_size = (float)(lr / bias_correction1);
    k.bc2_sqrt = (float)sqrt(bias_correction2);
    k.c1 = (float)(1 - beta1);
    k.c2 = (float)(1 - beta2);
    k.b2 = (float)beta2;
    k.eps = (float)eps;
    k.wd = (float)weight_decay;
    k.decay = (float)(1 - lr * weight_decay);
    k.small = fabsf(k.c1) < 0.5f;
    k.coeff = k.small ? k.c1 : k.c1 - 1.0f;
    *decay_mode = weight_decay == 0.0 ? 0 : decoupled ? 2 : 1;
    return k;
}

/* Adam/AdamW steps of `count` float32 tensors at once, in the arithmetic and order of torch's fused CPU
 * kernel (aten/src/ATen/native/cpu/FusedAdamKernel.cpp, float case), element by element, so how the work
 * is split does not change a bit. One parallel region for all of them: a stack of five small models has
 * twenty tensors, and twenty regions (and calls) cost more than their arithmetic.
 * job[9 * j ...]: n, p, grad, grad is bf16, m (exp_avg), v (exp_avg_sq), bf16 copy of the result (0: none),
 * step count (float32, counted here), AdamW; hyper[5 * j ...]: lr, beta1, beta2, eps, weight decay.
 * Returns 0, or -1 if allocating scratch failed (then nothing was updated). */
EXPORT int aelab_adam_many(int64_t count, const int64_t *job, const double *hyper) {
    struct adam_consts *ks = malloc((size_t)(count > 0 ? count : 1) * sizeof *ks);
    int *modes = malloc((size_t)(count > 0 ? count : 1) * sizeof *modes);
    int64_t *first = malloc((size_t)(count + 1) * sizeof *first); /* each tensor's first 16-float block */
    if (!ks || !modes || !first) {
        free(ks);
        free(modes);
        free(first);
        return -1;
    }
    first[0] = 0;
    for (int64_t j = 0; j < count; j++) {
        const int64_t *q = job + 9 * j;
        const double *h = hyper + 5 * j;
        ks[j] = adam_setup((float *)(intptr_t)q[7], h[0], h[1], h[2], h[3], h[4], (int)q[8], &modes[j]);
        first[j + 1] = first[j] + (q[0] + 15) / 16;
    }
    int nthreads = threads_for(first[count] * 16);
#pragma omp parallel num_threads(nthreads)
    {
        int64_t b0, b1; /* whole 16-float blocks per thread, across the tensors in order */
        share(first[count], &b0, &b1);
        for (int64_t j = 0; j < count; j++) {
            if (first[j + 1] <= b0 || first[j] >= b1) continue;
            const int64_t *q = job + 9 * j;
            int64_t n = q[0];
            int64_t lo = ((b0 > first[j] ? b0 : first[j]) - first[j]) * 16;
            int64_t hi = ((b1 < first[j + 1] ? b1 : first[j + 1]) - first[j]) * 16;
            hi = hi < n ? hi : n;
            float *p = (float *)(intptr_t)q[1], *m = (float *)(intptr_t)q[4], *v = (float *)(intptr_t)q[5];
            const void *grad = (const void *)(intptr_t)q[2];
            uint16_t *copy = (uint16_t *)(intptr_t)q[6];
            struct adam_consts k = ks[j];
            int dm = modes[j];
            if (q[3]) {
                if (copy)
                    dm == 0 ? ADAM(1, 1, 0) : dm == 1 ? ADAM(1, 1, 1) : ADAM(1, 1, 2);
                else
                    dm == 0 ? ADAM(1, 0, 0) : dm == 1 ? ADAM(1, 0, 1) : ADAM(1, 0, 2);
            } else {
                if (copy)
                    dm == 0 ? ADAM(0, 1, 0) : dm == 1 ? ADAM(0, 1, 1) : ADAM(0, 1, 2);
                else
                    dm == 0 ? ADAM(0, 0, 0) : dm == 1 ? ADAM(0, 0, 1) : ADAM(0, 0, 2);
            }
        }
    }
    free(ks);
    free(modes);
    free(first);
    return 0;
}

/* ---- the convolutional autoencoder's two thin layers (train/fused_conv.py) --------------------------
 * oneDNN spends 20-40 GFLOP/s on a convolution with one input or one output channel (docs/PERFORMANCE.md);
 * these do them directly, channels innermost (NHWC), fused with what sits next to them: the first layer
 * with its activation (ReLU) and 2x2 max-pooling, the last with the 2x nearest upsampling before it.
 * Weights come tap-major: w[(ky * k + kx) * C + c]. Padding is k / 2 on every side (padding='same'). */

/* Each generic kernel body is an always-inline function of (channel count, bf16?), compiled once per number
 * format for any channel count and odd kernel size; 3x3 kernels on even sizes with 8 or 16 channels (the
 * seeds' model) take the vector-extension fast paths further down, whose registers hold whole channel
 * vectors. */
#define MAXC 256

static inline __attribute__((always_inline)) void conv1_body(int64_t n0, int64_t n1, int64_t H, int64_t W,
                                                            const int64_t C, int64_t k, const float *restrict x,
                                                            const float *restrict w, const float *restrict b,
                                                            void *restrict out, const int bf, uint8_t *restrict arg) {
    const int64_t Hp = (H + 1) / 2, Wp = (W + 1) / 2, r = k / 2;
    float acc[4][MAXC];
    for (int64_t n = n0; n < n1; n++) {
        const float *xn = x + n * H * W;
        for (int64_t Y = 0; Y < Hp; Y++)
            for (int64_t X = 0; X < Wp; X++) {
                for (int q = 0; q < 4; q++) {
                    int64_t y = 2 * Y + q / 2, xx = 2 * X + q % 2;
                    float *a = acc[q];
                    if (y >= H || xx >= W) { /* a window cut by the border (ceil mode) */
                        for (int64_t c = 0; c < C; c++) a[c] = -INFINITY;
                        continue;
                    }
                    for (int64_t c = 0; c < C; c++) a[c] = b[c];
                    for (int64_t ky = 0; ky < k; ky++) {
                        int64_t iy = y + ky - r;
                        if (iy < 0 || iy >= H) continue;
                        for (int64_t kx = 0; kx < k; kx++) {
                            int64_t ix = xx + kx - r;
                            if (ix < 0 || ix >= W) continue;
                            float v = xn[iy * W + ix];
                            const float *wt = w + (ky * k + kx) * C;
                            for (int64_t c = 0; c < C; c++) a[c] = fmaf(v, wt[c], a[c]);
                        }
                    }
                }
                int64_t o = ((n * Hp + Y) * Wp + X) * C;
                for (int64_t c = 0; c < C; c++) {
                    float m = acc[0][c];
                    uint8_t at = 0;
                    at = acc[1][c] > m ? 1 : at;
                    m = acc[1][c] > m ? acc[1][c] : m;
                    at = acc[2][c] > m ? 2 : at;
                    m = acc[2][c] > m ? acc[2][c] : m;
                    at = acc[3][c] > m ? 3 : at;
                    m = acc[3][c] > m ? acc[3][c] : m;
                    m = m > 0.0f ? m : 0.0f; /* relu after the max: the same as the max after relu */
                    if (bf)
                        ((uint16_t *)out)[o + c] = f32_to_bf16(m);
                    else
                        ((float *)out)[o + c] = m;
                    arg[o + c] = at;
                }
            }
    }
}

/* the generic bodies: any channel count, compiled once per number format (the fast paths below are the
 * specialised ones) */
#define BY_CHANNELS(CALL)                                  \
    do {                                                   \
        if (bf)                                            \
            CALL(C, 1);                                    \
        else                                               \
            CALL(C, 0);                                    \
    } while (0)

/* Inside a SPLIT_BATCH region: when `ok` and a scratch of `floats` floats could be had (named `scratch` in the
 * call), the fast path FAST for 8 or 16 channels; else BODY, the generic body for any channel count, in both
 * formats. */
#define FAST_OR_GENERIC(ok, floats, FAST, BODY)                                   \
    do {                                                                          \
        float *scratch = (ok) ? malloc(sizeof(float) * (size_t)(floats)) : NULL;  \
        if (scratch)                                                              \
            FAST;                                                                 \
        else                                                                      \
            BY_CHANNELS(BODY);                                                    \
        free(scratch);                                                            \
    } while (0)

/* CALL16 for 16 channels, else CALL8 */
#define BY_WIDTH(CALL16, CALL8) \
    do {                        \
        if (C == 16)            \
            CALL16;             \
        else                    \
            CALL8;              \
    } while (0)

/* inside a parallel region: this thread's id and its share [n0, n1) of the N samples */
#define SPLIT_BATCH       \
    int tid = thread_id(); \
    int64_t n0, n1;        \
    share(N, &n0, &n1);    \
    (void)tid;


/* Fast paths for k = 3 and even sizes (the seeds' 28x28 images): the input is copied once into a zero-
 * bordered scratch per sample, so the 3x3 taps need no bounds checks and unroll. */
static inline __attribute__((always_inline)) void pad_plane(const float *restrict x, int64_t H, int64_t W,
                                                           float *restrict xp) {
    memset(xp, 0, sizeof(float) * (size_t)((H + 2) * (W + 2)));
    for (int64_t y = 0; y < H; y++) memcpy(xp + (y + 1) * (W + 2) + 1, x + y * W, sizeof(float) * (size_t)W);
}

/* GCC/Clang vector extensions: a whole channel vector per variable, so accumulators live in registers
 * (arrays indexed in a loop go through memory, and a store-to-load chain per pixel costs more than the
 * arithmetic). The compiler maps them onto whatever SIMD the CPU has (two AVX2 halves, one AVX-512 register). */
typedef float f16v __attribute__((vector_size(64)));
typedef float f8v __attribute__((vector_size(32)));
typedef uint16_t u16x16 __attribute__((vector_size(32)));
typedef uint16_t u16x8 __attribute__((vector_size(16)));
typedef uint32_t u32x16 __attribute__((vector_size(64)));
typedef uint32_t u32x8 __attribute__((vector_size(32)));
typedef uint8_t u8x16 __attribute__((vector_size(16)));
typedef uint8_t u8x8 __attribute__((vector_size(8)));
typedef int32_t i32x16 __attribute__((vector_size(64)));
typedef int32_t i32x8 __attribute__((vector_size(32)));

/* Whether a 16-float vector is one register (AVX-512: 32 of them). Without AVX-512 it is no machine type, so
 * GCC keeps every such vector in memory and each multiply-add goes through the stack; and AVX2's 16 registers
 * of 8 floats cannot hold a tile of 16 weights and 16 accumulators either. There the kernels below run 8
 * channels per pass (x86-64-v3 build on a Zen 4, fp32, per step of the conv model: the last layer's backward
 * 6.4 -> 0.4 ms, the first layer's 4.8 -> 0.4; a 16-channel 3x3 convolution 5-10x; docs/PERFORMANCE.md). */
#ifdef __AVX512F__
#define WIDE 1
#else
#define WIDE 0
#endif

/* The convolution kernels may fuse multiply-adds (the file is built with -ffp-contract=off for Adam's sake,
 * whose rounding must be torch's); only GCC has the per-function switch, other compilers keep them apart. */
#if defined(__GNUC__) && !defined(__clang__)
#define CONTRACT __attribute__((optimize("fp-contract=fast")))
#else
#define CONTRACT
#endif

/* bf16 stores of a whole vector, rounded as f32_to_bf16 rounds */
#define DEFINE_STORE_BF16(CC, VF, VU, VW)                                                \
    static inline void st_bf16_##CC(uint16_t *dst, VF v) {                              \
        VW u;                                                                           \
        memcpy(&u, &v, sizeof u);                                                       \
        VW r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;                                  \
        VW nan = (VW)((u & 0x7fffffffu) > 0x7f800000u);                                 \
        r = (r & ~nan) | (nan & 0x7fc0u);                                               \
        VU h = __builtin_convertvector(r, VU);                                          \
        memcpy(dst, &h, sizeof h);                                                      \
    }
DEFINE_STORE_BF16(16, f16v, u16x16, u32x16)
DEFINE_STORE_BF16(8, f8v, u16x8, u32x8)

/* one generator per channel count: VF float vector, VU u16 vector, VW u32 vector, VB u8 vector, VI i32 */
#define DEFINE_CONV1_BACK(CC, VF, VU, VW, VB, VI)                                                                  \
    static inline VF ld_##CC(const void *p, int bf, int64_t i) {                                                  \
        VF r;                                                                                                     \
        if (bf) {                                                                                                 \
            VU h;                                                                                                 \
            memcpy(&h, (const uint16_t *)p + i, sizeof h);                                                        \
            VW u = __builtin_convertvector(h, VW) << 16;                                                          \
            memcpy(&r, &u, sizeof r);                                                                             \
        } else                                                                                                    \
            memcpy(&r, (const float *)p + i, sizeof r);                                                           \
        return r;                                                                                                 \
    }                                                                                                             \
    CONTRACT static void conv1_back_fast_##CC(int64_t n0, int64_t n1, int64_t H, int64_t W, int64_t S, int64_t c0,    \
                                              const float *restrict x, const void *restrict dout,                 \
                                              const void *restrict out, const int bf, const uint8_t *restrict arg, \
                                              float *restrict pw, float *restrict xp) {                           \
        const int64_t Hp = H / 2, Wp = W / 2, P = W + 2;                                                          \
        VF d0 = {0}, d1 = {0}, d2 = {0}, d3 = {0}, d4 = {0}, d5 = {0}, d6 = {0}, d7 = {0}, d8 = {0}, db = {0};  \
        const VF zero = {0};                                                                                      \
        for (int64_t n = n0; n < n1; n++) {                                                                       \
            pad_plane(x + n * H * W, H, W, xp);                                                                   \
            for (int64_t Y = 0; Y < Hp; Y++)                                                                      \
                for (int64_t X = 0; X < Wp; X++) {                                                                \
                    const float *pt = xp + 2 * Y * P + 2 * X;                                                     \
                    int64_t o = ((n * Hp + Y) * Wp + X) * S + c0;                                                 \
                    VF g = ld_##CC(dout, bf, o), u = ld_##CC(out, bf, o);                                         \
                    VF dv = (VF)((VI)g & (u > zero)); /* relu: no gradient where the pooled value was 0 */       \
                    db += dv;                                                                                     \
                    VB a8;                                                                                        \
                    memcpy(&a8, arg + o, sizeof a8);                                                              \
                    VI at = __builtin_convertvector(a8, VI);                                                      \
                    VF e0 = (VF)((VI)dv & (at == 0)), e1 = (VF)((VI)dv & (at == 1));                              \
                    VF e2 = (VF)((VI)dv & (at == 2)), e3 = (VF)((VI)dv & (at == 3));                              \
                    /* tap (ky, kx) reads patch pixel (qy + ky, qx + kx) of the window pixel q with the max */   \
                    d0 += e0 * pt[0] + e1 * pt[1] + e2 * pt[P] + e3 * pt[P + 1];                                  \
                    d1 += e0 * pt[1] + e1 * pt[2] + e2 * pt[P + 1] + e3 * pt[P + 2];                              \
                    d2 += e0 * pt[2] + e1 * pt[3] + e2 * pt[P + 2] + e3 * pt[P + 3];                              \
                    d3 += e0 * pt[P] + e1 * pt[P + 1] + e2 * pt[2 * P] + e3 * pt[2 * P + 1];                      \
                    d4 += e0 * pt[P + 1] + e1 * pt[P + 2] + e2 * pt[2 * P + 1] + e3 * pt[2 * P + 2];              \
                    d5 += e0 * pt[P + 2] + e1 * pt[P + 3] + e2 * pt[2 * P + 2] + e3 * pt[2 * P + 3];              \
                    d6 += e0 * pt[2 * P] + e1 * pt[2 * P + 1] + e2 * pt[3 * P] + e3 * pt[3 * P + 1];              \
                    d7 += e0 * pt[2 * P + 1] + e1 * pt[2 * P + 2] + e2 * pt[3 * P + 1] + e3 * pt[3 * P + 2];      \
                    d8 += e0 * pt[2 * P + 2] + e1 * pt[2 * P + 3] + e2 * pt[3 * P + 2] + e3 * pt[3 * P + 3];      \
                }                                                                                                 \
        }                                                                                                         \
        VF all[10] = {d0, d1, d2, d3, d4, d5, d6, d7, d8, db};                                                    \
        for (int t = 0; t < 10; t++)                                                                              \
            for (int c = 0; c < CC; c++) pw[t * S + c0 + c] += all[t][c];                                         \
    }

#if WIDE
DEFINE_CONV1_BACK(16, f16v, u16x16, u32x16, u8x16, i32x16)
#endif
DEFINE_CONV1_BACK(8, f8v, u16x8, u32x8, u8x8, i32x8)


/* The first layer's forward with the window's four conv outputs in registers (see the backward above). */
#define DEFINE_CONV1_FWD(CC, VF, VU, VW, VB, VI)                                                                 \
    CONTRACT static void conv1_fast_##CC(int64_t n0, int64_t n1, int64_t H, int64_t W, int64_t S, int64_t c0,          \
                                         const float *restrict x, const float *restrict w, const float *restrict b, \
                                         void *restrict out, const int bf, uint8_t *restrict arg,               \
                                         float *restrict xp) {                                                  \
        const int64_t Hp = H / 2, Wp = W / 2, P = W + 2;                                                        \
        VF wv[9], bv, zero = {0};                                                                               \
        for (int t = 0; t < 9; t++) memcpy(&wv[t], w + t * S + c0, sizeof(VF));                                 \
        memcpy(&bv, b + c0, sizeof(VF));                                                                        \
        for (int64_t n = n0; n < n1; n++) {                                                                     \
            pad_plane(x + n * H * W, H, W, xp);                                                                 \
            for (int64_t Y = 0; Y < Hp; Y++)                                                                    \
                for (int64_t X = 0; X < Wp; X++) {                                                              \
                    const float *pt = xp + 2 * Y * P + 2 * X;                                                   \
                    VF a[4];                                                                                    \
                    for (int q = 0; q < 4; q++) {                                                               \
                        const float *r0 = pt + (q >> 1) * P + (q & 1), *r1 = r0 + P, *r2 = r1 + P;              \
                        a[q] = bv + r0[0] * wv[0] + r0[1] * wv[1] + r0[2] * wv[2] + r1[0] * wv[3] +             \
                               r1[1] * wv[4] + r1[2] * wv[5] + r2[0] * wv[6] + r2[1] * wv[7] + r2[2] * wv[8];   \
                    }                                                                                           \
                    VI at = {0};                                                                                \
                    VF m = a[0];                                                                                \
                    for (int q = 1; q < 4; q++) {                                                               \
                        VI gt = a[q] > m; /* strictly greater: the first max wins ties, as torch's */           \
                        at = (at & ~gt) | (gt & q);                                                             \
                        m = (VF)(((VI)m & ~gt) | ((VI)a[q] & gt));                                              \
                    }                                                                                           \
                    m = (VF)((VI)m & (m > zero)); /* relu after the max: the same as the max after relu */      \
                    int64_t o = ((n * Hp + Y) * Wp + X) * S + c0;                                               \
                    VB a8 = __builtin_convertvector(at, VB);                                                    \
                    memcpy(arg + o, &a8, sizeof a8);                                                            \
                    if (bf)                                                                                     \
                        st_bf16_##CC((uint16_t *)out + o, m);                                                   \
                    else                                                                                        \
                        memcpy((float *)out + o, &m, sizeof m);                                                 \
                }                                                                                               \
        }                                                                                                       \
    }

#if WIDE
DEFINE_CONV1_FWD(16, f16v, u16x16, u32x16, u8x16, i32x16)
#endif
DEFINE_CONV1_FWD(8, f8v, u16x8, u32x8, u8x8, i32x8)

/* The first layer's tiled loops FN_16 / FN_8 over all C (8 or 16) channels: one pass of 16 where WIDE, else
 * 8 channels per pass (the arguments after the channel stride and offset are the rest of FN's). */
#if WIDE
#define CHANNEL_PASSES(FN, ...) \
    BY_WIDTH(FN##_16(n0, n1, H, W, 16, 0, __VA_ARGS__), FN##_8(n0, n1, H, W, 8, 0, __VA_ARGS__))
#else
#define CHANNEL_PASSES(FN, ...)                                                              \
    do {                                                                                     \
        for (int64_t c0 = 0; c0 < C; c0 += 8) FN##_8(n0, n1, H, W, C, c0, __VA_ARGS__);      \
    } while (0)
#endif

/* The last layer's phases: on a 2x nearest-upsampled map, output pixel (2Y + py, 2X + px) sees only the
 * 2x2 source pixels from (Y + py - 1, X + px - 1) on (in a source map with a zero border of one), each
 * through the sum of the 3x3 taps that land on it. wp[py][px][ro][co][c] holds those sums. */
static void phase_weights(const float *w, int64_t C, float *wp) {
    static const int first[2][2] = {{0, 1}, {0, 2}}, last[2][2] = {{0, 2}, {1, 2}}; /* [p][o]: taps lo..hi */
    for (int py = 0; py < 2; py++)
        for (int px = 0; px < 2; px++)
            for (int ro = 0; ro < 2; ro++)
                for (int co = 0; co < 2; co++) {
                    float *dst = wp + ((((py * 2 + px) * 2 + ro) * 2 + co) * C);
                    for (int64_t c = 0; c < C; c++) dst[c] = 0.0f;
                    for (int ky = first[py][ro]; ky <= last[py][ro]; ky++)
                        for (int kx = first[px][co]; kx <= last[px][co]; kx++)
                            for (int64_t c = 0; c < C; c++) dst[c] += w[(ky * 3 + kx) * C + c];
                }
}

static inline __attribute__((always_inline)) void load_padded_map(const void *restrict a, const int bf, int64_t base,
                                                                  int64_t Hs, int64_t Ws, const int64_t C,
                                                                  float *restrict ap) {
    memset(ap, 0, sizeof(float) * (size_t)((Hs + 2) * (Ws + 2) * C));
    for (int64_t Y = 0; Y < Hs; Y++)
        for (int64_t X = 0; X < Ws; X++)
            for (int64_t c = 0; c < C; c++)
                ap[((Y + 1) * (Ws + 2) + X + 1) * C + c] = load(a, bf, base + (Y * Ws + X) * C + c);
}

/* The last layer's backward by source pixel: each interior pixel of the (zero-bordered) source map is read
 * by 16 (output pixel, phase tap) pairs, and each pair reads exactly one source pixel, so one pass over the
 * source pixels gathers both gradients: the source's (16 products, written once) and the phase weights'
 * (16 accumulators held in registers). gp is g with a zero border of one. */
#define DEFINE_UPCONV_BACK(CC, VF, VI)                                                                           \
    CONTRACT static void upconv_back_fast_##CC(int64_t n0, int64_t n1, int64_t Hs, int64_t Ws, const void *restrict a,    \
                                      const int bf, const float *restrict wp, const float *restrict g,           \
                                      void *restrict da, int relu_mask, float *restrict pwp, float *restrict pb, \
                                      float *restrict gp) {                                                      \
        const int64_t H = 2 * Hs, W = 2 * Ws, G = W + 2;                                                         \
        VF wv[16], dw[16];                                                                                       \
        const VF zero = {0};                                                                                     \
        for (int s = 0; s < 16; s++) {                                                                           \
            memcpy(&wv[s], wp + s * CC, sizeof(VF));                                                             \
            dw[s] = zero;                                                                                        \
        }                                                                                                        \
        for (int64_t n = n0; n < n1; n++) {                                                                      \
            const float *gn = g + n * H * W;                                                                     \
            pad_plane(gn, H, W, gp);                                                                             \
            float sg = 0.0f;                                                                                     \
            for (int64_t i = 0; i < H * W; i++) sg += gn[i];                                                     \
            *pb += sg;                                                                                           \
            for (int64_t Y = 0; Y < Hs; Y++)                                                                     \
                for (int64_t X = 0; X < Ws; X++) {                                                               \
                    int64_t o = ((n * Hs + Y) * Ws + X) * CC;                                                    \
                    VF src = ld_##CC(a, bf, o), acc = zero;                                                      \
                    const float *g0 = gp + 2 * Y * G + 2 * X; /* output rows 2Y-1 .. 2Y+2, cols 2X-1 .. 2X+2 */ \
                    for (int py = 0; py < 2; py++)                                                               \
                        for (int px = 0; px < 2; px++)                                                           \
                            for (int ro = 0; ro < 2; ro++)                                                       \
                                for (int co = 0; co < 2; co++) {                                                 \
                                    int sl = ((py * 2 + px) * 2 + ro) * 2 + co;                                  \
                                    float gv = g0[(3 - py - 2 * ro) * G + 3 - px - 2 * co];                      \
                                    acc += gv * wv[sl];                                                          \
                                    dw[sl] += gv * src;                                                          \
                                }                                                                                \
                    if (relu_mask) acc = (VF)((VI)acc & (src > zero));                                           \
                    if (bf)                                                                                      \
                        st_bf16_##CC((uint16_t *)da + o, acc);                                                   \
                    else                                                                                         \
                        memcpy((float *)da + o, &acc, sizeof acc);                                               \
                }                                                                                                \
        }                                                                                                        \
        for (int s = 0; s < 16; s++)                                                                             \
            for (int c = 0; c < CC; c++) pwp[s * CC + c] += dw[s][c];                                            \
    }

#if WIDE
DEFINE_UPCONV_BACK(16, f16v, i32x16)
DEFINE_UPCONV_BACK(8, f8v, i32x8)
#else
/* The same without WIDE, where 16 phase weights and 16 accumulators of even 8 floats are twice the registers:
 * a pass per 8 channels (at c0 of C) and phase (py, px) holds that phase's 4 weights and 4 accumulators, and
 * the source gradient's four phase sums meet in `part` (Hs * Ws * 8 floats) before the mask and the store. */
CONTRACT static void upconv_back_quarters(int64_t n0, int64_t n1, int64_t Hs, int64_t Ws, int64_t C,
                                          const void *restrict a, const int bf, const float *restrict wp,
                                          const float *restrict g, void *restrict da, int relu_mask,
                                          float *restrict pwp, float *restrict pb, float *restrict gp,
                                          float *restrict part) {
    const int64_t H = 2 * Hs, W = 2 * Ws, G = W + 2;
    const f8v zero = {0};
    for (int64_t n = n0; n < n1; n++) {
        const float *gn = g + n * H * W;
        pad_plane(gn, H, W, gp);
        float sg = 0.0f;
        for (int64_t i = 0; i < H * W; i++) sg += gn[i];
        *pb += sg;
        for (int64_t c0 = 0; c0 < C; c0 += 8)
            for (int q = 0; q < 4; q++) {
                const int py = q >> 1, px = q & 1;
                f8v wv[4], dw[4];
                for (int j = 0; j < 4; j++) {
                    memcpy(&wv[j], wp + (q * 4 + j) * C + c0, sizeof(f8v));
                    dw[j] = zero;
                }
                for (int64_t Y = 0; Y < Hs; Y++)
                    for (int64_t X = 0; X < Ws; X++) {
                        int64_t o = ((n * Hs + Y) * Ws + X) * C + c0;
                        f8v src = ld_8(a, bf, o), acc = zero;
                        const float *g0 = gp + 2 * Y * G + 2 * X;
                        for (int ro = 0; ro < 2; ro++)
                            for (int co = 0; co < 2; co++) {
                                float gv = g0[(3 - py - 2 * ro) * G + 3 - px - 2 * co];
                                acc += gv * wv[ro * 2 + co];
                                dw[ro * 2 + co] += gv * src;
                            }
                        float *pp = part + (Y * Ws + X) * 8;
                        f8v sum = acc;
                        if (q) {
                            f8v before;
                            memcpy(&before, pp, sizeof before);
                            sum = before + acc;
                        }
                        if (q < 3) {
                            memcpy(pp, &sum, sizeof sum);
                            continue;
                        }
                        if (relu_mask) sum = (f8v)((i32x8)sum & (src > zero));
                        if (bf)
                            st_bf16_8((uint16_t *)da + o, sum);
                        else
                            memcpy((float *)da + o, &sum, sizeof sum);
                    }
                for (int j = 0; j < 4; j++)
                    for (int c = 0; c < 8; c++) pwp[(q * 4 + j) * C + c0 + c] += dw[j][c];
            }
    }
}
#endif


/* The last layer's forward, by source pixel: its four output pixels (the phases), four taps each. */
#define DEFINE_UPCONV_FWD(CC, VF)                                                                               \
    CONTRACT static void upconv_fast_##CC(int64_t n0, int64_t n1, int64_t Hs, int64_t Ws, const void *restrict a, \
                                          const int bf, const float *restrict wp, float b, float *restrict z,  \
                                          float *restrict ap) {                                                \
        const int64_t H = 2 * Hs, W = 2 * Ws, P = Ws + 2;                                                      \
        VF wv[16];                                                                                             \
        for (int s = 0; s < 16; s++) memcpy(&wv[s], wp + s * CC, sizeof(VF));                                  \
        for (int64_t n = n0; n < n1; n++) {                                                                    \
            load_padded_map(a, bf, n * Hs * Ws * CC, Hs, Ws, CC, ap);                                          \
            for (int64_t Y = 0; Y < Hs; Y++)                                                                   \
                for (int64_t X = 0; X < Ws; X++) {                                                             \
                    VF s[3][3]; /* the source pixels (Y-1 .. Y+1, X-1 .. X+1), zero outside */                \
                    for (int i = 0; i < 3; i++)                                                                \
                        for (int j = 0; j < 3; j++)                                                            \
                            memcpy(&s[i][j], ap + ((Y + i) * P + X + j) * CC, sizeof(VF));                     \
                    for (int py = 0; py < 2; py++)                                                             \
                        for (int px = 0; px < 2; px++) {                                                       \
                            const VF *w4 = wv + (py * 2 + px) * 4;                                             \
                            VF acc = s[py][px] * w4[0] + s[py][px + 1] * w4[1] + s[py + 1][px] * w4[2] +       \
                                     s[py + 1][px + 1] * w4[3];                                                \
                            float sum = 0.0f;                                                                  \
                            for (int c = 0; c < CC; c++) sum += acc[c];                                        \
                            z[(n * H + 2 * Y + py) * W + 2 * X + px] = sum + b;                                \
                        }                                                                                      \
                }                                                                                              \
        }                                                                                                      \
    }

DEFINE_UPCONV_FWD(16, f16v)
DEFINE_UPCONV_FWD(8, f8v)

/* The gradient of the phase weights folded back onto the 3x3 taps they were summed from. */
static void unphase_gradient(const float *dwp, int64_t C, float *dw) {
    static const int first[2][2] = {{0, 1}, {0, 2}}, last[2][2] = {{0, 2}, {1, 2}};
    for (int64_t i = 0; i < 9 * C; i++) dw[i] = 0.0f;
    for (int py = 0; py < 2; py++)
        for (int px = 0; px < 2; px++)
            for (int ro = 0; ro < 2; ro++)
                for (int co = 0; co < 2; co++) {
                    const float *src = dwp + ((((py * 2 + px) * 2 + ro) * 2 + co) * C);
                    for (int ky = first[py][ro]; ky <= last[py][ro]; ky++)
                        for (int kx = first[px][co]; kx <= last[px][co]; kx++)
                            for (int64_t c = 0; c < C; c++) dw[(ky * 3 + kx) * C + c] += src[c];
                }
}

/* First layer: x (N, H, W) float32, one channel -> relu(conv(x) + b) with C <= 256 channels -> 2x2
 * max-pool (ceil mode: the last window may be cut) -> out (N, Hp, Wp, C), bf16 or float32. arg gets, per
 * pooled value, which of the window's four pixels held the max (0..3 row-major; the first on ties). */
EXPORT void aelab_conv1_relu_pool(int64_t N, int64_t H, int64_t W, int64_t C, int64_t k, const float *x,
                                  const float *w, const float *b, void *out, int bf, uint8_t *arg) {
    int nthreads = threads_for(N * H * W * C);
    int fast = k == 3 && H % 2 == 0 && W % 2 == 0 && (C == 16 || C == 8);
#pragma omp parallel num_threads(nthreads)
    {
        SPLIT_BATCH
#define CONV1(CC, BF) conv1_body(n0, n1, H, W, CC, k, x, w, b, out, BF, arg)
        FAST_OR_GENERIC(fast, (H + 2) * (W + 2), CHANNEL_PASSES(conv1_fast, x, w, b, out, bf, arg, scratch), CONV1);
#undef CONV1
    }
}

static inline __attribute__((always_inline)) void conv1_back_body(int64_t n0, int64_t n1, int64_t H, int64_t W,
                                                                 const int64_t C, int64_t k, const float *restrict x,
                                                                 const void *restrict dout, const void *restrict out,
                                                                 const int bf, const uint8_t *restrict arg,
                                                                 float *restrict pw) {
    const int64_t Hp = (H + 1) / 2, Wp = (W + 1) / 2, r = k / 2, taps = k * k;
    float *pb = pw + taps * C;
    float d[4][MAXC];
    for (int64_t n = n0; n < n1; n++) {
        const float *xn = x + n * H * W;
        for (int64_t Y = 0; Y < Hp; Y++)
            for (int64_t X = 0; X < Wp; X++) {
                int64_t o = ((n * Hp + Y) * Wp + X) * C;
                for (int64_t c = 0; c < C; c++) {
                    float g = load(dout, bf, o + c), v = load(out, bf, o + c);
                    float dv = v > 0.0f ? g : 0.0f; /* relu: no gradient where the pooled value was cut to 0 */
                    pb[c] += dv;
                    uint8_t at = arg[o + c];
                    d[0][c] = at == 0 ? dv : 0.0f;
                    d[1][c] = at == 1 ? dv : 0.0f;
                    d[2][c] = at == 2 ? dv : 0.0f;
                    d[3][c] = at == 3 ? dv : 0.0f;
                }
                for (int q = 0; q < 4; q++) {
                    int64_t y = 2 * Y + q / 2, xx = 2 * X + q % 2;
                    if (y >= H || xx >= W) continue;
                    const float *dq = d[q];
                    for (int64_t ky = 0; ky < k; ky++) {
                        int64_t iy = y + ky - r;
                        if (iy < 0 || iy >= H) continue;
                        for (int64_t kx = 0; kx < k; kx++) {
                            int64_t ix = xx + kx - r;
                            if (ix < 0 || ix >= W) continue;
                            float v = xn[iy * W + ix];
                            float *wt = pw + (ky * k + kx) * C;
                            for (int64_t c = 0; c < C; c++) wt[c] = fmaf(dq[c], v, wt[c]);
                        }
                    }
                }
            }
    }
}

/* Its backward: the gradient of the pooled output dout (N, Hp, Wp, C; bf16 or float32, as out) goes to
 * the pixel arg names, where the pooled value was positive (relu), then into the weight and bias gradients
 * dw (k * k * C) and db (C), float32. out is the forward's output (its sign is the relu mask). */
EXPORT int aelab_conv1_relu_pool_backward(int64_t N, int64_t H, int64_t W, int64_t C, int64_t k, const float *x,
                                          const void *dout, const void *out, int bf, const uint8_t *arg, float *dw,
                                          float *db) {
    const int64_t taps = k * k;
    int nthreads = threads_for(N * H * W * C);
    int fast = k == 3 && H % 2 == 0 && W % 2 == 0 && (C == 16 || C == 8);
    float *partial = calloc((size_t)nthreads * (size_t)(taps + 1) * (size_t)C, sizeof(float));
    if (!partial) return -1;
#pragma omp parallel num_threads(nthreads)
    {
        SPLIT_BATCH
        float *pw = partial + (int64_t)tid * (taps + 1) * C;
#define CONV1B(CC, BF) conv1_back_body(n0, n1, H, W, CC, k, x, dout, out, BF, arg, pw)
        FAST_OR_GENERIC(fast, (H + 2) * (W + 2),
                        CHANNEL_PASSES(conv1_back_fast, x, dout, out, bf, arg, pw, scratch), CONV1B);
#undef CONV1B
    }
    reduce_columns(partial, nthreads, (taps + 1) * C, partial);
    memcpy(dw, partial, (size_t)(taps * C) * sizeof(float));
    memcpy(db, partial + taps * C, (size_t)C * sizeof(float));
    free(partial);
    return 0;
}

static inline __attribute__((always_inline)) void upconv_body(int64_t n0, int64_t n1, int64_t Hs, int64_t Ws,
                                                             const int64_t C, int64_t H, int64_t W, int64_t k,
                                                             const void *restrict a, const int bf,
                                                             const float *restrict w, float b, float *restrict z) {
    const int64_t r = k / 2;
    float acc[MAXC];
    for (int64_t n = n0; n < n1; n++)
        for (int64_t y = 0; y < H; y++)
            for (int64_t x = 0; x < W; x++) {
                for (int64_t c = 0; c < C; c++) acc[c] = 0.0f;
                for (int64_t ky = 0; ky < k; ky++) {
                    int64_t uy = y + ky - r;
                    if (uy < 0 || uy >= H) continue;
                    for (int64_t kx = 0; kx < k; kx++) {
                        int64_t ux = x + kx - r;
                        if (ux < 0 || ux >= W) continue;
                        int64_t base = ((n * Hs + uy / 2) * Ws + ux / 2) * C;
                        const float *wt = w + (ky * k + kx) * C;
                        for (int64_t c = 0; c < C; c++) acc[c] = fmaf(load(a, bf, base + c), wt[c], acc[c]);
                    }
                }
                float s = 0.0f;
                for (int64_t c = 0; c < C; c++) s += acc[c];
                z[(n * H + y) * W + x] = s + b;
            }
}

/* Last layer: a (N, Hs, Ws, C; bf16 or float32), upsampled 2x (nearest) and cut to (H, W), convolved to
 * one channel + b: z (N, H, W) float32, the logits. */
EXPORT void aelab_upconv1(int64_t N, int64_t Hs, int64_t Ws, int64_t C, int64_t H, int64_t W, int64_t k,
                          const void *a, int bf, const float *w, float b, float *z) {
    int nthreads = threads_for(N * H * W * C);
    int fast = k == 3 && H == 2 * Hs && W == 2 * Ws && (C == 16 || C == 8);
    float *wp = fast ? malloc(sizeof(float) * (size_t)(16 * C)) : NULL;
    if (wp) phase_weights(w, C, wp);
#pragma omp parallel num_threads(nthreads)
    {
        SPLIT_BATCH
#define UPC(CC, BF) upconv_body(n0, n1, Hs, Ws, CC, H, W, k, a, BF, w, b, z)
        FAST_OR_GENERIC(wp != NULL, (Hs + 2) * (Ws + 2) * C,
                        BY_WIDTH(upconv_fast_16(n0, n1, Hs, Ws, a, bf, wp, b, z, scratch),
                                 upconv_fast_8(n0, n1, Hs, Ws, a, bf, wp, b, z, scratch)),
                        UPC);
#undef UPC
    }
    free(wp);
}

static inline __attribute__((always_inline)) void upconv_back_body(int64_t n0, int64_t n1, int64_t Hs, int64_t Ws,
                                                                  const int64_t C, int64_t H, int64_t W, int64_t k,
                                                                  const void *restrict a, const int bf,
                                                                  const float *restrict w, const float *restrict g,
                                                                  void *restrict da, int relu_mask,
                                                                  float *restrict pw) {
    const int64_t r = k / 2, taps = k * k;
    float acc[MAXC];
    for (int64_t n = n0; n < n1; n++) {
        const float *gn = g + n * H * W;
        /* input: each source pixel collects from the up-to-four upsampled pixels it became; the weights
         * collect g times the same source pixel, so both come from one read of it */
        for (int64_t Y = 0; Y < Hs; Y++)
            for (int64_t X = 0; X < Ws; X++) {
                int64_t o = ((n * Hs + Y) * Ws + X) * C;
                for (int64_t c = 0; c < C; c++) acc[c] = 0.0f;
                for (int q = 0; q < 4; q++) {
                    int64_t uy = 2 * Y + q / 2, ux = 2 * X + q % 2;
                    if (uy >= H || ux >= W) continue;
                    for (int64_t ky = 0; ky < k; ky++) {
                        int64_t y = uy - ky + r;
                        if (y < 0 || y >= H) continue;
                        for (int64_t kx = 0; kx < k; kx++) {
                            int64_t x = ux - kx + r;
                            if (x < 0 || x >= W) continue;
                            float gv = gn[y * W + x];
                            const float *wt = w + (ky * k + kx) * C;
                            float *dwt = pw + (ky * k + kx) * C;
                            for (int64_t c = 0; c < C; c++) {
                                acc[c] = fmaf(gv, wt[c], acc[c]);
                                dwt[c] = fmaf(gv, load(a, bf, o + c), dwt[c]);
                            }
                        }
                    }
                }
                for (int64_t c = 0; c < C; c++) {
                    float d = acc[c];
                    if (relu_mask) d = load(a, bf, o + c) > 0.0f ? d : 0.0f;
                    if (bf)
                        ((uint16_t *)da)[o + c] = f32_to_bf16(d);
                    else
                        ((float *)da)[o + c] = d;
                }
            }
        float sg = 0.0f;
        for (int64_t i = 0; i < H * W; i++) sg += gn[i];
        pw[taps * C] += sg;
    }
}

/* Its backward from g = dLoss/dz (N, H, W) float32: dw (k * k * C) and db (1) float32, and the gradient of
 * a (N, Hs, Ws, C) into da (bf16 or float32, as a), summed over each pixel's 2x2 upsampled block; with
 * relu_mask, times (a > 0): the backward of the ReLU that made a. */
EXPORT int aelab_upconv1_backward(int64_t N, int64_t Hs, int64_t Ws, int64_t C, int64_t H, int64_t W, int64_t k,
                                  const void *a, int bf, const float *w, const float *g, void *da, int relu_mask,
                                  float *dw, float *db) {
    const int64_t taps = k * k;
    int nthreads = threads_for(N * H * W * C);
    int fast = k == 3 && H == 2 * Hs && W == 2 * Ws && (C == 16 || C == 8);
    /* per thread: the weight (or phase-weight, 16 * C) gradient and the bias gradient */
    int64_t width = (fast ? 16 * C : taps * C) + 1;
    float *partial = calloc((size_t)nthreads * (size_t)width, sizeof(float));
    float *wp = fast ? malloc(sizeof(float) * (size_t)(16 * C)) : NULL;
    if (!partial || (fast && !wp)) {
        free(partial);
        free(wp);
        return -1;
    }
    if (fast) phase_weights(w, C, wp);
    int failed = 0;
#pragma omp parallel num_threads(nthreads) reduction(| : failed)
    {
        SPLIT_BATCH
        float *pw = partial + (int64_t)tid * width;
        if (fast) {
            float *gp = malloc(sizeof(float) * (size_t)((H + 2) * (W + 2)));
#if WIDE
            if (gp && C == 16)
                upconv_back_fast_16(n0, n1, Hs, Ws, a, bf, wp, g, da, relu_mask, pw, pw + 16 * C, gp);
            else if (gp)
                upconv_back_fast_8(n0, n1, Hs, Ws, a, bf, wp, g, da, relu_mask, pw, pw + 16 * C, gp);
            else
                failed = 1;
#else
            float *part = malloc(sizeof(float) * (size_t)(Hs * Ws * 8));
            if (gp && part)
                upconv_back_quarters(n0, n1, Hs, Ws, C, a, bf, wp, g, da, relu_mask, pw, pw + 16 * C, gp, part);
            else
                failed = 1;
            free(part);
#endif
            free(gp);
        } else {
#define UPCB(CC, BF) upconv_back_body(n0, n1, Hs, Ws, CC, H, W, k, a, BF, w, g, da, relu_mask, pw)
            BY_CHANNELS(UPCB);
#undef UPCB
        }
    }
    reduce_columns(partial, nthreads, width, partial);
    if (fast)
        unphase_gradient(partial, C, dw);
    else
        memcpy(dw, partial, (size_t)(taps * C) * sizeof(float));
    *db = partial[width - 1];
    free(partial);
    free(wp);
    return failed ? -1 : 0;
}

/* ---- 3x3 'same' convolutions with 8 or 16 channels on each side (the conv autoencoder's middle layers) ---
 * oneDNN runs these small feature maps (14x14, 7x7, 4x4) at 20-120 GFLOP/s, much of it in reorders and
 * per-call set-up. Here, per sample, the input (or the output gradient) is copied once into a zero-bordered
 * float32 plane, and every output pixel is a vector over the output (or input) channels built from
 * broadcast products; four pixels at a time share each weight vector load. x, out, g, dx: NHWC, bf16 or
 * float32 (bf); w: (3, 3, CI, CO) float32; dw: (3, 3, CI, CO), db: (CO) float32. */

/* A zero-bordered float32 copy of one (H, W, C) plane of a, with 4 pixels of slack after it, so a block of
 * four pixels may read past a row's end (into zeros or the next row: never stored). */
static inline void pad_map(const void *a, int bf, int64_t base, int64_t H, int64_t W, int64_t C, float *ap) {
    memset(ap, 0, sizeof(float) * (size_t)(((H + 2) * (W + 2) + 4) * C));
    for (int64_t y = 0; y < H; y++)
        for (int64_t x = 0; x < W; x++)
            for (int64_t c = 0; c < C; c++)
                ap[((y + 1) * (W + 2) + x + 1) * C + c] = load(a, bf, base + (y * W + x) * C + c);
}

#define DEFINE_CONV3(CI, CO, VO, VW)                                                                                 \
    CONTRACT static void conv3_fwd_##CI##_##CO(int64_t n0, int64_t n1, int64_t H, int64_t W, const void *x,          \
                                               int bf, const float *restrict w, const float *restrict b,             \
                                               void *out, float *restrict xp) {                                      \
        const int64_t P = W + 2;                                                                                     \
        for (int64_t n = n0; n < n1; n++) {                                                                          \
            pad_map(x, bf, n * H * W * CI, H, W, CI, xp);                                                            \
            for (int64_t o0 = 0; o0 < CO; o0 += VW) { /* VW output channels at a time */                             \
                VO bv;                                                                                               \
                memcpy(&bv, b + o0, sizeof bv);                                                                      \
                for (int64_t y = 0; y < H; y++)                                                                      \
                    for (int64_t x0 = 0; x0 < W; x0 += 4) {                                                          \
                        VO a0 = bv, a1 = bv, a2 = bv, a3 = bv;                                                       \
                        for (int ky = 0; ky < 3; ky++)                                                               \
                            for (int kx = 0; kx < 3; kx++) {                                                         \
                                const float *r = xp + ((y + ky) * P + x0 + kx) * CI;                                 \
                                const float *wt = w + (ky * 3 + kx) * CI * CO + o0;                                  \
                                for (int ci = 0; ci < CI; ci++) {                                                    \
                                    VO wv;                                                                           \
                                    memcpy(&wv, wt + ci * CO, sizeof wv);                                            \
                                    a0 += r[ci] * wv;                                                                \
                                    a1 += r[CI + ci] * wv;                                                           \
                                    a2 += r[2 * CI + ci] * wv;                                                       \
                                    a3 += r[3 * CI + ci] * wv;                                                       \
                                }                                                                                    \
                            }                                                                                        \
                        VO acc[4] = {a0, a1, a2, a3};                                                                \
                        for (int j = 0; j < 4 && x0 + j < W; j++) {                                                  \
                            int64_t o = ((n * H + y) * W + x0 + j) * CO + o0;                                        \
                            if (bf)                                                                                  \
                                st_bf16_##VW((uint16_t *)out + o, acc[j]);                                           \
                            else                                                                                     \
                                memcpy((float *)out + o, &acc[j], sizeof acc[j]);                                    \
                        }                                                                                            \
                    }                                                                                                \
            }                                                                                                        \
        }                                                                                                            \
    }                                                                                                                \
    /* dw[tap][ci][:] += x[pixel + tap][ci] * g[pixel][:], db += g[pixel][:]; pw: this thread's 9*CI*CO + CO */      \
    CONTRACT static void conv3_dw_##CI##_##CO(int64_t n0, int64_t n1, int64_t H, int64_t W, const void *x,           \
                                              const void *g, int bf, float *restrict pw, float *restrict xp,         \
                                              float *restrict gf) {                                                  \
        const int64_t P = W + 2, HW = H * W;                                                                         \
        VO bacc[CO / VW];                                                                                            \
        for (int k = 0; k < CO / VW; k++) bacc[k] = (VO){0};                                                         \
        for (int64_t n = n0; n < n1; n++) {                                                                          \
            pad_map(x, bf, n * HW * CI, H, W, CI, xp);                                                               \
            for (int64_t i = 0; i < HW * CO; i++) gf[i] = load(g, bf, n * HW * CO + i);                              \
            for (int64_t o0 = 0; o0 < CO; o0 += VW) { /* VW output channels at a time */                             \
                for (int64_t i = 0; i < HW; i++) {                                                                   \
                    VO gv;                                                                                           \
                    memcpy(&gv, gf + i * CO + o0, sizeof gv);                                                        \
                    bacc[o0 / VW] += gv;                                                                             \
                }                                                                                                    \
                for (int t = 0; t < 9; t++) {                                                                        \
                    int ky = t / 3, kx = t % 3;                                                                      \
                    for (int c0 = 0; c0 < CI; c0 += 4) {                                                             \
                        VO a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};                                                   \
                        for (int64_t y = 0; y < H; y++) {                                                            \
                            const float *r = xp + ((y + ky) * P + kx) * CI + c0;                                     \
                            const float *gr = gf + y * W * CO + o0;                                                  \
                            for (int64_t xx = 0; xx < W; xx++) {                                                     \
                                VO gv;                                                                               \
                                memcpy(&gv, gr + xx * CO, sizeof gv);                                                \
                                const float *rv = r + xx * CI;                                                       \
                                a0 += rv[0] * gv;                                                                    \
                                a1 += rv[1] * gv;                                                                    \
                                a2 += rv[2] * gv;                                                                    \
                                a3 += rv[3] * gv;                                                                    \
                            }                                                                                        \
                        }                                                                                            \
                        float *d = pw + (t * CI + c0) * CO + o0;                                                     \
                        for (int c = 0; c < VW; c++) {                                                               \
                            d[c] += a0[c];                                                                           \
                            d[CO + c] += a1[c];                                                                      \
                            d[2 * CO + c] += a2[c];                                                                  \
                            d[3 * CO + c] += a3[c];                                                                  \
                        }                                                                                            \
                    }                                                                                                \
                }                                                                                                    \
            }                                                                                                        \
        }                                                                                                            \
        for (int64_t o0 = 0; o0 < CO; o0 += VW)                                                                      \
            for (int c = 0; c < VW; c++) pw[9 * CI * CO + o0 + c] += bacc[o0 / VW][c];                               \
    }

/* VO holds VW output channels: all 16 where WIDE, else 8 per pass over a sample (see WIDE) */
#if WIDE
DEFINE_CONV3(16, 8, f8v, 8)
DEFINE_CONV3(8, 8, f8v, 8)
DEFINE_CONV3(8, 16, f16v, 16)
DEFINE_CONV3(16, 16, f16v, 16)
#else
DEFINE_CONV3(16, 8, f8v, 8)
DEFINE_CONV3(8, 8, f8v, 8)
DEFINE_CONV3(8, 16, f8v, 8)
DEFINE_CONV3(16, 16, f8v, 8)
#endif

#define CONV3_DISPATCH(WHAT, ...)                                                                                  \
    do {                                                                                                         \
        if (CI == 16 && CO == 8) conv3_##WHAT##_16_8(__VA_ARGS__);                                               \
        else if (CI == 8 && CO == 8) conv3_##WHAT##_8_8(__VA_ARGS__);                                            \
        else if (CI == 8 && CO == 16) conv3_##WHAT##_8_16(__VA_ARGS__);                                          \
        else conv3_##WHAT##_16_16(__VA_ARGS__);                                                                  \
    } while (0)

/* CALL for the input gradient: the forward of g with the kernel flipped, so CO channels in and CI out */
#define FLIPPED(CALL)                                                                            \
    do {                                                                                         \
        const int64_t CI_ = CI;                                                                  \
        {                                                                                        \
            const int64_t CI = CO, CO = CI_; /* the flipped convolution's channel counts */      \
            CALL;                                                                                \
        }                                                                                        \
    } while (0)

/* The per-thread rows of [weight gradient (9 * CI * CO) | bias gradient (CO)] summed into dw and db. */
static void conv3_weight_grads(float *partial, int nthreads, int64_t CI, int64_t CO, float *dw, float *db) {
    reduce_columns(partial, nthreads, 9 * CI * CO + CO, partial);
    memcpy(dw, partial, sizeof(float) * (size_t)(9 * CI * CO));
    memcpy(db, partial + 9 * CI * CO, sizeof(float) * (size_t)CO);
}

/* Whether the conv3 kernels take these channel counts (8 or 16 on each side). */
EXPORT int aelab_conv3_takes(int64_t CI, int64_t CO) { return (CI == 8 || CI == 16) && (CO == 8 || CO == 16); }

/* out = conv3x3(x) + b. Returns 0, or -1 (channels not taken, or no memory). */
EXPORT int aelab_conv3(int64_t N, int64_t H, int64_t W, int64_t CI, int64_t CO, const void *x, int bf,
                       const float *w, const float *b, void *out) {
    if (!aelab_conv3_takes(CI, CO)) return -1;
    int nthreads = threads_for(N * H * W * CO * 9);
    int failed = 0;
#pragma omp parallel num_threads(nthreads) reduction(| : failed)
    {
        SPLIT_BATCH
        float *xp = malloc(sizeof(float) * (size_t)(((H + 2) * (W + 2) + 4) * CI));
        if (xp)
            CONV3_DISPATCH(fwd, n0, n1, H, W, x, bf, w, b, out, xp);
        else
            failed = 1;
        free(xp);
    }
    return failed ? -1 : 0;
}

/* The backward: dx (may be NULL: not needed), dw and db from g = dLoss/dout; w as for the forward. */
EXPORT int aelab_conv3_backward(int64_t N, int64_t H, int64_t W, int64_t CI, int64_t CO, const void *x, const void *g,
                                int bf, const float *w, void *dx, float *dw, float *db) {
    if (!aelab_conv3_takes(CI, CO)) return -1;
    int nthreads = threads_for(N * H * W * CO * 9);
    int64_t width = 9 * CI * CO + CO;
    float *partial = calloc((size_t)nthreads * (size_t)width, sizeof(float));
    /* the input gradient is the forward of g (CO channels in, CI out) with the kernel flipped, no bias */
    float *wf = malloc(sizeof(float) * (size_t)(9 * CO * CI)), *zero = calloc((size_t)CI, sizeof(float));
    if (!partial || !wf || !zero) {
        free(partial);
        free(wf);
        free(zero);
        return -1;
    }
    for (int t = 0; t < 9; t++) /* wf[tap][co][ci] = w[8 - tap][ci][co] */
        for (int64_t ci = 0; ci < CI; ci++)
            for (int64_t co = 0; co < CO; co++) wf[(t * CO + co) * CI + ci] = w[((8 - t) * CI + ci) * CO + co];
    int failed = 0;
#pragma omp parallel num_threads(nthreads) reduction(| : failed)
    {
        SPLIT_BATCH
        size_t plane = (size_t)((H + 2) * (W + 2) + 4);
        float *xp = malloc(sizeof(float) * plane * (size_t)CI), *gp = malloc(sizeof(float) * plane * (size_t)CO);
        if (xp && gp) {
            if (dx) FLIPPED(CONV3_DISPATCH(fwd, n0, n1, H, W, g, bf, wf, zero, dx, gp));
            CONV3_DISPATCH(dw, n0, n1, H, W, x, g, bf, partial + (int64_t)tid * width, xp, gp);
        } else
            failed = 1;
        free(xp);
        free(gp);
    }
    conv3_weight_grads(partial, nthreads, CI, CO, dw, db);
    free(partial);
    free(wf);
    free(zero);
    return failed ? -1 : 0;
}

/* ---- the same convolutions in bf16 dot products (AVX-512 BF16) ---------------------------------------
 * vdpbf16ps multiplies 32 bf16 pairs and adds each pair's two products into one float32 lane: one
 * instruction does what two float32 FMAs do, on inputs that are bf16 already (the activations between
 * oneDNN layers in bf16-mixed). Pairs run along the channels for the forward (input channels) and the input
 * gradient (output channels), and along x for the weight gradient (pixel pairs, so W must be even). The
 * weights are rounded to bf16 first, as autocast does; sums stay in float32. */
#if defined(__AVX512BF16__) && defined(__AVX512VL__) && defined(__AVX512F__)
#include <immintrin.h>
#define HAVE_BF16_DOT 1

static inline uint32_t pair_bf16(float lo, float hi) { return (uint32_t)f32_to_bf16(lo) | ((uint32_t)f32_to_bf16(hi) << 16); }

/* a zero-bordered copy of one (H, W, C) bf16 plane, with slack after it */
static inline void pad_bf16(const uint16_t *a, int64_t H, int64_t W, int64_t C, uint16_t *ap) {
    memset(ap, 0, sizeof(uint16_t) * (size_t)(((H + 2) * (W + 2) + 8) * C));
    for (int64_t y = 0; y < H; y++)
        memcpy(ap + ((y + 1) * (W + 2) + 1) * C, a + y * W * C, sizeof(uint16_t) * (size_t)(W * C));
}


/* (a[c], b[c]) for c < C as C uint32 pairs: two pixels' channels interleaved, whole vectors at a time */
static inline void interleave16(const uint16_t *a, const uint16_t *b, uint32_t *out) {
    u16x16 va, vb;
    memcpy(&va, a, sizeof va);
    memcpy(&vb, b, sizeof vb);
    const u16x16 lo_mask = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23};
    const u16x16 hi_mask = {8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    u16x16 lo = __builtin_shuffle(va, vb, lo_mask), hi = __builtin_shuffle(va, vb, hi_mask);
    memcpy(out, &lo, sizeof lo);
    memcpy(out + 8, &hi, sizeof hi);
}

static inline void interleave8(const uint16_t *a, const uint16_t *b, uint32_t *out) {
    u16x8 va, vb;
    memcpy(&va, a, sizeof va);
    memcpy(&vb, b, sizeof vb);
    const u16x8 lo_mask = {0, 8, 1, 9, 2, 10, 3, 11};
    const u16x8 hi_mask = {4, 12, 5, 13, 6, 14, 7, 15};
    u16x8 lo = __builtin_shuffle(va, vb, lo_mask), hi = __builtin_shuffle(va, vb, hi_mask);
    memcpy(out, &lo, sizeof lo);
    memcpy(out + 4, &hi, sizeof hi);
}
#define INTERLEAVE(C, a, b, out) interleave##C(a, b, out)

/* per-width vector ops: 16 float32 lanes (zmm) or 8 (ymm) */
#define V16 __m512
#define V16I __m512i
#define DP16(acc, a, b) _mm512_dpbf16_ps(acc, (__m512bh)(a), (__m512bh)(b))
#define SET1_16(v) _mm512_set1_epi32((int)(v))
#define LDI16(p) _mm512_loadu_si512((const void *)(p))
#define LDF16(p) _mm512_loadu_ps(p)
#define ZERO16 _mm512_setzero_ps()
#define STBF16_16(p, v) _mm256_storeu_si256((__m256i *)(p), (__m256i)_mm512_cvtneps_pbh(v))
#define STF_16(p, v) _mm512_storeu_ps(p, v)
#define V8 __m256
#define V8I __m256i
#define DP8(acc, a, b) _mm256_dpbf16_ps(acc, (__m256bh)(a), (__m256bh)(b))
#define SET1_8(v) _mm256_set1_epi32((int)(v))
#define LDI8(p) _mm256_loadu_si256((const __m256i *)(p))
#define LDF8(p) _mm256_loadu_ps(p)
#define ZERO8 _mm256_setzero_ps()
#define STBF16_8(p, v) _mm_storeu_si128((__m128i *)(p), (__m128i)_mm256_cvtneps_pbh(v))
#define STF_8(p, v) _mm256_storeu_ps(p, v)

/* forward, output channels CO in the lanes: wp[tap][i][co] = (w[tap][2i][co], w[tap][2i + 1][co]); eight
 * pixels per block, eight independent accumulator chains (the dot product's latency, not its throughput,
 * bounds four) */
#define DEFINE_DOT_FWD(CI, CO)                                                                                   \
    static void dot_fwd_##CI##_##CO(int64_t n0, int64_t n1, int64_t H, int64_t W, const uint16_t *x,              \
                                    const uint32_t *wp, const float *b, uint16_t *out, uint16_t *xp) {           \
        const int64_t P = W + 2;                                                                                 \
        V##CO bv = LDF##CO(b);                                                                                   \
        for (int64_t n = n0; n < n1; n++) {                                                                      \
            pad_bf16(x + n * H * W * CI, H, W, CI, xp);                                                          \
            const uint32_t *xq = (const uint32_t *)xp; /* channel pairs */                                       \
            for (int64_t y = 0; y < H; y++)                                                                      \
                for (int64_t x0 = 0; x0 < W; x0 += 8) {                                                          \
                    V##CO a[8] = {bv, bv, bv, bv, bv, bv, bv, bv};                                               \
                    for (int t = 0; t < 9; t++) {                                                                \
                        const uint32_t *r = xq + ((y + t / 3) * P + x0 + t % 3) * (CI / 2);                      \
                        const uint32_t *wt = wp + t * (CI / 2) * CO;                                             \
                        for (int i = 0; i < CI / 2; i++) {                                                       \
                            V##CO##I wv = LDI##CO(wt + i * CO);                                                  \
                            for (int q = 0; q < 8; q++) a[q] = DP##CO(a[q], SET1_##CO(r[q * (CI / 2) + i]), wv); \
                        }                                                                                        \
                    }                                                                                            \
                    uint16_t *o = out + ((n * H + y) * W + x0) * CO;                                             \
                    for (int q = 0; q < 8 && x0 + q < W; q++) STBF16_##CO(o + q * CO, a[q]);                     \
                }                                                                                                \
        }                                                                                                        \
    }

/* weight gradient from pixel pairs along x (W even): dw[tap][ci][co] = sum over pairs of
 * (x[p + tap][ci], x[p + 1 + tap][ci]) . (g[p][co], g[p + 1][co]); the pairs of x are taken from the padded
 * plane at an even (kx = 0, 2) or odd (kx = 1) column, so both alignments are laid out once per sample. */
#define DEFINE_DOT_DW(CI, CO)                                                                                    \
    static void dot_dw_##CI##_##CO(int64_t n0, int64_t n1, int64_t H, int64_t W, const uint16_t *x,               \
                                   const uint16_t *g, float *pw, uint16_t *xp, uint32_t *xe, uint32_t *xo,       \
                                   uint32_t *g2) {                                                               \
        const int64_t P = W + 2, J = P / 2, W2 = W / 2;                                                          \
        float *pb = pw + 9 * CI * CO;                                                                            \
        for (int64_t n = n0; n < n1; n++) {                                                                      \
            pad_bf16(x + n * H * W * CI, H, W, CI, xp);                                                          \
            for (int64_t yy = 0; yy < H + 2; yy++)                                                               \
                for (int64_t j = 0; j < J; j++) {                                                                \
                    const uint16_t *r = xp + (yy * P + 2 * j) * CI;                                              \
                    INTERLEAVE(CI, r, r + CI, xe + (yy * J + j) * CI);                                           \
                    INTERLEAVE(CI, r + CI, r + 2 * CI, xo + (yy * J + j) * CI); /* past a row: never read */     \
                }                                                                                                \
            const uint16_t *gn = g + n * H * W * CO;                                                             \
            for (int64_t y = 0; y < H; y++)                                                                      \
                for (int64_t j = 0; j < W2; j++) {                                                               \
                    const uint16_t *r = gn + (y * W + 2 * j) * CO;                                               \
                    INTERLEAVE(CO, r, r + CO, g2 + (y * W2 + j) * CO);                                           \
                    for (int co = 0; co < CO; co++) pb[co] += bf16_to_f32(r[co]) + bf16_to_f32(r[CO + co]);      \
                }                                                                                                \
            for (int t = 0; t < 9; t++) {                                                                        \
                int ky = t / 3, kx = t % 3;                                                                      \
                const uint32_t *xs = kx == 1 ? xo : xe;                                                          \
                int64_t shift = kx / 2; /* kx 0 -> pair column j, kx 1 -> odd pair j, kx 2 -> pair j + 1 */      \
                for (int c0 = 0; c0 < CI; c0 += 8) {                                                             \
                    V##CO a[8] = {ZERO##CO, ZERO##CO, ZERO##CO, ZERO##CO, ZERO##CO, ZERO##CO, ZERO##CO, ZERO##CO}; \
                    for (int64_t y = 0; y < H; y++) {                                                            \
                        const uint32_t *r = xs + ((y + ky) * J + shift) * CI + c0;                               \
                        const uint32_t *gr = g2 + y * W2 * CO;                                                   \
                        for (int64_t j = 0; j < W2; j++) {                                                       \
                            V##CO##I gv = LDI##CO(gr + j * CO);                                                  \
                            const uint32_t *rv = r + j * CI;                                                     \
                            for (int q = 0; q < 8; q++) a[q] = DP##CO(a[q], SET1_##CO(rv[q]), gv);               \
                        }                                                                                        \
                    }                                                                                            \
                    float tmp[8][CO];                                                                            \
                    for (int q = 0; q < 8; q++) STF_##CO(tmp[q], a[q]);                                          \
                    for (int q = 0; q < 8; q++)                                                                  \
                        for (int co = 0; co < CO; co++) pw[(t * CI + c0 + q) * CO + co] += tmp[q][co];           \
                }                                                                                                \
            }                                                                                                    \
        }                                                                                                        \
    }

#define DEFINE_DOT(CI, CO) DEFINE_DOT_FWD(CI, CO) DEFINE_DOT_DW(CI, CO)
DEFINE_DOT(16, 8)
DEFINE_DOT(8, 8)
DEFINE_DOT(8, 16)
DEFINE_DOT(16, 16)

#define DOT_DISPATCH(WHAT, ...)                                                                                  \
    do {                                                                                                         \
        if (CI == 16 && CO == 8) dot_##WHAT##_16_8(__VA_ARGS__);                                                 \
        else if (CI == 8 && CO == 8) dot_##WHAT##_8_8(__VA_ARGS__);                                              \
        else if (CI == 8 && CO == 16) dot_##WHAT##_8_16(__VA_ARGS__);                                            \
        else dot_##WHAT##_16_16(__VA_ARGS__);                                                                    \
    } while (0)
#else
#define HAVE_BF16_DOT 0
#endif

/* Whether aelab_conv3_bf16 exists in this build (the CPU has AVX-512 BF16) and takes this layer. */
EXPORT int aelab_conv3_bf16_takes(int64_t CI, int64_t CO, int64_t W) {
    return HAVE_BF16_DOT && aelab_conv3_takes(CI, CO) && W % 2 == 0;
}

/* bf16 x (N, H, W, CI) -> out (N, H, W, CO) bf16 = conv3x3(x) + b; w (3, 3, CI, CO), b float32. */
EXPORT int aelab_conv3_bf16(int64_t N, int64_t H, int64_t W, int64_t CI, int64_t CO, const uint16_t *x,
                            const float *w, const float *b, uint16_t *out) {
    if (!aelab_conv3_bf16_takes(CI, CO, W)) return -1;
#if HAVE_BF16_DOT
    uint32_t *wp = malloc(sizeof(uint32_t) * (size_t)(9 * CI / 2 * CO));
    if (!wp) return -1;
    for (int t = 0; t < 9; t++)
        for (int64_t i = 0; i < CI / 2; i++)
            for (int64_t co = 0; co < CO; co++)
                wp[(t * CI / 2 + i) * CO + co] = pair_bf16(w[(t * CI + 2 * i) * CO + co], w[(t * CI + 2 * i + 1) * CO + co]);
    int nthreads = threads_for(N * H * W * CO * 9);
    int failed = 0;
#pragma omp parallel num_threads(nthreads) reduction(| : failed)
    {
        SPLIT_BATCH
        uint16_t *xp = malloc(sizeof(uint16_t) * (size_t)(((H + 2) * (W + 2) + 8) * CI));
        if (xp)
            DOT_DISPATCH(fwd, n0, n1, H, W, x, wp, b, out, xp);
        else
            failed = 1;
        free(xp);
    }
    free(wp);
    return failed ? -1 : 0;
#else
    (void)N, (void)H, (void)x, (void)w, (void)b, (void)out;
    return -1;
#endif
}

/* Its backward from bf16 g (N, H, W, CO): dx bf16 (NULL: not needed), dw (3, 3, CI, CO) and db float32. */
EXPORT int aelab_conv3_bf16_backward(int64_t N, int64_t H, int64_t W, int64_t CI, int64_t CO, const uint16_t *x,
                                     const uint16_t *g, const float *w, uint16_t *dx, float *dw, float *db) {
    if (!aelab_conv3_bf16_takes(CI, CO, W)) return -1;
#if HAVE_BF16_DOT
    uint32_t *wq = malloc(sizeof(uint32_t) * (size_t)(9 * CO / 2 * CI));
    int64_t width = 9 * CI * CO + CO;
    int nthreads = threads_for(N * H * W * CO * 9);
    float *partial = calloc((size_t)nthreads * (size_t)width, sizeof(float));
    if (!wq || !partial) {
        free(wq);
        free(partial);
        return -1;
    }
    /* the input gradient is the forward of g (CO channels in, CI out) with the kernel flipped, no bias:
     * wq[tap][j][ci] = (w[8 - tap][ci][2j], w[8 - tap][ci][2j + 1]) */
    for (int t = 0; t < 9; t++)
        for (int64_t j = 0; j < CO / 2; j++)
            for (int64_t ci = 0; ci < CI; ci++)
                wq[(t * CO / 2 + j) * CI + ci] =
                    pair_bf16(w[((8 - t) * CI + ci) * CO + 2 * j], w[((8 - t) * CI + ci) * CO + 2 * j + 1]);
    float zero[16] = {0};
    int failed = 0;
#pragma omp parallel num_threads(nthreads) reduction(| : failed)
    {
        SPLIT_BATCH
        int64_t P = W + 2, J = P / 2;
        size_t plane = (size_t)((H + 2) * P + 8);
        uint16_t *xp = malloc(sizeof(uint16_t) * plane * (size_t)CI), *gp = malloc(sizeof(uint16_t) * plane * (size_t)CO);
        uint32_t *xe = malloc(sizeof(uint32_t) * (size_t)((H + 2) * J * CI + 8 * CI));
        uint32_t *xo = malloc(sizeof(uint32_t) * (size_t)((H + 2) * J * CI + 8 * CI));
        uint32_t *g2 = malloc(sizeof(uint32_t) * (size_t)(H * (W / 2) * CO));
        if (xp && gp && xe && xo && g2) {
            if (dx) FLIPPED(DOT_DISPATCH(fwd, n0, n1, H, W, g, wq, zero, dx, gp));
            DOT_DISPATCH(dw, n0, n1, H, W, x, g, partial + (int64_t)tid * width, xp, xe, xo, g2);
        } else
            failed = 1;
        free(xp);
        free(gp);
        free(xe);
        free(xo);
        free(g2);
    }
    conv3_weight_grads(partial, nthreads, CI, CO, dw, db);
    free(partial);
    free(wq);
    return failed ? -1 : 0;
#else
    (void)N, (void)H, (void)x, (void)g, (void)w, (void)dx, (void)dw, (void)db;
    return -1;
#endif
}
