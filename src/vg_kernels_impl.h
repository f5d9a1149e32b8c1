/*
 * vg_kernels_impl.h -- the elementwise and loss kernels, written once and instantiated for
 * float and double by vg_kernels.h (T is the scalar type, VG_FN(name) appends the suffix).
 *
 * Layout: row-major blocks.  A kernel works on rows [r0, r1) and columns [c0, c1) of a matrix
 * with leading dimension ld, so the caller can split work by columns across threads; column
 * sums (the bias gradient) then need no cross-thread reduction and are bit-identical for any
 * thread count.
 */

/* ---------------- activation forward: h += b (in place), a = phi(h) ---------------- */

#define VG_FWD_LOOP(EXPR)                                                   \
    for (long i = r0; i < r1; i++) {                                        \
        T *restrict hr = h + i * ld;                                        \
        T *restrict ar = a + i * ld;                                        \
        for (long j = c0; j < c1; j++) {                                    \
            T x = hr[j] + b[j];                                             \
            hr[j] = x;                                                      \
            ar[j] = (EXPR);                                                 \
        }                                                                   \
    }                                                                       \
    break;

VG_CLONES void VG_FN(vg_act_forward)(int kind, T param, long r0, long r1, long c0, long c1,
                                     long ld, T *restrict h, const T *restrict b,
                                     T *restrict a)
{
    const T one = (T)1, zero = (T)0;
    switch (kind) {
    case VG_IDENTITY:   VG_FWD_LOOP(x)
    case VG_SIGMOID:    VG_FWD_LOOP(VG_FN(vg_sigmoid)(x))
    case VG_TANH:       VG_FWD_LOOP(VG_FN(vg_tanh)(x))
    case VG_RELU:       VG_FWD_LOOP(x > zero ? x : zero)
    case VG_LEAKY_RELU: VG_FWD_LOOP(x > zero ? x : param * x)
    case VG_ELU:        VG_FWD_LOOP(x > zero ? x : param * VG_FN(vg_expm1)(x))
    case VG_SELU:       VG_FWD_LOOP((T)VG_SELU_SCALE *
                                    (x > zero ? x : (T)VG_SELU_ALPHA * VG_FN(vg_expm1)(x)))
    case VG_GELU: {
        for (long i = r0; i < r1; i++) {
            T *restrict hr = h + i * ld;
            T *restrict ar = a + i * ld;
            for (long j = c0; j < c1; j++) {
                T x = hr[j] + b[j];
                hr[j] = x;
                T cdf = (T)0.5 * (one + VG_FN(vg_erf)(x * (T)VG_SQRT1_2));
                ar[j] = cdf == zero ? zero : x * cdf;   /* -inf * 0 would be NaN */
            }
        }
        break;
    }
    case VG_SOFTPLUS:   VG_FWD_LOOP((x > zero ? x : zero)
                                    + VG_FN(vg_log1p)(VG_FN(vg_exp)(-VG_FN(vg_fabs)(x))))
    case VG_SOFTSIGN:   VG_FWD_LOOP(x / (one + VG_FN(vg_fabs)(x)))
    case VG_SILU:       VG_FWD_LOOP(x * VG_FN(vg_sigmoid)(x))
    case VG_HARD_TANH:  VG_FWD_LOOP(x > one ? one : (x < -one ? -one : x))
    default: break;
    }
}
#undef VG_FWD_LOOP

/* ------- activation backward: delta = g * phi'(h) (in place over g), db = colsum(delta) ------- */

#define VG_BWD_LOOP(EXPR)                                                   \
    for (long j = c0; j < c1; j++) db[j] = zero;                            \
    for (long i = r0; i < r1; i++) {                                        \
        const T *restrict hr = h + i * ld;                                  \
        const T *restrict ar = a + i * ld;                                  \
        T *restrict dr = delta + i * ld;                                    \
        for (long j = c0; j < c1; j++) {                                    \
            const T x = hr[j], y = ar[j];                                   \
            (void)x; (void)y;                                               \
            T d = dr[j] * (EXPR);                                           \
            dr[j] = d;                                                      \
            db[j] += d;                                                     \
        }                                                                   \
    }                                                                       \
    break;

