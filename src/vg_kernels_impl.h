/*
 * vg_kernels_impl.h -- the elementwise and loss kernels, written once and instantiated for
 * float and double by vg_kernels.h (T is the scalar type, VG_FN(name) appends the suffix).
 *
 * Layout: row-major blocks.  A kernel works on rows [r0, r1) and columns [c0, c1) of a matrix
 * with leading dimension ld, so the caller can split work by columns across threads; column
 * sums (the bias gradient) then need no cross-thread reduction and are bit-identical for any
 * thread count.
 */

/* v, or 0 when |v| < tiny: the explicit half of flushing subnormals (vg_kernels.h).  With
 * tiny = 0 it is v itself, bit for bit (NaN and -0 included): flushing off changes nothing.
 * A select, so the loops that call it still vectorise. */
static inline T VG_FN(vg_flush)(T v, T tiny)
{
    return VG_FN(vg_fabs)(v) < tiny ? (T)0 : v;
}

/* ---- sums of squares that float32 cannot hold ----
 * The square of a float32 value below 2^-63 (1.1e-19) in magnitude is below the smallest
 * normal: 0 under flushing, a subnormal without.  A signal or an error of that size is still a
 * normal number, and its measurements must not read as vanished.  So where a float32 sum of n
 * squares comes out below n * FLT_MIN * 2^24 (small enough for the terms lost to matter: every
 * value is then below 2^-51 or so), it is taken again, in a second pass over the values (in
 * cache), scaled by 2^63: the square of every normal float32 value is then normal.  Larger
 * sums are as before: what they lose is below 2^-24 of them.  A layer whose values are all 0
 * takes that second pass too, unless the caller knows they are (the deltas of a plain
 * network's layer that no error reached: known_zero).  float64 needs no second pass down to
 * 1.5e-154 and has none below. */
#define VG_SQ_SCALE 9223372036854775808.0           /* 2^63 */
#define VG_SQ_UNSCALE 1.1754943508222875079687e-38  /* 2^-126, its square's inverse */
static inline int VG_FN(vg_sq_small)(double total, long n)
{
    return VG_SQ_WIDE && total < (double)n * (double)FLT_MIN * 16777216.0;
}

/* The sum of squares of n values from their scaled squares (see above; only where the plain
 * sum is that small, so no scaled value overflows).  An OpenMP SIMD reduction: the order
 * follows the vector width, so the last bits may differ between CPUs (not between runs). */
static inline double VG_FN(vg_sumsq_scaled_in)(long n, const T *restrict x)
{
    T s = 0;
    #pragma omp simd reduction(+:s)
    for (long k = 0; k < n; k++) {
        const T v = x[k] * (T)VG_SQ_SCALE;
        s += v * v;
    }
    return (double)s * VG_SQ_UNSCALE;
}

/* The same, in its own compiled clones: the callers' hot loops keep their registers. */
VG_CLONES double VG_FN(vg_sumsq_scaled)(long n, const T *restrict x)
{
    return VG_FN(vg_sumsq_scaled_in)(n, x);
}

/* The rows of x (rows x cols) whose sum of squares out[i] is that small, taken again the same
 * way, in one call. */
VG_CLONES void VG_FN(vg_row_sumsq_scaled)(long rows, long cols, const T *restrict x,
                                          double *restrict out)
{
    for (long i = 0; i < rows; i++)
        if (VG_FN(vg_sq_small)(out[i], cols))
            out[i] = VG_FN(vg_sumsq_scaled_in)(cols, x + i * cols);
}

/* ---------------- the activations: phi(x) and phi'(x), y = phi(x) already known ---------------- */

static inline T VG_FN(vg_gelu)(T x)
{
    T cdf = (T)0.5 * VG_FN(vg_erfc)(-x * (T)VG_SQRT1_2);   /* Phi(x); 1 + erf would cancel for x < 0 */
    return cdf == (T)0 ? (T)0 : x * cdf;              /* -inf * 0 would be NaN */
}

static inline T VG_FN(vg_gelu_deriv)(T x)
{
    T cdf = (T)0.5 * VG_FN(vg_erfc)(-x * (T)VG_SQRT1_2);
    T pdf = VG_FN(vg_exp)((T)-0.5 * x * x) * (T)VG_INV_SQRT_2PI;
    return cdf + (VG_FN(vg_fabs)(x) > (T)40 ? (T)0 : x * pdf);
}

static inline T VG_FN(vg_silu_deriv)(T x)
{
    T s = VG_FN(vg_sigmoid)(x);
    return s + x * s * ((T)1 - s);
}

/* The expressions of phi(x) (in terms of x) and of phi'(x) (in terms of x and y = phi(x)) per
 * kernel id; `param` is leaky_relu's slope or elu's alpha. */
