/*
 * vg_math.h -- elementwise math for the vgcore engine.
 *
 * Plain C99, no Python.  Every function here is branch-free in the common path so that
 * gcc/clang vectorise the loops that call it (checked with -fopt-info-vec).  exp() is a
 * Cephes-style range reduction with a polynomial and a 2^n scale built from the bit
 * pattern; its input is clamped so that it never overflows to Inf, and NaN propagates.
 * The rest (sigmoid, float64 tanh, ...) is built on it; float32 tanh repeats its range
 * reduction to take expm1 instead (see there); erf, erfc and log1p come from libm.
 */
#ifndef VG_MATH_H
#define VG_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* 2^n from t = (a multiple of log2 e) + VG_MAGIC_F32, whose low mantissa bits then hold the
 * integer n (the range reductions below): n + 127 moved into the exponent field. */
#define VG_MAGIC_F32 12582912.0f                /* 1.5 * 2^23: rounds to an integer */
static inline float vg_pow2n_f32(float t)
{
    const float magic = VG_MAGIC_F32;
    uint32_t tb, mb;
    memcpy(&tb, &t, 4);
    memcpy(&mb, &magic, 4);
    uint32_t sb = ((tb - mb) + 127u) << 23;
    float s;
    memcpy(&s, &sb, 4);
    return s;
}

/* ---- exp, float32: |rel err| < 2 ulp on [-87, 88]; +Inf above 88.72, 0 below -87
 * (flush to zero: the exact value there is below FLT_MIN) ---- */
static inline float vg_exp_f32(float x0)
{
    const float magic = VG_MAGIC_F32;
    float x = x0 > 88.0f ? 88.0f : x0;          /* comparisons keep NaN as NaN */
    x = x < -87.0f ? -87.0f : x;
    float t = x * 1.44269504088896341f + magic;
    float n = t - magic;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    float s = vg_pow2n_f32(t);
    float y = p * s;
    y = x0 > 88.7228390f ? INFINITY : y;
    return x0 < -87.0f ? 0.0f : y;
}

/* ---- exp, float64: Cephes Pade form, |rel err| < 2 ulp on [-708, 709]; +Inf above
 * 709.78, 0 below -708 (flush to zero) ---- */
static inline double vg_exp_f64(double x0)
{
    const double magic = 6755399441055744.0;    /* 1.5 * 2^52 */
    double x = x0 > 709.0 ? 709.0 : x0;
    x = x < -708.0 ? -708.0 : x;
    double t = x * 1.4426950408889634073599 + magic;
    double n = t - magic;
    double r = x - n * 6.93145751953125e-1;
    r = r - n * 1.42860682030941723212e-6;
    double xx = r * r;
    double px = ((1.26177193074810590878e-4 * xx + 3.02994407707441961300e-2) * xx
                 + 9.99999999999999999910e-1) * r;
    double qx = ((3.00198505138664455042e-6 * xx + 2.52448340349684104192e-3) * xx
                 + 2.27265548208155028766e-1) * xx + 2.00000000000000000009e0;
    double e = 1.0 + 2.0 * (px / (qx - px));
    uint64_t tb, mb;
    memcpy(&tb, &t, 8);
    memcpy(&mb, &magic, 8);
    uint64_t sb = ((tb - mb) + 1023u) << 52;
    double s;
    memcpy(&s, &sb, 8);
    double y = e * s;
    y = x0 > 709.782712893384 ? INFINITY : y;
    return x0 < -708.0 ? 0.0 : y;
}

