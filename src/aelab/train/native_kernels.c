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

/* Column sums of per-thread partials (rows were split between threads) into out, in thread order. */
static void reduce_columns(float *partial, int nthreads, int64_t cols, float *out) {
    for (int64_t c = 0; c < cols; c++) out[c] = partial[c];
    for (int t = 1; t < nthreads; t++)
        for (int64_t c = 0; c < cols; c++) out[c] += partial[t * cols + c];
}

/* One row of the loss kernel; `kind` and the dtypes are constants where it is inlined, so each
 * combination compiles to its own branch-free vector loop. */
static inline __attribute__((always_inline)) float loss_row(int64_t cols, const void *restrict z, const int z_bf16,
                                                            const float *restrict t, void *restrict g,
                                                            const int g_bf16, float *restrict colsum, const int kind,
                                                            float scale) {
    float row_loss = 0.0f;
#pragma omp simd reduction(+ : row_loss)
    for (int64_t c = 0; c < cols; c++) {
        float x = load(z, z_bf16, c), y = t[c], d, l;
        if (kind == 2) {
            float diff = x - y;
            l = diff * diff;
            d = diff * scale;
        } else {
            float e = exp_nonpos(-fabsf(x));
            float inv = 1.0f / (1.0f + e);
            float s = x >= 0.0f ? inv : e * inv; /* sigmoid(x) without overflow */
            if (kind == 0) {
                l = (x > 0.0f ? x : 0.0f) - x * y + log1p_unit(e);
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

#define LOSS_ROW(ZB, GB, K) loss_row(cols, zr, ZB, t + base, gr, GB, colsum, K, scale)

/* The loss summed over a (rows, cols) batch of logits z against targets t (float32), and its gradient
 * times `scale` into g, with g's column sums (the last layer's bias gradient) into bias_grad.
 * kind 0: BCE with logits; 1: squared error of sigmoid(z); 2: squared error of z.
 * The column sums add the gradient as stored (rounded to bf16 when g is bf16), as the torch path does.
 * Returns the sum of the loss over all elements, or NaN if allocating scratch failed. */
EXPORT double aelab_loss_grad(int64_t rows, int64_t cols, const void *z, int z_bf16, const float *t, void *g,
                              int g_bf16, float *bias_grad, int kind, float scale) {
    int nthreads = threads_for(rows * cols);
    float *partial = calloc((size_t)nthreads * (size_t)cols, sizeof(float));
    double *sums = calloc((size_t)nthreads, sizeof(double));
    if (!partial || !sums) {
        free(partial);
        free(sums);
        return NAN;
    }
    int zs = z_bf16 ? 2 : 4, gs = g_bf16 ? 2 : 4;
#pragma omp parallel num_threads(nthreads)
    {
        int tid = thread_id();
        int nt = nthreads;
#ifdef _OPENMP
        nt = omp_get_num_threads();
#endif
        int64_t lo = rows * tid / nt, hi = rows * (tid + 1) / nt;
        float *colsum = partial + (int64_t)tid * cols;
        double total = 0.0;
        for (int64_t r = lo; r < hi; r++) {
            int64_t base = r * cols;
            const void *zr = (const char *)z + base * zs;
            void *gr = (char *)g + base * gs;
            float l;
            if (z_bf16 && g_bf16)
                l = kind == 0 ? LOSS_ROW(1, 1, 0) : kind == 1 ? LOSS_ROW(1, 1, 1) : LOSS_ROW(1, 1, 2);
            else if (!z_bf16 && !g_bf16)
                l = kind == 0 ? LOSS_ROW(0, 0, 0) : kind == 1 ? LOSS_ROW(0, 0, 1) : LOSS_ROW(0, 0, 2);
            else if (z_bf16)
                l = kind == 0 ? LOSS_ROW(1, 0, 0) : kind == 1 ? LOSS_ROW(1, 0, 1) : LOSS_ROW(1, 0, 2);
            else
                l = kind == 0 ? LOSS_ROW(0, 1, 0) : kind == 1 ? LOSS_ROW(0, 1, 1) : LOSS_ROW(0, 1, 2);
            total += l;
        }
        sums[tid] = total;
    }
    double loss = 0.0;
    for (int i = 0; i < nthreads; i++) loss += sums[i];
    if (bias_grad) reduce_columns(partial, nthreads, cols, bias_grad);
    free(partial);
    free(sums);
    return loss;
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
        int nt = nthreads;
#ifdef _OPENMP
        nt = omp_get_num_threads();
#endif
        int64_t lo = rows * tid / nt, hi = rows * (tid + 1) / nt;
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

/* One Adam (decoupled = 0) or AdamW (1) step over n float32 parameters p with moments m and v, from
 * the gradient grad (float32, or bf16 when g_bf16), in the arithmetic and order of torch's fused CPU
 * kernel (aten/src/ATen/native/cpu/FusedAdamKernel.cpp, float case); `step` is the step count after
 * this step. When copy is not NULL, the updated parameters are also written to it in bf16. */
EXPORT void aelab_adam(int64_t n, float *p, const void *grad, int g_bf16, float *m, float *v, uint16_t *copy,
                       double lr, double beta1, double beta2, double eps, double weight_decay, int decoupled,
                       double step) {
    struct adam_consts k;
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
    int dm = weight_decay == 0.0 ? 0 : decoupled ? 2 : 1;
    int wc = copy != NULL;
    int nthreads = threads_for(n);
#pragma omp parallel num_threads(nthreads)
    {
        int tid = thread_id();
        int nt = nthreads;
#ifdef _OPENMP
        nt = omp_get_num_threads();
#endif
        int64_t lo = (n / 16 * tid / nt) * 16, hi = tid == nt - 1 ? n : (n / 16 * (tid + 1) / nt) * 16;
        if (g_bf16) {
            if (wc)
                dm == 0 ? ADAM(1, 1, 0) : dm == 1 ? ADAM(1, 1, 1) : ADAM(1, 1, 2);
            else
                dm == 0 ? ADAM(1, 0, 0) : dm == 1 ? ADAM(1, 0, 1) : ADAM(1, 0, 2);
        } else {
            if (wc)
                dm == 0 ? ADAM(0, 1, 0) : dm == 1 ? ADAM(0, 1, 1) : ADAM(0, 1, 2);
            else
                dm == 0 ? ADAM(0, 0, 0) : dm == 1 ? ADAM(0, 0, 1) : ADAM(0, 0, 2);
        }
    }
}

/* float32 -> bf16, rounded to nearest even (what tensor.to(torch.bfloat16) does). */
EXPORT void aelab_to_bf16(int64_t n, const float *src, uint16_t *dst) {
    int nthreads = threads_for(n);
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t i = 0; i < n; i++) dst[i] = f32_to_bf16(src[i]);
}