#define VG_PHI_IDENTITY   x
#define VG_PHI_SIGMOID    VG_FN(vg_sigmoid)(x)
#define VG_PHI_TANH       VG_FN(vg_tanh)(x)
#define VG_PHI_RELU       (x < zero ? zero : x)      /* NaN stays NaN */
#define VG_PHI_LEAKY      (x > zero ? x : param * x)
#define VG_PHI_ELU        (x > zero ? x : param * VG_FN(vg_expm1)(x))
#define VG_PHI_SELU       ((T)VG_SELU_SCALE * (x > zero ? x : (T)VG_SELU_ALPHA * VG_FN(vg_expm1)(x)))
#define VG_PHI_GELU       VG_FN(vg_gelu)(x)
#define VG_PHI_SOFTPLUS   ((x > zero ? x : zero) + VG_FN(vg_log1p)(VG_FN(vg_exp)(-VG_FN(vg_fabs)(x))))
#define VG_PHI_SOFTSIGN   (x / (one + VG_FN(vg_fabs)(x)))
#define VG_PHI_SILU       (x * VG_FN(vg_sigmoid)(x))
#define VG_PHI_HARD_TANH  (x > one ? one : (x < -one ? -one : x))
#define VG_PHI_FMA_TANH   VG_FN(vg_tanh_fma)(x)
#define VG_PHI_FMA_SIGMOID VG_FN(vg_sigmoid_fma)(x)

#define VG_DPHI_IDENTITY  one
#define VG_DPHI_SIGMOID   (y * (one - y))
#define VG_DPHI_TANH      (one - y * y)
#define VG_DPHI_RELU      (x > zero ? one : zero)
#define VG_DPHI_LEAKY     (x > zero ? one : param)
#define VG_DPHI_ELU       (x > zero ? one : y + param)
#define VG_DPHI_SELU      (x > zero ? (T)VG_SELU_SCALE : y + (T)(VG_SELU_SCALE * VG_SELU_ALPHA))
#define VG_DPHI_GELU      VG_FN(vg_gelu_deriv)(x)
#define VG_DPHI_SOFTPLUS  VG_FN(vg_sigmoid)(x)
#define VG_DPHI_SOFTSIGN  (one / ((one + VG_FN(vg_fabs)(x)) * (one + VG_FN(vg_fabs)(x))))
#define VG_DPHI_SILU      VG_FN(vg_silu_deriv)(x)
#define VG_DPHI_HARD_TANH ((x > -one && x < one) ? one : zero)