VG_CLONES void VG_FN(vg_act_backward)(int kind, T param, long r0, long r1, long c0, long c1,
                                      long ld, const T *restrict h, const T *restrict a,
                                      T *restrict delta, T *restrict db)
{
    const T one = (T)1, zero = (T)0;
    switch (kind) {
    case VG_IDENTITY:   VG_BWD_LOOP(one)
    case VG_SIGMOID:    VG_BWD_LOOP(y * (one - y))
    case VG_TANH:       VG_BWD_LOOP(one - y * y)
    case VG_RELU:       VG_BWD_LOOP(x > zero ? one : zero)
    case VG_LEAKY_RELU: VG_BWD_LOOP(x > zero ? one : param)
    case VG_ELU:        VG_BWD_LOOP(x > zero ? one : y + param)
    case VG_SELU:       VG_BWD_LOOP(x > zero ? (T)VG_SELU_SCALE
                                             : y + (T)(VG_SELU_SCALE * VG_SELU_ALPHA))
    case VG_GELU: {
        for (long j = c0; j < c1; j++) db[j] = zero;
        for (long i = r0; i < r1; i++) {
            const T *restrict hr = h + i * ld;
            T *restrict dr = delta + i * ld;
            for (long j = c0; j < c1; j++) {
                const T x = hr[j];
                T cdf = (T)0.5 * (one + VG_FN(vg_erf)(x * (T)VG_SQRT1_2));
                T pdf = VG_FN(vg_exp)((T)-0.5 * x * x) * (T)VG_INV_SQRT_2PI;
                T xpdf = VG_FN(vg_fabs)(x) > (T)40 ? zero : x * pdf;
                T d = dr[j] * (cdf + xpdf);
                dr[j] = d;
                db[j] += d;
            }
        }
        break;
    }
    case VG_SOFTPLUS:   VG_BWD_LOOP(VG_FN(vg_sigmoid)(x))
    case VG_SOFTSIGN:   VG_BWD_LOOP(one / ((one + VG_FN(vg_fabs)(x)) * (one + VG_FN(vg_fabs)(x))))
    case VG_SILU: {
        for (long j = c0; j < c1; j++) db[j] = zero;
        for (long i = r0; i < r1; i++) {
            const T *restrict hr = h + i * ld;
            T *restrict dr = delta + i * ld;
            for (long j = c0; j < c1; j++) {
                const T x = hr[j];
                T s = VG_FN(vg_sigmoid)(x);
                T d = dr[j] * (s + x * s * (one - s));
                dr[j] = d;
                db[j] += d;
            }
        }
        break;
    }
    case VG_HARD_TANH:  VG_BWD_LOOP((x > -one && x < one) ? one : zero)
    default: break;
    }
}
#undef VG_BWD_LOOP

/* ---------------- losses: mean over the batch, gradient written to g ---------------- */

/* Softmax cross-entropy with integer labels, log-sum-exp stable.
 * loss = mean_i (logsumexp(z_i) - z_i[y_i]);  g = (softmax(z) - onehot(y)) / n. */
static double VG_FN(vg_softmax_xent)(long n, long c, const T *restrict z,
                                     const int64_t *restrict y, T *restrict g)
{
    double total = 0.0;
    const T inv_n = (T)1 / (T)n;
    for (long i = 0; i < n; i++) {
        const T *restrict zr = z + i * c;
        T *restrict gr = g + i * c;
        T m = zr[0];
        for (long j = 1; j < c; j++) m = zr[j] > m ? zr[j] : m;
        const T zy = zr[y[i]];          /* read before g is written: g may alias z */
        T s = 0;
        for (long j = 0; j < c; j++) {
            T e = VG_FN(vg_exp)(zr[j] - m);
            gr[j] = e;
            s += e;
        }
        T scale = inv_n / s;
        for (long j = 0; j < c; j++) gr[j] *= scale;
        gr[y[i]] -= inv_n;
        total += (double)m + log((double)s) - (double)zy;
    }
    return total / (double)n;
}

/* Mean squared error over all n*m elements: loss = mean((p - t)^2); g = 2 (p - t) / (n m). */
static double VG_FN(vg_mse)(long n, long m, const T *restrict p, const T *restrict t,
                            T *restrict g)
{
    double total = 0.0;
    const long len = n * m;
    const T scale = (T)2 / (T)len;
    for (long k = 0; k < len; k++) {
        T d = p[k] - t[k];
        total += (double)d * (double)d;
        g[k] = scale * d;
    }
    return total / (double)len;
}

/* Binary cross-entropy with logits, mean over all n*m elements:
 * loss = mean(max(z, 0) - z t + log1p(exp(-|z|)));  g = (sigmoid(z) - t) / (n m). */
static double VG_FN(vg_bce_logits)(long n, long m, const T *restrict z, const T *restrict t,
                                   T *restrict g)
{
    double total = 0.0;
    const long len = n * m;
    const T scale = (T)1 / (T)len;
    for (long k = 0; k < len; k++) {
        T x = z[k];
        double ax = fabs((double)x);
        total += (x > 0 ? (double)x : 0.0) - (double)x * (double)t[k] + log1p(exp(-ax));
        g[k] = scale * (VG_FN(vg_sigmoid)(x) - t[k]);
    }
    return total / (double)len;
}

/* ---------------- flat-buffer utilities ---------------- */


/* 1 when every element is finite, 0 when any is NaN or +-Inf. */
VG_CLONES int VG_FN(vg_all_finite)(long n, const T *restrict x)
{
    int bad = 0;
    for (long k = 0; k < n; k++) bad |= !(VG_FN(vg_fabs)(x[k]) <= VG_TMAX);
    return !bad;
}

/* p -= lr * g over [k0, k1) */
VG_CLONES void VG_FN(vg_sgd)(long k0, long k1, T lr, T *restrict p, const T *restrict g)
{
    for (long k = k0; k < k1; k++) p[k] -= lr * g[k];
}

/* out[j] = sum_{i in [r0, r1)} x[i, j] for j in [c0, c1); x is only read. */
VG_CLONES void VG_FN(vg_colsum)(long r0, long r1, long c0, long c1, long ld,
                                const T *restrict x, T *restrict out)
{
    for (long j = c0; j < c1; j++) out[j] = (T)0;
    for (long i = r0; i < r1; i++) {
        const T *restrict xr = x + i * ld;
        for (long j = c0; j < c1; j++) out[j] += xr[j];
    }
}

/* h[i, j] += b[j] over the block (the bias of a linear layer, in place). */
VG_CLONES void VG_FN(vg_add_bias)(long r0, long r1, long c0, long c1, long ld,
                                  T *restrict h, const T *restrict b)
{
    for (long i = r0; i < r1; i++) {
        T *restrict hr = h + i * ld;
        for (long j = c0; j < c1; j++) hr[j] += b[j];
    }
}