/* ---- tanh ----
 * float32: e = exp(-2|x|) = 2^n (1 + m), m = expm1(r) for the reduced argument |r| <= ln2/2
 * (Taylor to r^7: truncation below 2e-8 relative), and u = expm1(-2|x|) = 2^n m + (2^n - 1).
 * For |x| < 0.87 (n >= -2): tanh|x| = -u / (2 + u), no cancellation near 0 (tanh(x) == x for
 * |x| < 2^-25), without the separate series an exp-based form needs there.  Beyond:
 * tanh|x| = 1 - 2e / (1 + e), one rounding where the result is near 1, so it is 1 exactly where
 * the correctly rounded tanh is (from |x| = 9.01) and not before: the derivative 1 - y^2 that
 * backprop and the zero-derivative and saturation counts read from y is as good as float32 can
 * hold.  Within 2.3 ulp of tanh for every float, 1.03 for |x| >= 1, 0.6 for |x| >= 2 (the
 * earlier form (1 - e) / (1 + e) with a series below 0.125: 3.95, 1.5 and 1.5); about 10%
 * faster than it.
 * -2|x| is clamped at -88 (e is then 0 and the result 1); NaN stays NaN.
 * float64: odd Taylor series near 0 (no cancellation), (1-e)/(1+e) with e = exp(-2|x|) beyond. */
static inline float vg_tanh_f32(float x)
{
    const float magic = VG_MAGIC_F32;
    float z = -2.0f * fabsf(x);
    z = z < -88.0f ? -88.0f : z;                /* comparisons keep NaN as NaN */
    float t = z * 1.44269504088896341f + magic;
    float n = t - magic;
    float r = z - n * 0.693359375f;             /* ln 2 in two parts (Cody-Waite) */
    r = r - n * -2.12194440e-4f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    float m = r + (r * r) * p;                  /* expm1(r) */
    float s = vg_pow2n_f32(t);                  /* n in [-127, 0] (n = -127 gives 0) */
    float sm = s * m;
    float u = sm + (s - 1.0f);                  /* expm1(-2|x|) */
    float e = sm + s;                           /* exp(-2|x|) */
    int near0 = n > -2.5f;
    float num = near0 ? -u : 2.0f * e;
    float den = near0 ? 2.0f + u : 1.0f + e;
    float q = num / den;
    return copysignf(near0 ? q : 1.0f - q, x);
}

static inline double vg_tanh_f64(double x)
{
    double ax = fabs(x);
    double e = vg_exp_f64(-2.0 * ax);
    double big = (1.0 - e) / (1.0 + e);
    double x2 = ax * ax;
    double small = ax * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0
                   + x2 * (62.0 / 2835.0 + x2 * (-1382.0 / 155925.0 + x2 * (21844.0 / 6081075.0
                   + x2 * (-929569.0 / 638512875.0 + x2 * (6404582.0 / 10854718875.0)))))))));
    double y = ax < 0.125 ? small : big;
    return copysign(y, x);
}

/* ---- float32 exp and tanh with fused multiply-adds (vg_act_fma in vg_kernels.h) ----
 * The same range reductions and polynomials as vg_exp_f32 and vg_tanh_f32, each step a fused
 * multiply-add (one rounding instead of two) and the polynomial in r evaluated in Estrin's
 * form (three short chains in r^2) instead of Horner's one long one.  The loops that call them
 * were bound by that chain's latency, not by the number of operations: on a Zen 3 core a
 * vector of 8 tanh took 35 cycles, 26 with these (exp and sigmoid: 0.89 -> 0.69 ns a value).
 * Checked over every float32 (a C loop against libm's double tanh and exp, not kept): tanh
 * within 2.298 ulp, 1.028 for |x| >= 1, 0.597 for |x| >= 2, odd, 1 exactly where the
 * correctly rounded tanh is, x itself below 2^-25 (the bounds of vg_tanh_f32); sigmoid within
 * 2.47 ulp, as vg_sigmoid_f32.  They give other last bits than the plain versions in about
 * 0.15% of the values.  __builtin_fmaf is one instruction only where the code is compiled for
 * a CPU with FMA; vg_kernels.h calls these by default only there (elsewhere each is a call to
 * the C library's fmaf: the same values, many times slower). */
#if defined(__GNUC__)
#define VG_FMAF(a, b, c) __builtin_fmaf((a), (b), (c))
#else
#define VG_FMAF(a, b, c) fmaf((a), (b), (c))
#endif