/* Expand LOOP(PHI or DPHI expression) once per activation inside a switch on `kind`. */
#define VG_SWITCH(LOOP, P)                                                  \
    switch (kind) {                                                         \
    case VG_IDENTITY:   LOOP(P##_IDENTITY)                                  \
    case VG_SIGMOID:    LOOP(P##_SIGMOID)                                   \
    case VG_TANH:       LOOP(P##_TANH)                                      \
    case VG_RELU:       LOOP(P##_RELU)                                      \
    case VG_LEAKY_RELU: LOOP(P##_LEAKY)                                     \
    case VG_ELU:        LOOP(P##_ELU)                                       \
    case VG_SELU:       LOOP(P##_SELU)                                      \
    case VG_GELU:       LOOP(P##_GELU)                                      \
    case VG_SOFTPLUS:   LOOP(P##_SOFTPLUS)                                  \
    case VG_SOFTSIGN:   LOOP(P##_SOFTSIGN)                                  \
    case VG_SILU:       LOOP(P##_SILU)                                      \
    case VG_HARD_TANH:  LOOP(P##_HARD_TANH)                                 \
    default: break;                                                         \
    }

/* The forward kernels' switch: float32 tanh and sigmoid with fused multiply-adds where
 * vg_act_fma says (vg_kernels.h), every other case as VG_SWITCH. */
#define VG_SWITCH_PHI(LOOP)                                                 \
    if (sizeof(T) == 4 && vg_act_fma && (kind == VG_TANH || kind == VG_SIGMOID)) { \
        switch (kind) {                                                     \
        case VG_TANH:       LOOP(VG_PHI_FMA_TANH)                           \
        default:            LOOP(VG_PHI_FMA_SIGMOID)                        \
        }                                                                   \
    } else {                                                                \
        VG_SWITCH(LOOP, VG_PHI)                                             \
    }

/* ---------------- activation forward: h += b (in place), a = phi(h) ----------------
 * `tiny` (every kernel that writes a matrix product's operand takes it, last): values below it
 * in magnitude are written as 0, and when it is > 0 the thread running the kernel has FTZ and
 * DAZ set meanwhile (an OpenMP worker is reached only here); see vg_kernels.h. */

#define VG_FWD_LOOP(EXPR)                                                   \
    for (long i = r0; i < r1; i++) {                                        \
        T *restrict hr = h + i * ld;                                        \
        T *restrict ar = a + i * ld;                                        \
        for (long j = c0; j < c1; j++) {                                    \
            T x = VG_FN(vg_flush)(hr[j] + b[j], tiny);                      \
            hr[j] = x;                                                      \
            ar[j] = VG_FN(vg_flush)((EXPR), tiny);                          \
        }                                                                   \
    }                                                                       \
    break;

VG_CLONES void VG_FN(vg_act_forward)(int kind, T param, long r0, long r1, long c0, long c1,
                                     long ld, T *restrict h, const T *restrict b,
                                     T *restrict a, T tiny)
{
    const T one = (T)1, zero = (T)0;
    (void)one; (void)zero;
    const int flush = tiny > zero;
    const unsigned fp = vg_fp_enter(flush);
    VG_SWITCH_PHI(VG_FWD_LOOP)
    vg_fp_leave(flush, fp);
}
#undef VG_FWD_LOOP

/* The same pass, also measuring: st[VG_ST_SUM_H2] = sum h^2, st[VG_ST_SUM_A] = sum a,
 * st[VG_ST_SUM_A2] = sum a^2.  The sums run down the columns (ch2, ca, ca2: cols each), in the
 * loop that writes a, so measuring costs three vector adds per element and no extra pass; the
 * column totals are added in double at the end.  For identity (a is h) pass a == h. */
#define VG_FWD_STATS_LOOP(EXPR)                                             \
    for (long i = 0; i < rows; i++) {                                       \
        T *restrict hr = h + i * cols;                                      \
        T *restrict ar = a + i * cols;                                      \
        for (long j = 0; j < cols; j++) {                                   \
            T x = VG_FN(vg_flush)(hr[j] + b[j], tiny);                      \
            hr[j] = x;                                                      \
            T y = VG_FN(vg_flush)((EXPR), tiny);                            \
            ar[j] = y;                                                      \
            ch2[j] += x * x;                                                \
            ca[j] += y;                                                     \
            ca2[j] += y * y;                                                \
        }                                                                   \
    }                                                                       \
    break;

VG_CLONES void VG_FN(vg_act_forward_stats)(int kind, T param, long rows, long cols,
                                           T *restrict h, const T *restrict b, T *restrict a,
                                           double *restrict st, T *restrict ch2,
                                           T *restrict ca, T *restrict ca2, T tiny)
{
    const T one = (T)1, zero = (T)0;
    (void)one; (void)zero;
    for (long j = 0; j < cols; j++) ch2[j] = ca[j] = ca2[j] = zero;
    VG_SWITCH_PHI(VG_FWD_STATS_LOOP)
    T th2 = 0, ta = 0, ta2 = 0;
    #pragma omp simd reduction(+:th2, ta, ta2)
    for (long j = 0; j < cols; j++) {
        th2 += ch2[j];
        ta += ca[j];
        ta2 += ca2[j];
    }
    st[VG_ST_SUM_H2] = (double)th2;
    st[VG_ST_SUM_A] = (double)ta;
    st[VG_ST_SUM_A2] = (double)ta2;
    if (VG_FN(vg_sq_small)((double)th2, rows * cols))     /* see vg_sq_small */
        st[VG_ST_SUM_H2] = VG_FN(vg_sumsq_scaled)(rows * cols, h);
    if (VG_FN(vg_sq_small)((double)ta2, rows * cols))
        st[VG_ST_SUM_A2] = VG_FN(vg_sumsq_scaled)(rows * cols, a);
}
#undef VG_FWD_STATS_LOOP

/* A linear layer's forward with the same measurements (a is h itself). */
VG_CLONES void VG_FN(vg_add_bias_stats)(long rows, long cols, T *restrict h,
                                        const T *restrict b, double *restrict st,
                                        T *restrict ch2, T *restrict ca, T tiny)
{
    for (long j = 0; j < cols; j++) ch2[j] = ca[j] = (T)0;
    for (long i = 0; i < rows; i++) {
        T *restrict hr = h + i * cols;
        for (long j = 0; j < cols; j++) {
            T x = VG_FN(vg_flush)(hr[j] + b[j], tiny);
            hr[j] = x;
            ch2[j] += x * x;
            ca[j] += x;
        }
    }
    double th2 = 0, ta = 0;
    for (long j = 0; j < cols; j++) {
        th2 += (double)ch2[j];
        ta += (double)ca[j];
    }
    if (VG_FN(vg_sq_small)(th2, rows * cols))             /* see vg_sq_small */
        th2 = VG_FN(vg_sumsq_scaled)(rows * cols, h);
    st[VG_ST_SUM_H2] = th2;
    st[VG_ST_SUM_A] = ta;
    st[VG_ST_SUM_A2] = th2;
}

/* ------- activation backward: delta = g * phi'(h) (in place over g), db = colsum(delta) -------
 * With flushing (tiny > 0) the incoming g is read flushed, and delta is written flushed. */

#define VG_BWD_LOOP(EXPR)                                                   \
    for (long j = c0; j < c1; j++) db[j] = zero;                            \
    for (long i = r0; i < r1; i++) {                                        \
        const T *restrict hr = h + i * ld;                                  \
        const T *restrict ar = a + i * ld;                                  \
        T *restrict dr = delta + i * ld;                                    \
        for (long j = c0; j < c1; j++) {                                    \
            const T x = hr[j], y = ar[j];                                   \
            (void)x; (void)y;                                               \
            T d = VG_FN(vg_flush)(VG_FN(vg_flush)(dr[j], tiny) * (EXPR), tiny); \
            dr[j] = d;                                                      \
            db[j] += d;                                                     \
        }                                                                   \
    }                                                                       \
    break;

VG_CLONES void VG_FN(vg_act_backward)(int kind, T param, long r0, long r1, long c0, long c1,
                                      long ld, const T *restrict h, const T *restrict a,
                                      T *restrict delta, T *restrict db, T tiny)
{
    const T one = (T)1, zero = (T)0;
    const int flush = tiny > zero;
    const unsigned fp = vg_fp_enter(flush);
    VG_SWITCH(VG_BWD_LOOP, VG_DPHI)
    vg_fp_leave(flush, fp);
}

/* The same pass, also measuring: st[VG_ST_SUM_D2] = sum delta^2, st[VG_ST_N_SAT] = #entries
 * with |phi'| < sat_thr, st[VG_ST_N_ZERO] = #entries with phi' == 0, st[VG_ST_N_DEAD] = #units
 * with phi' == 0 for every row, st[VG_ST_N_UNDERFLOW] = #entries whose delta is below the
 * smallest normal (0 included) while g (as read) and phi' were not 0: lost to underflow, not
 * to a zero derivative; and zc[j] = #rows with phi'(h[i, j]) == 0 (kept per unit).  Column
 * sums in cd2, csat and cuf (cols each), as in the forward pass.  known_zero: the caller knows
 * every delta is 0 (no error arrived from the layer above), so a sum of squares of 0 is not
 * taken again (vg_sq_small): in a vanished stack, most layers. */
#define VG_BWD_STATS_LOOP(EXPR)                                             \
    for (long i = 0; i < rows; i++) {                                       \
        const T *restrict hr = h + i * cols;                                \
        const T *restrict ar = a + i * cols;                                \
        T *restrict dr = delta + i * cols;                                  \
        for (long j = 0; j < cols; j++) {                                   \
            const T x = hr[j], y = ar[j];                                   \
            (void)x; (void)y;                                               \
            const T dp = (EXPR);                                            \
            const T g = VG_FN(vg_flush)(dr[j], tiny);                       \
            const T d = VG_FN(vg_flush)(g * dp, tiny);                      \
            dr[j] = d;                                                      \
            db[j] += d;                                                     \
            cd2[j] += d * d;                                                \
            csat[j] += VG_FN(vg_fabs)(dp) < sat_thr ? one : zero;           \
            zc[j] += dp == zero ? one : zero;                               \
            cuf[j] += (g != zero) & (dp != zero) & (VG_FN(vg_fabs)(d) < (T)VG_TMIN) \
                      ? one : zero;                                         \
        }                                                                   \
    }                                                                       \
    break;

VG_CLONES void VG_FN(vg_act_backward_stats)(int kind, T param, T sat_thr, long rows, long cols,
                                            const T *restrict h, const T *restrict a,
                                            T *restrict delta, T *restrict db,
                                            double *restrict st, T *restrict zc,
                                            T *restrict cd2, T *restrict csat,
                                            T *restrict cuf, int known_zero, T tiny)
{
    const T one = (T)1, zero = (T)0;
    for (long j = 0; j < cols; j++) db[j] = zc[j] = cd2[j] = csat[j] = cuf[j] = zero;
    VG_SWITCH(VG_BWD_STATS_LOOP, VG_DPHI)
    T td2 = 0, tsat = 0, tzero = 0, tdead = 0, tuf = 0;
    const T all = (T)rows;
    #pragma omp simd reduction(+:td2, tsat, tzero, tdead, tuf)
    for (long j = 0; j < cols; j++) {
        td2 += cd2[j];
        tsat += csat[j];
        tzero += zc[j];
        tdead += zc[j] == all ? one : zero;
        tuf += cuf[j];
    }
    st[VG_ST_SUM_D2] = (double)td2;
    if (!known_zero && VG_FN(vg_sq_small)((double)td2, rows * cols))   /* vg_sq_small */
        st[VG_ST_SUM_D2] = VG_FN(vg_sumsq_scaled)(rows * cols, delta);
    st[VG_ST_N_SAT] = (double)tsat;
    st[VG_ST_N_ZERO] = (double)tzero;
    st[VG_ST_N_DEAD] = (double)tdead;
    st[VG_ST_N_UNDERFLOW] = (double)tuf;
}
#undef VG_BWD_STATS_LOOP

/* The linear output layer's backward measurements: db = colsum(g), delta = g (not written). */
VG_CLONES void VG_FN(vg_colsum_stats)(long rows, long cols, const T *restrict g,
                                      T *restrict db, double *restrict st, T *restrict cd2)
{
    for (long j = 0; j < cols; j++) {
        db[j] = (T)0;
        cd2[j] = (T)0;
    }
    for (long i = 0; i < rows; i++) {
        const T *restrict gr = g + i * cols;
        for (long j = 0; j < cols; j++) {
            db[j] += gr[j];
            cd2[j] += gr[j] * gr[j];
        }
    }
    double td2 = 0;
    for (long j = 0; j < cols; j++) td2 += (double)cd2[j];
    if (VG_FN(vg_sq_small)(td2, rows * cols))             /* see vg_sq_small */
        td2 = VG_FN(vg_sumsq_scaled)(rows * cols, g);
    st[VG_ST_SUM_D2] = td2;
    st[VG_ST_N_SAT] = 0;
    st[VG_ST_N_ZERO] = 0;
    st[VG_ST_N_DEAD] = 0;
    st[VG_ST_N_UNDERFLOW] = 0;
}

/* Sum of squares with VG_LANES independent partial sums (vectorised without reassociation
 * flags; the same summation order on every CPU), in double. */
static inline double VG_FN(vg_sumsq)(long n, const T *restrict x)
{
    /* partial sums in double: a float32 array whose entries pass 1.8e19 still has a finite
     * norm (the global-norm clipping relies on it) */
    double acc[VG_LANES] = {0};
    long k = 0;
    for (; k + VG_LANES <= n; k += VG_LANES)
        for (int l = 0; l < VG_LANES; l++) acc[l] += (double)x[k + l] * (double)x[k + l];
    for (; k < n; k++) acc[k % VG_LANES] += (double)x[k] * (double)x[k];
    for (int w = VG_LANES / 2; w >= 8; w /= 2)
        for (int l = 0; l < w; l++) acc[l] += acc[l + w];
    double s = 0;
    for (int l = 0; l < 8; l++) s += acc[l];
    return s;
}

/* Squared norms of a parameter block p and its gradient g (n elements), into *p2 and *g2. */
VG_CLONES void VG_FN(vg_norms2)(long n, const T *restrict p, const T *restrict g,
                                double *restrict p2, double *restrict g2)
{
    *p2 = VG_FN(vg_sumsq)(n, p);
    *g2 = VG_FN(vg_sumsq)(n, g);
}

/* p -= lr * g over n elements, measuring on the way (the pass reads p and g anyway):
 * out[0] = ||p before||^2, out[1] = ||g||^2, out[2] = ||lr g||^2 (the step's size). */
VG_CLONES void VG_FN(vg_sgd_norms)(long n, T lr, T *restrict p, const T *restrict g,
                                   double *restrict out)
{
    /* an OpenMP SIMD reduction: the sums' order follows the vector width, so these norms (not
     * the parameters) may differ in the last bits between CPUs */
    T sp = 0, sg = 0;
    #pragma omp simd reduction(+:sp, sg)
    for (long k = 0; k < n; k++) {
        T old = p[k], gg = g[k];
        p[k] = old - lr * gg;
        sp += old * old;
        sg += gg * gg;
    }
    out[0] = (double)sp;
    out[1] = (double)sg;
    if (VG_FN(vg_sq_small)(out[1], n))        /* a gradient float32 cannot square: vg_sq_small */
        out[1] = VG_FN(vg_sumsq_scaled)(n, g);
    out[2] = (double)lr * (double)lr * out[1];
}

/* out[i] = sum_j x[i, j]^2 (row norms squared; a row's sum taken again from its scaled
 * squares where the plain one is too small for float32, unless the caller knows x is all 0:
 * vg_sq_small) */
VG_CLONES void VG_FN(vg_row_norms2)(long rows, long cols, const T *restrict x,
                                    double *restrict out, int known_zero)
{
    int small = 0;
    for (long i = 0; i < rows; i++) {
        const T *restrict xr = x + i * cols;
        T s = 0;
        #pragma omp simd reduction(+:s)     /* one short vector reduction per row */
        for (long j = 0; j < cols; j++) s += xr[j] * xr[j];
        out[i] = (double)s;
        small |= VG_FN(vg_sq_small)((double)s, cols);
    }
    if (small && !known_zero)
        VG_FN(vg_row_sumsq_scaled)(rows, cols, x, out);
}

/* ---------------- losses: mean over the batch, gradient written to g ---------------- */

/* Softmax cross-entropy with integer labels, log-sum-exp stable.
 * loss = mean_i (logsumexp(z_i) - z_i[y_i]);  g = (softmax(z) - onehot(y)) / n. */
/* The losses: means over n_all rows, of which these n (a batch chunk's rows, or all of them):
 * the gradient rows are the whole batch's, the value is this chunk's share of the mean. */
static double VG_FN(vg_softmax_xent)(long n, long c, const T *restrict z,
                                     const int64_t *restrict y, T *restrict g, long n_all)
{
    double total = 0.0;
    const double inv_nd = 1.0 / (double)n_all;  /* each term scaled before the sum: a finite
                                                   mean of huge terms must not overflow to Inf */
    const T inv_n = (T)1 / (T)n_all;
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
        total += ((double)m + log((double)s) - (double)zy) * inv_nd;
    }
    return total;
}

/* Mean squared error over all n*m elements: loss = mean((p - t)^2); g = 2 (p - t) / (n m). */
static double VG_FN(vg_mse)(long n, long m, const T *restrict p, const T *restrict t,
                            T *restrict g, long n_all)
{
    double total = 0.0;
    const long len = n * m;
    const double inv_len = 1.0 / ((double)n_all * (double)m);  /* scaled before the sum */
    const T scale = (T)2 / (T)(n_all * m);
    for (long k = 0; k < len; k++) {
        T d = p[k] - t[k];
        total += (double)d * (double)d * inv_len;
        g[k] = scale * d;
    }
    return total;
}

/* Binary cross-entropy with logits, mean over all n*m elements:
 * loss = mean(max(z, 0) - z t + log1p(exp(-|z|)));  g = (sigmoid(z) - t) / (n m). */
static double VG_FN(vg_bce_logits)(long n, long m, const T *restrict z, const T *restrict t,
                                   T *restrict g, long n_all)
{
    double total = 0.0;
    const long len = n * m;
    const double inv_len = 1.0 / ((double)n_all * (double)m);  /* scaled before the sum */
    const T scale = (T)1 / (T)(n_all * m);
    for (long k = 0; k < len; k++) {
        T x = z[k];
        double ax = fabs((double)x);
        total += ((x > 0 ? (double)x : 0.0) - (double)x * (double)t[k] + log1p(exp(-ax)))
                 * inv_len;
        g[k] = scale * (VG_FN(vg_sigmoid)(x) - t[k]);
    }
    return total;
}

/* ---------------- flat-buffer utilities ---------------- */


/* 1 when every element is finite, 0 when any is NaN or +-Inf. */
VG_CLONES int VG_FN(vg_all_finite)(long n, const T *restrict x)
{
    int bad = 0;
    for (long k = 0; k < n; k++) bad |= !(VG_FN(vg_fabs)(x[k]) <= VG_TMAX);
    return !bad;
}

/* What one pass over x finds (the input check of forward, backward and train_step):
 * VG_SCAN_NONFINITE when an element is NaN or +-Inf, VG_SCAN_SUBNORMAL when one is subnormal
 * (not 0, below the smallest normal in magnitude).  Read from the bits, so DAZ in the running
 * thread (which would read a subnormal as 0) changes nothing. */
VG_CLONES int VG_FN(vg_scan_values)(long n, const T *restrict x)
{
    int bad = 0, sub = 0;
    for (long k = 0; k < n; k++) {
        VG_UINT b;
        memcpy(&b, x + k, sizeof b);
        const VG_UINT e = b & VG_EXP_BITS;
        bad |= e == VG_EXP_BITS;
        sub |= (e == 0) & ((b & VG_MANT_BITS) != 0);
    }
    return (bad ? VG_SCAN_NONFINITE : 0) | (sub ? VG_SCAN_SUBNORMAL : 0);
}

/* dst = src with each subnormal entry (as vg_scan_values finds them) written as +0 and every
 * other value, -0 included, as it is: an input read the way a flushing network reads it.
 * dst may be src (in place). */
VG_CLONES void VG_FN(vg_flush_subnormals)(long n, const T *src, T *dst)
{
    for (long k = 0; k < n; k++) {
        const T v = src[k];
        VG_UINT b;
        memcpy(&b, &v, sizeof b);
        dst[k] = ((b & VG_EXP_BITS) == 0) & ((b & VG_MANT_BITS) != 0) ? (T)0 : v;
    }
}

/* p -= lr * g over [k0, k1); with flush, under FTZ and DAZ in the running thread */
VG_CLONES void VG_FN(vg_sgd)(long k0, long k1, T lr, T *restrict p, const T *restrict g,
                             int flush)
{
    const unsigned fp = vg_fp_enter(flush);
    for (long k = k0; k < k1; k++) p[k] -= lr * g[k];
    vg_fp_leave(flush, fp);
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

/* h[i, j] += b[j] over the block (the bias of a linear layer, in place); flushed with tiny. */
VG_CLONES void VG_FN(vg_add_bias)(long r0, long r1, long c0, long c1, long ld,
                                  T *restrict h, const T *restrict b, T tiny)
{
    const int flush = tiny > (T)0;
    const unsigned fp = vg_fp_enter(flush);
    for (long i = r0; i < r1; i++) {
        T *restrict hr = h + i * ld;
        for (long j = c0; j < c1; j++) hr[j] = VG_FN(vg_flush)(hr[j] + b[j], tiny);
    }
    vg_fp_leave(flush, fp);
}

/* ---------------- optimisers: one fused update over a block of the flat buffer ----------------
 * kind: VG_OPT_*; hp: the VG_HP_* slots (vg_contract.h).
 * out: ||p before||^2, ||g||^2 (the raw gradient, before clipping), ||p after - p before||^2. */
VG_CLONES void VG_FN(vg_opt_update)(int kind, long n, T *restrict p, const T *restrict g,
                                    T *restrict s1, T *restrict s2, const double *restrict hp,
                                    double *restrict out)
{
    const T lr = (T)hp[VG_HP_LR], gscale = (T)hp[VG_HP_GSCALE], cv = (T)hp[VG_HP_CLIP_VALUE];
    const T wd = (T)hp[VG_HP_WEIGHT_DECAY];
    const T b1 = (T)hp[VG_HP_BETA1], b2 = (T)hp[VG_HP_BETA2], eps = (T)hp[VG_HP_EPS];
    const int nesterov = hp[VG_HP_NESTEROV] != 0.0, decoupled = hp[VG_HP_DECOUPLED] != 0.0;
    const int first = hp[VG_HP_FIRST_STEP] != 0.0;
    const T bc1 = (T)hp[VG_HP_BIAS_CORR1], bc2 = (T)hp[VG_HP_BIAS_CORR2];
    const int clip = cv > (T)0, use_wd = wd != (T)0;
    T sp = 0, sg = 0, su = 0;
#define VG_OPT_LOOP(BODY)                                                   \
    _Pragma("omp simd reduction(+:sp, sg, su)")                             \
    for (long k = 0; k < n; k++) {                                          \
        const T old = p[k], graw = g[k];                                    \
        T gg = graw * gscale;                                               \
        if (clip) gg = gg > cv ? cv : (gg < -cv ? -cv : gg);                \
        T nw;                                                               \
        BODY                                                                \
        p[k] = nw;                                                          \
        const T u = nw - old;                                               \
        sp += old * old;                                                    \
        sg += graw * graw;                                                  \
        su += u * u;                                                        \
    }
    switch (kind) {
    case VG_OPT_SGD: /* momentum and Nesterov in PyTorch's form: the buffer starts at g */
        if (b1 == (T)0) {
            VG_OPT_LOOP(if (use_wd) gg += wd * old; nw = old - lr * gg;)
        } else {
            VG_OPT_LOOP(if (use_wd) gg += wd * old;
                        T buf = first ? gg : b1 * s1[k] + gg;
                        s1[k] = buf;
                        T d = nesterov ? gg + b1 * buf : buf;
                        nw = old - lr * d;)
        }
        break;
    case VG_OPT_RMSPROP:
        VG_OPT_LOOP(if (use_wd) gg += wd * old;
                    T sq = b1 * s1[k] + ((T)1 - b1) * gg * gg;
                    s1[k] = sq;
                    nw = old - lr * gg / (VG_FN(vg_sqrt)(sq) + eps);)
        break;
    case VG_OPT_ADAGRAD:
        VG_OPT_LOOP(if (use_wd) gg += wd * old;
                    T acc = s1[k] + gg * gg;
                    s1[k] = acc;
                    nw = old - lr * gg / (VG_FN(vg_sqrt)(acc) + eps);)
        break;
    case VG_OPT_ADAM: /* and AdamW when the weight decay is decoupled */
        VG_OPT_LOOP(if (use_wd && !decoupled) gg += wd * old;
                    T m = b1 * s1[k] + ((T)1 - b1) * gg;
                    T v = b2 * s2[k] + ((T)1 - b2) * gg * gg;
                    s1[k] = m;
                    s2[k] = v;
                    T base = decoupled ? old - lr * wd * old : old;
                    nw = base - lr * (m / bc1) / (VG_FN(vg_sqrt)(v / bc2) + eps);)
        break;
    default: break;
    }
#undef VG_OPT_LOOP
    out[0] = (double)sp;
    out[1] = (double)sg;
    /* the update is the parameters' actual change, a multiple of their ulp (or 0): its squares
     * fall below FLT_MIN only for parameters that small themselves, not taken again */
    out[2] = (double)su;
    if (VG_FN(vg_sq_small)(out[1], n))        /* see vg_sq_small; g is as it came */
        out[1] = VG_FN(vg_sumsq_scaled)(n, g);
}

/* ||x||^2 of a whole buffer (the global gradient norm for clipping), in double. */
VG_CLONES double VG_FN(vg_norm2)(long n, const T *restrict x)
{
    return VG_FN(vg_sumsq)(n, x);
}

/* ---------------- normalisation, residual blocks, dropout ----------------
 * Batch norm normalises each unit (column) over the batch, layer norm each sample (row) over
 * its units; both then scale and shift: z = gamma * xhat + beta.  `mean` and `invstd` hold
 * per-column (batch) or per-row (layer) statistics of h. */

/* Batch statistics of h (training: from the batch, and the running averages are updated with
 * momentum m, the variance unbiased; eval: from the running averages). */
VG_CLONES void VG_FN(vg_bn_stats)(long rows, long cols, const T *restrict h,
                                  T *restrict mean, T *restrict invstd, double eps,
                                  double *restrict run_mean, double *restrict run_var,
                                  double m, int training)
{
    if (!training) {
        for (long j = 0; j < cols; j++) {
            mean[j] = (T)run_mean[j];
            invstd[j] = (T)(1.0 / sqrt(run_var[j] + eps));
        }
        return;
    }
    for (long j = 0; j < cols; j++) mean[j] = invstd[j] = (T)0;
    for (long i = 0; i < rows; i++) {
        const T *restrict hr = h + i * cols;
        for (long j = 0; j < cols; j++) mean[j] += hr[j];
    }
    const T inv_n = (T)1 / (T)rows;
    for (long j = 0; j < cols; j++) mean[j] *= inv_n;
    for (long i = 0; i < rows; i++) {           /* two passes: no cancellation */
        const T *restrict hr = h + i * cols;
        for (long j = 0; j < cols; j++) {
            T d = hr[j] - mean[j];
            invstd[j] += d * d;
        }
    }
    const double unbias = rows > 1 ? (double)rows / (double)(rows - 1) : 1.0;
    for (long j = 0; j < cols; j++) {
        double var = (double)invstd[j] / (double)rows;
        run_mean[j] = (1.0 - m) * run_mean[j] + m * (double)mean[j];
        run_var[j] = (1.0 - m) * run_var[j] + m * var * unbias;
        invstd[j] = (T)(1.0 / sqrt(var + eps));
    }
}

/* Per-sample statistics of h over its units. */
VG_CLONES void VG_FN(vg_ln_stats)(long rows, long cols, const T *restrict h,
                                  T *restrict mean, T *restrict invstd, double eps)
{
    for (long i = 0; i < rows; i++) {
        const T *restrict hr = h + i * cols;
        T s = 0;
        #pragma omp simd reduction(+:s)
        for (long j = 0; j < cols; j++) s += hr[j];
        const T mu = s / (T)cols;
        T v = 0;
        #pragma omp simd reduction(+:v)
        for (long j = 0; j < cols; j++) v += (hr[j] - mu) * (hr[j] - mu);
        mean[i] = mu;
        invstd[i] = (T)(1.0 / sqrt((double)v / (double)cols + eps));
    }
}

/* z = gamma * (h - mean) * invstd + beta; per-column statistics (batch norm, by_row = 0) or
 * per-row (layer norm, by_row = 1). */
VG_CLONES void VG_FN(vg_norm_affine)(int by_row, long rows, long cols, const T *restrict h,
                                     const T *restrict mean, const T *restrict invstd,
                                     const T *restrict gamma, const T *restrict beta,
                                     T *restrict z)
{
    for (long i = 0; i < rows; i++) {
        const T *restrict hr = h + i * cols;
        T *restrict zr = z + i * cols;
        if (by_row) {
            const T mu = mean[i], is = invstd[i];
            for (long j = 0; j < cols; j++) zr[j] = gamma[j] * ((hr[j] - mu) * is) + beta[j];
        } else {
            for (long j = 0; j < cols; j++)
                zr[j] = gamma[j] * ((hr[j] - mean[j]) * invstd[j]) + beta[j];
        }
    }
}

/* Batch-norm backward: d (in: dL/dz, out: dL/dh) in place; dbeta = colsum(dL/dz) is given
 * (the activation's backward wrote it); dgamma = colsum(dL/dz * xhat) is written.
 * Training: dh = gamma invstd (dz - mean_i dz - xhat mean_i(dz xhat)); eval: gamma invstd dz. */
VG_CLONES void VG_FN(vg_bn_backward)(long rows, long cols, const T *restrict h,
                                     const T *restrict mean, const T *restrict invstd,
                                     const T *restrict gamma, T *restrict d,
                                     const T *restrict dbeta, T *restrict dgamma, int training,
                                     T tiny)
{
    for (long j = 0; j < cols; j++) dgamma[j] = (T)0;
    for (long i = 0; i < rows; i++) {
        const T *restrict hr = h + i * cols;
        const T *restrict dr = d + i * cols;
        for (long j = 0; j < cols; j++) dgamma[j] += dr[j] * ((hr[j] - mean[j]) * invstd[j]);
    }
    const T inv_n = (T)1 / (T)rows;
    for (long i = 0; i < rows; i++) {
        const T *restrict hr = h + i * cols;
        T *restrict dr = d + i * cols;
        if (training) {
            for (long j = 0; j < cols; j++) {
                T xh = (hr[j] - mean[j]) * invstd[j];
                dr[j] = VG_FN(vg_flush)(gamma[j] * invstd[j] * (dr[j] - dbeta[j] * inv_n
                                                                - xh * (dgamma[j] * inv_n)), tiny);
            }
        } else {
            for (long j = 0; j < cols; j++)
                dr[j] = VG_FN(vg_flush)(gamma[j] * invstd[j] * dr[j], tiny);
        }
    }
}

/* Layer-norm backward: d (in: dL/dz, out: dL/dh) in place; dgamma = colsum(dz * xhat). */
VG_CLONES void VG_FN(vg_ln_backward)(long rows, long cols, const T *restrict h,
                                     const T *restrict mean, const T *restrict invstd,
                                     const T *restrict gamma, T *restrict d,
                                     T *restrict dgamma, T tiny)
{
    for (long j = 0; j < cols; j++) dgamma[j] = (T)0;
    const T inv_c = (T)1 / (T)cols;
    for (long i = 0; i < rows; i++) {
        const T *restrict hr = h + i * cols;
        T *restrict dr = d + i * cols;
        const T mu = mean[i], is = invstd[i];
        T r1 = 0, r2 = 0;
        #pragma omp simd reduction(+:r1, r2)
        for (long j = 0; j < cols; j++) {
            T xh = (hr[j] - mu) * is;
            T dxh = dr[j] * gamma[j];
            r1 += dxh;
            r2 += dxh * xh;
        }
        r1 *= inv_c;
        r2 *= inv_c;
        for (long j = 0; j < cols; j++) {
            T xh = (hr[j] - mu) * is;
            dgamma[j] += dr[j] * xh;
            dr[j] = VG_FN(vg_flush)(is * (dr[j] * gamma[j] - r1 - xh * r2), tiny);
        }
    }
}

/* out = (x + alpha a) (residual, when x != NULL) or a, then times mask / (1 - p) (dropout,
 * when p > 0); the mask comes from vg_dropout_keep(key, i * cols + j, p). */
VG_CLONES void VG_FN(vg_res_drop_forward)(long rows, long cols, const T *restrict x, T alpha,
                                          const T *restrict a, T *restrict out, double p,
                                          uint64_t key, T tiny)
{
    const T scale = p > 0 ? (T)(1.0 / (1.0 - p)) : (T)1;
    for (long i = 0; i < rows; i++) {
        const T *restrict ar = a + i * cols;
        T *restrict orow = out + i * cols;
        const T *restrict xr = x ? x + i * cols : 0;
        for (long j = 0; j < cols; j++) {
            T v = xr ? xr[j] + alpha * ar[j] : ar[j];
            if (p > 0) v = vg_dropout_keep(key, (uint64_t)(i * cols + j), p) ? v * scale : (T)0;
            orow[j] = VG_FN(vg_flush)(v, tiny);
        }
    }
}

/* Backward of vg_res_drop_forward on g = dL/dout in place: g *= mask / (1 - p); then, for a
 * residual block, skip = g (the identity path's gradient) and g *= alpha. */
VG_CLONES void VG_FN(vg_res_drop_backward)(long rows, long cols, T *restrict g,
                                           T *restrict skip, int residual, T alpha, double p,
                                           uint64_t key, T tiny)
{
    const T scale = p > 0 ? (T)(1.0 / (1.0 - p)) : (T)1;
    for (long i = 0; i < rows; i++) {
        T *restrict gr = g + i * cols;
        T *restrict sr = skip ? skip + i * cols : 0;
        for (long j = 0; j < cols; j++) {
            T v = VG_FN(vg_flush)(gr[j], tiny);
            if (p > 0) v = vg_dropout_keep(key, (uint64_t)(i * cols + j), p) ? v * scale : (T)0;
            v = VG_FN(vg_flush)(v, tiny);
            if (sr) sr[j] = v;
            gr[j] = VG_FN(vg_flush)(residual ? alpha * v : v, tiny);
        }
    }
}
