/*
 * One minibatch-SGD step of MeanFieldFCN replicas on the CPU, replica by replica
 * (fcn_step), and their outputs on many samples (fcn_outputs, the forward alone: the
 * records and f0).
 *
 * Compiled and loaded by sgdnoise.dynamics.native (cc -O3 -march=native) and called by
 * dynamics.networks (NativeFCNStep, Samples.outputs), which document the map; fcn_step
 * is FCNStep's update (same order of operations, same scalar factors) with, per replica:
 *
 *   gather the batch, forward through the L layers (z_l, u_l = act(z_l), act'(z_l)),
 *   f = c w . u_L / h, h_mu = y (f - f0), g_mu = y v'(h_mu) / B; if some g_mu != 0:
 *   dL/du_L = c g w / h, w <- w - lr c u_L g / h, then for l = L .. 1:
 *   dL/dz_l = dL/du_l act'(z_l), dL/du_{l-1} = c s_l W_l^T dL/dz_l (old W_l),
 *   W_l <- W_l - lr s_l c_{l-1} dL/dz_l u_{l-1}^T   (u_0 = x, c_0 = 1, c_l = c).
 *
 * Why by hand, and why a replica at a time: activations are stored feature-major, a
 * layer's activations of one replica forming a (width x B) matrix whose row k holds
 * feature k of the B samples, and B is a multiple of 16, so that the samples fill whole
 * vectors (the lanes: 16 floats with AVX-512, 8 with AVX2). Every product is then a sum
 * of scalar x vector FMAs with the accumulators in registers, at ~105-114 GFLOP/s on a
 * Zen 4 core where BLAS libraries run these 16-row products at ~60-80; and one replica's
 * weights (657 kB for the paper's FC-5L, h = 128, d = 784) stay in the core's L2 from its
 * forward to its update, where
 * layer-by-layer batched calls stream every replica's weights from L3 three times per
 * step (benchmarks/RESULTS.md, "Networks").
 *
 * gelu is the erf form, z Phi(z), with erf from Abramowitz & Stegun 7.1.26 (absolute
 * error < 1.5e-7, the formula of torch's own vectorised CPU erf) and exp from a
 * Cody-Waite reduction and a degree-7 Taylor polynomial (relative error < 2e-7).
 * Requirements, checked by the caller: B % 16 == 0, d % 16 == 0, h % 16 == 0; AVX2 and
 * FMA at least (fcn_lanes() says which width was built).
 */
#include <stdlib.h>
#include <string.h>

#if !defined(__AVX2__) || !defined(__FMA__)
#error "the FCN kernels need AVX2 and FMA; without them the step stays in torch"
#endif

/* One vector of samples (or of a row's entries): the widest the CPU has. ROWS output rows
 * per tile keep ROWS accumulators, the input and a broadcast in registers (of 32 zmm or
 * 16 ymm). */
#ifdef __AVX512F__
typedef float lanes __attribute__((vector_size(64)));
typedef int ilanes __attribute__((vector_size(64)));
enum { LANES = 16 };
#else
typedef float lanes __attribute__((vector_size(32)));
typedef int ilanes __attribute__((vector_size(32)));
enum { LANES = 8 };
#endif
enum { ROWS = 8, COLUMNS = 128 };

/* Samples per vector in this build. */
int fcn_lanes(void) { return LANES; }

/* What fcn_step needs besides the tensors: shapes and scalar factors of the step. */
struct fcn_config {
    long depth;             /* L hidden layers */
    long batch;             /* B */
    long input_size;        /* d */
    long width;             /* h */
    long relu;              /* 1: relu, 0: gelu */
    long square_hinge;      /* 1: square hinge, 0: hinge */
    float kappa;            /* margin */
    float lr;               /* learning rate */
    float activation_scale; /* c, E[(c act(z))^2] = 1 */
    float input_scale;      /* s_1 = 1/sqrt(d) */
    float hidden_scale;     /* s_l = 1/sqrt(h), l > 1 */
};