static inline float vg_exp_fma_f32(float x0)
{
    const float magic = VG_MAGIC_F32;
    float x = x0 > 88.0f ? 88.0f : x0;
    x = x < -87.0f ? -87.0f : x;
    float t = VG_FMAF(x, 1.44269504088896341f, magic);
    float n = t - magic;
    float r = VG_FMAF(n, -0.693359375f, x);
    r = VG_FMAF(n, 2.12194440e-4f, r);
    float r2 = r * r;
    float p01 = VG_FMAF(1.6666665459e-1f, r, 5.0000001201e-1f);
    float p23 = VG_FMAF(8.3334519073e-3f, r, 4.1665795894e-2f);
    float p45 = VG_FMAF(1.9875691500e-4f, r, 1.3981999507e-3f);
    float p = VG_FMAF(VG_FMAF(p45, r2, p23), r2, p01);
    p = VG_FMAF(p, r2, r) + 1.0f;
    float s = vg_pow2n_f32(t);
    float y = p * s;
    y = x0 > 88.7228390f ? INFINITY : y;
    return x0 < -87.0f ? 0.0f : y;
}

static inline float vg_tanh_fma_f32(float x)
{
    const float magic = VG_MAGIC_F32;
    float z = -2.0f * fabsf(x);
    z = z < -88.0f ? -88.0f : z;
    float t = VG_FMAF(z, 1.44269504088896341f, magic);
    float n = t - magic;
    float r = VG_FMAF(n, -0.693359375f, z);
    r = VG_FMAF(n, 2.12194440e-4f, r);
    float r2 = r * r;
    float p01 = VG_FMAF(1.0f / 6.0f, r, 0.5f);
    float p23 = VG_FMAF(1.0f / 120.0f, r, 1.0f / 24.0f);
    float p45 = VG_FMAF(1.0f / 5040.0f, r, 1.0f / 720.0f);
    float p = VG_FMAF(VG_FMAF(p45, r2, p23), r2, p01);
    float m = VG_FMAF(r2, p, r);                /* expm1(r) */
    float s = vg_pow2n_f32(t);
    float u = VG_FMAF(s, m, s - 1.0f);          /* expm1(-2|x|) */
    float e = VG_FMAF(s, m, s);                 /* exp(-2|x|) */
    int near0 = n > -2.5f;
    float num = near0 ? -u : 2.0f * e;
    float den = near0 ? 2.0f + u : 1.0f + e;
    float q = num / den;
    return copysignf(VG_FMAF(near0 ? 1.0f : -1.0f, q, near0 ? 0.0f : 1.0f), x);
}

static inline float vg_sigmoid_fma_f32(float x) { return 1.0f / (1.0f + vg_exp_fma_f32(-x)); }
/* float64 keeps one version (the kernels' float64 instantiation names these) */
static inline double vg_tanh_fma_f64(double x) { return vg_tanh_f64(x); }

/* ---- sigmoid: 1 / (1 + exp(-x)); exp(-x) = +Inf for x << 0 gives exactly 0 ---- */
static inline float vg_sigmoid_f32(float x) { return 1.0f / (1.0f + vg_exp_f32(-x)); }
static inline double vg_sigmoid_f64(double x) { return 1.0 / (1.0 + vg_exp_f64(-x)); }
static inline double vg_sigmoid_fma_f64(double x) { return vg_sigmoid_f64(x); }

/* libm names per type, for the templated kernels */
static inline float vg_erf_f32(float x) { return erff(x); }
static inline double vg_erf_f64(double x) { return erf(x); }
static inline float vg_erfc_f32(float x) { return erfcf(x); }
static inline double vg_erfc_f64(double x) { return erfc(x); }
static inline float vg_expm1_f32(float x) { return expm1f(x); }
static inline double vg_expm1_f64(double x) { return expm1(x); }
static inline float vg_log1p_f32(float x) { return log1pf(x); }
static inline double vg_log1p_f64(double x) { return log1p(x); }
static inline float vg_sqrt_f32(float x) { return sqrtf(x); }
static inline double vg_sqrt_f64(double x) { return sqrt(x); }
static inline float vg_fabs_f32(float x) { return fabsf(x); }
static inline double vg_fabs_f64(double x) { return fabs(x); }

#endif /* VG_MATH_H */