static inline lanes load(const float *p) {
    lanes v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store(float *p, lanes v) { memcpy(p, &v, sizeof v); }

static inline lanes splat(float value) { return (lanes){0} + value; }

/* exp(x) for x <= 0, flushed to exp(-87) below -87 (a normal float). */
static inline lanes exp_nonpositive(lanes x) {
    const lanes low = splat(-87.0f);
    ilanes below = x < low;
    x = (lanes)((below & (ilanes)low) | (~below & (ilanes)x));
    const float shift = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    lanes k = (x * 1.44269504088896341f + shift) - shift;
    lanes r = x - k * 0.693359375f;  /* ln 2 in two parts (Cody-Waite) */
    r = r - k * -2.12194440e-4f;
    lanes p = splat(1.0f / 5040);
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    ilanes power = (__builtin_convertvector(k, ilanes) + 127) << 23;
    return p * (lanes)power;
}

/* u = gelu(z) = z Phi(z) and du = gelu'(z) = Phi(z) + z phi(z); or relu and relu'
 * (relu'(0) = 0, and NaN passes through as in torch). */
static inline void activate(lanes z, int relu, lanes *u, lanes *du) {
    if (relu) {
        ilanes keep = (z > 0) | (z != z);
        *u = (lanes)(keep & (ilanes)z);
        *du = (lanes)(keep & (ilanes)splat(1.0f));
        return;
    }
    const ilanes sign = (ilanes){0} - 0x7fffffff - 1; /* the sign bit of each lane */
    lanes gauss = exp_nonpositive(-0.5f * z * z); /* exp(-z^2 / 2) = exp(-a^2), a = |z|/sqrt 2 */
    lanes a = (lanes)(~sign & (ilanes)z) * 0.70710678118654752f;
    lanes t = 1.0f / (1.0f + 0.3275911f * a);
    lanes poly = splat(1.061405429f);
    poly = poly * t - 1.453152027f;
    poly = poly * t + 1.421413741f;
    poly = poly * t - 0.284496736f;
    poly = poly * t + 0.254829592f;
    lanes half_erf = 0.5f * (1.0f - poly * t * gauss); /* erf(a) / 2 */
    lanes cdf = 0.5f + (lanes)((ilanes)half_erf ^ (sign & (ilanes)z));
    *u = z * cdf;
    *du = cdf + z * gauss * 0.39894228040143268f; /* 1 / sqrt(2 pi) */
}

/* z = alpha W in, (J x K) (K x B); writes u = act(z) and du = act'(z), (J x B).
 * ``upcoming`` (NULL, or B rows of K floats: the next replica's batch) is prefetched
 * into the cache a row or so per tile of the product, so that the next gather does not
 * wait for memory. */
static void forward_layer(const float *W, const float *in, float *u, float *du, long J, long K,
                          long B, float alpha, int relu, const float *const *upcoming) {
    long tiles = (B / LANES) * (J / ROWS), tile = 0, rows_per_tile = (B + tiles - 1) / tiles;
    for (long b = 0; b < B; b += LANES)
        for (long j0 = 0; j0 < J; j0 += ROWS, tile++) {
            for (long i = tile * rows_per_tile; upcoming && i < B && i < (tile + 1) * rows_per_tile;
                 i++)
                for (long k = 0; k < K; k += LANES) __builtin_prefetch(upcoming[i] + k, 0, 2);
            lanes acc[ROWS] = {0};
            const float *w = W + j0 * K;
            for (long k = 0; k < K; k++) {
                lanes a = load(in + k * B + b);
                for (int t = 0; t < ROWS; t++) acc[t] += w[t * K + k] * a;
            }
            for (int t = 0; t < ROWS; t++) {
                lanes value, slope;
                activate(alpha * acc[t], relu, &value, &slope);
                store(u + (j0 + t) * B + b, value);
                store(du + (j0 + t) * B + b, slope);
            }
        }
}

/* out = alpha W^T in, (K x J) (J x B): LANES inputs k at a time (a piece of each row of W). */
static void backward_layer(const float *W, const float *in, float *out, long J, long K, long B,
                           float alpha) {
    for (long b = 0; b < B; b += LANES)
        for (long k0 = 0; k0 < K; k0 += LANES) {
            lanes acc[LANES] = {0};
            for (long j = 0; j < J; j++) {
                lanes g = load(in + j * B + b);
                const float *w = W + j * K + k0;
                for (int t = 0; t < LANES; t++) acc[t] += w[t] * g;
            }
            for (int t = 0; t < LANES; t++) store(out + (k0 + t) * B + b, alpha * acc[t]);
        }
}

/* W += alpha p u, p (J x B) feature-major, u given as B rows of K: the lanes run along k,
 * ROWS rows of W per pass over the samples, in blocks of COLUMNS columns whose piece of
 * u (B x COLUMNS) stays in L1. */
static void update_layer(float *W, const float *p, const float *const *u, long J, long K,
                         long B, float alpha) {
    for (long k0 = 0; k0 < K; k0 += COLUMNS)
        for (long j0 = 0; j0 < J; j0 += ROWS)
            for (long k = k0; k < k0 + COLUMNS && k < K; k += LANES) {
            lanes acc[ROWS] = {0};
            for (long i = 0; i < B; i++) {
                lanes a = load(u[i] + k);
                for (int t = 0; t < ROWS; t++) acc[t] += p[(j0 + t) * B + i] * a;
            }
            for (int t = 0; t < ROWS; t++) {
                float *w = W + (j0 + t) * K + k;
                store(w, load(w) + alpha * acc[t]);
            }
        }
}

/* Writes the transpose of the LANES x LANES block whose row i is the LANES floats at
 * from[i] as LANES rows to[0 .. LANES-1]: log2(LANES) stages, each swapping one bit of
 * the row and the column index between pairs of rows. */
static void transpose_block(const float *const *from, float *const *to) {
    typedef int mask __attribute__((vector_size(sizeof(lanes))));
    lanes row[LANES];
    for (int i = 0; i < LANES; i++) row[i] = load(from[i]);
    for (int bit = 1; bit < LANES; bit <<= 1) {
        mask low, high;
        for (int j = 0; j < LANES; j++) {
            low[j] = j & bit ? LANES + (j ^ bit) : j;
            high[j] = j & bit ? LANES + j : j ^ bit;
        }
        for (int i = 0; i < LANES; i++)
            if (!(i & bit)) {
                lanes a = row[i], b = row[i | bit];
                row[i] = __builtin_shuffle(a, b, low);
                row[i | bit] = __builtin_shuffle(a, b, high);
            }
    }
    for (int i = 0; i < LANES; i++) store(to[i], row[i]);
}

/* out (K x B) = the transpose of the B rows of K floats rows[0 .. B-1]. */
static void rows_to_features(const float *const *rows, float *out, long K, long B) {
    const float *from[LANES];
    float *to[LANES];
    for (long b = 0; b < B; b += LANES)
        for (long k = 0; k < K; k += LANES) {
            for (int t = 0; t < LANES; t++) {
                from[t] = rows[b + t] + k;
                to[t] = out + (k + t) * B + b;
            }
            transpose_block(from, to);
        }
}

/* out (B x K) = the transpose of the feature-major in (K x B). */
static void features_to_rows(const float *in, float *out, long K, long B) {
    const float *from[LANES];
    float *to[LANES];
    for (long b = 0; b < B; b += LANES)
        for (long k = 0; k < K; k += LANES) {
            for (int t = 0; t < LANES; t++) {
                from[t] = in + (k + t) * B + b;
                to[t] = out + (b + t) * K + k;
            }
            transpose_block(from, to);
        }
}

/* v(h) of one sample, and its force dL_B/df = y v'(h) / B (hinge or square hinge at
 * margin kappa; a NaN h gives what torch gives: NaN loss, no force for the hinge). */
static inline float sample_loss(const struct fcn_config *c, float stability, float label,
                                float *force) {
    float gap = c->kappa - stability;
    float excess = gap > 0 || gap != gap ? gap : 0.0f; /* relu, NaN kept */
    float slope = c->square_hinge ? -excess : (gap > 0 ? -1.0f : -0.0f);
    *force = slope * label / (float)c->batch;
    return c->square_hinge ? 0.5f * excess * excess : excess;
}

/* The forward of replica n on the B samples whose rows are inputs[0 .. B-1] (upcoming:
 * the next rows to prefetch, or NULL): x^T into features, u_l and act'(z_l) of every
 * layer into values and slopes (L blocks of h x B), f into outputs (B). */
static void forward_replica(const struct fcn_config *c, float *const *weights, long n,
                            const float *readout, const float *const *inputs,
                            const float *const *upcoming, long B, float *features,
                            float *values, float *slopes, float *outputs) {
    const long L = c->depth, d = c->input_size, h = c->width;
    rows_to_features(inputs, features, d, B);
    const float *layer_input = features;
    for (long l = 0; l < L; l++) {
        long fan_in = l == 0 ? d : h;
        float alpha = l == 0 ? c->input_scale : c->hidden_scale * c->activation_scale;
        forward_layer(weights[l] + n * h * fan_in, layer_input, values + l * h * B,
                      slopes + l * h * B, h, fan_in, B, alpha, (int)c->relu,
                      l == 0 ? upcoming : NULL);
        layer_input = values + l * h * B;
    }
    const float *w = readout + n * h;
    for (long b = 0; b < B; b += LANES) {
        lanes sum = {0};
        for (long j = 0; j < h; j++) sum += w[j] * load(layer_input + j * B + b);
        store(outputs + b, sum * (c->activation_scale / (float)h));
    }
}

/* Train `count` replicas one step. weights[l]: layer l's stacked weights (count, h, K_l),
 * K_0 = d; readout (count, h). The training set is `samples` (rows of d floats) and
 * `labels` (one per row); replica n's sample mu is row replica_ids[n] * per_replica + mu
 * (per_replica: the samples of one replica's own training set, 0 if all share one),
 * with f0 = initial[n * training + mu]; indices (count, B) are the batch's mu. Updates
 * the weights and readout in place and writes, per replica, the batch's mean loss,
 * whether a sample felt a force (moved: the parameters changed) and whether every
 * stability was finite. Returns 0, or -1 if memory ran out (nothing updated). */
int fcn_step(const struct fcn_config *c, long count, float *const *weights, float *readout,
             const float *samples, const float *labels, long per_replica, long training,
             const long *replica_ids, const long *indices, const float *initial,
             float *batch_loss, unsigned char *moved, unsigned char *finite) {
    const long L = c->depth, B = c->batch, d = c->input_size, h = c->width;
    const float readout_alpha = c->activation_scale / (float)h;
    size_t floats = (size_t)B * (d + 2 * L * h + 3 * h) + 2 * B;
    float *space = aligned_alloc(64, ((floats * sizeof(float) + 63) / 64) * 64);
    const float **inputs = malloc(sizeof(float *) * (size_t)B);
    const float **upcoming = malloc(sizeof(float *) * (size_t)B);
    if (!space || !inputs || !upcoming) {
        free(space);
        free(inputs);
        free(upcoming);
        return -1;
    }
    float *features = space;        /* x^T, (d x B) */
    float *values = features + d * B; /* u_l, L x (h x B) */
    float *slopes = values + L * h * B; /* act'(z_l), L x (h x B) */
    float *cotangent = slopes + L * h * B; /* (h x B) */
    float *signal = cotangent + h * B; /* dL/dz_l, (h x B) */
    float *batch_major = signal + h * B; /* u_{l-1} as B rows of h */
    float *outputs = batch_major + h * B; /* f, B */
    float *forces = outputs + B;        /* g, B */
#define ROW(n, i) (replica_ids[n] * per_replica + indices[(n) * B + (i)])
    for (long n = 0; n < count; n++) {
        float *w = readout + n * h;
        for (long i = 0; i < B; i++) inputs[i] = samples + ROW(n, i) * d;
        for (long i = 0; n + 1 < count && i < B; i++) upcoming[i] = samples + ROW(n + 1, i) * d;
        forward_replica(c, weights, n, readout, inputs, n + 1 < count ? upcoming : NULL, B,
                        features, values, slopes, outputs);
        const float *last = values + (L - 1) * h * B;
        int moves = 0, all_finite = 1;
        float total = 0;
        for (long i = 0; i < B; i++) {
            float y = labels[ROW(n, i)];
            float h_i = y * (outputs[i] - initial[n * training + indices[n * B + i]]);
            total += sample_loss(c, h_i, y, forces + i);
            moves |= forces[i] != 0;
            all_finite &= h_i - h_i == 0; /* false for inf and NaN */
        }
        batch_loss[n] = total / (float)B;
        moved[n] = (unsigned char)moves;
        finite[n] = (unsigned char)all_finite;
        if (!moves) continue;
        for (long j = 0; j < h; j++) {
            lanes gradient = {0};
            for (long b = 0; b < B; b += LANES) {
                lanes g = load(forces + b);
                store(cotangent + j * B + b, g * w[j] * readout_alpha);
                gradient += g * load(last + j * B + b);
            }
            float sum = 0;
            for (int t = 0; t < LANES; t++) sum += gradient[t];
            w[j] += -c->lr * readout_alpha * sum;
        }
        for (long l = L - 1; l >= 0; l--) {
            long fan_in = l == 0 ? d : h;
            float *W = weights[l] + n * h * fan_in;
            float scale = l == 0 ? c->input_scale : c->hidden_scale;
            const float *slope = slopes + l * h * B;
            for (long e = 0; e < h * B; e++) signal[e] = cotangent[e] * slope[e];
            if (l > 0) {
                backward_layer(W, signal, cotangent, h, h, B, scale * c->activation_scale);
                features_to_rows(values + (l - 1) * h * B, batch_major, h, B);
                for (long i = 0; i < B; i++) inputs[i] = batch_major + i * h;
                update_layer(W, signal, inputs, h, h, B, -c->lr * scale * c->activation_scale);
            } else {
                for (long i = 0; i < B; i++) inputs[i] = samples + ROW(n, i) * d;
                update_layer(W, signal, inputs, h, d, B, -c->lr * scale);
            }
        }
    }
#undef ROW
    free(space);
    free(inputs);
    free(upcoming);
    return 0;
}

/* The outputs f(w, x) of `count` replicas on `total` samples of their training or test
 * set: outputs[n * total + m] = f(w_n, x of sample first + m), the samples laid out as
 * for fcn_step (row replica_ids[n] * per_replica + mu of `samples`). Forward only, LANES
 * samples at a time with the replica's weights in cache (a short last block repeats its
 * last sample). Returns 0, or -1 if memory ran out. */
int fcn_outputs(const struct fcn_config *c, long count, float *const *weights,
                const float *readout, const float *samples, long per_replica,
                const long *replica_ids, long first, long total, float *outputs) {
    const long L = c->depth, B = LANES, d = c->input_size, h = c->width;
    size_t floats = (size_t)B * (d + 2 * L * h + 1);
    float *space = aligned_alloc(64, ((floats * sizeof(float) + 63) / 64) * 64);
    const float **inputs = malloc(sizeof(float *) * 2 * LANES);
    if (!space || !inputs) {
        free(space);
        free(inputs);
        return -1;
    }
    const float **upcoming = inputs + LANES;
    float *features = space, *values = features + d * B, *slopes = values + L * h * B;
    float *result = slopes + L * h * B;
    for (long n = 0; n < count; n++) {
        const float *set = samples + (replica_ids[n] * per_replica + first) * d;
        for (long start = 0; start < total; start += LANES) {
            for (long i = 0; i < LANES; i++) {
                long m = start + i < total ? start + i : total - 1;
                long ahead = start + LANES + i < total ? start + LANES + i : total - 1;
                inputs[i] = set + m * d;
                upcoming[i] = set + ahead * d;
            }
            forward_replica(c, weights, n, readout, inputs, upcoming, B, features, values,
                            slopes, result);
            for (long i = 0; i < LANES && start + i < total; i++)
                outputs[n * total + start + i] = result[i];
        }
    }
    free(space);
    free(inputs);
    return 0;
}
