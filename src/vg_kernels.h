/*
 * vg_kernels.h -- the compiled core's C kernels, instantiated for float and double.
 *
 * Knows nothing of Python: pointers, sizes and plain numbers only.  The hot loops are
 * compiled several times (target_clones) and the best version for the running CPU is picked
 * when the module loads, so one build runs everywhere and still uses AVX2/AVX-512 where found.
 */
#ifndef VG_KERNELS_H
#define VG_KERNELS_H

#include <float.h>
#include "vg_math.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(VG_NO_CLONES)
#define VG_CLONES static __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VG_CLONES static
#endif

/* ---- float32 tanh and sigmoid with fused multiply-adds (vg_math.h) ----
 * The forward kernels compute tanh and sigmoid with vg_tanh_fma_f32 / vg_sigmoid_fma_f32 when
 * vg_act_fma is 1, with vg_tanh_f32 / vg_sigmoid_f32 otherwise.  Only where fmaf is one
 * instruction in the code that runs: the x86-64-v3 and v4 clones (vg_act_fma_best() checks the
 * CPU, so the clone picked is one of them), or a target whose baseline has it (__FP_FAST_FMAF:
 * arm64).  Both kinds of CPU give results within the same bounds, not the same last bits;
 * a given machine always takes the same path, whatever the thread count.  Settable for tests
 * and comparison (_engine.set_act_fma); set where vg_act_fma_best() is 0, the same values come
 * from the C library's exact fmaf, slowly (the sanitizer build, without clones, tests it so). */
static int vg_act_fma = 0;

static inline int vg_act_fma_best(void)
{
#if defined(__FP_FAST_FMAF)
    return 1;
#elif defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(VG_NO_CLONES)
    return __builtin_cpu_supports("x86-64-v3") > 0;
#else
    return 0;
#endif
}

enum {
    VG_IDENTITY = 0, VG_SIGMOID, VG_TANH, VG_RELU, VG_LEAKY_RELU, VG_ELU, VG_SELU,
    VG_GELU, VG_SOFTPLUS, VG_SOFTSIGN, VG_SILU, VG_HARD_TANH, VG_N_ACTIVATIONS
};

/* Fields of a layer's row in the measurement array (doubles). */
enum {
    VG_ST_SUM_H2 = 0,   /* sum of squared pre-activations h */
    VG_ST_SUM_A,        /* sum of activations a */
    VG_ST_SUM_A2,       /* sum of squared activations */
    VG_ST_SUM_D2,       /* sum of squared deltas dL/dh */
    VG_ST_N_SAT,        /* entries with |phi'(h)| below the saturation threshold */
    VG_ST_N_ZERO,       /* entries with phi'(h) == 0 */
    VG_ST_N_DEAD,       /* units with phi'(h) == 0 for every sample of the batch */
    VG_ST_W2,           /* ||W||_F^2 */
    VG_ST_DW2,          /* ||dL/dW||_F^2 */
    VG_ST_B2,           /* ||b||^2 */
    VG_ST_DB2,          /* ||dL/db||^2 */
    VG_ST_UW2,          /* ||W after - W before||^2 of the last optimiser step */
    VG_ST_N_UNDERFLOW,  /* entries whose delta is 0 or below the smallest normal although the
                           error arriving from above and phi'(h) were both not 0 */
    VG_N_STATS
};

#include "vg_contract.h"    /* the other shared ids, and the names of all of them */

/* ---- flushing subnormals (MLP(flush_subnormals=True)) ----
 * Two parts.  (1) While vgcore works, the FTZ (bit 15: results below the smallest normal
 * become 0) and DAZ (bit 6: subnormal inputs read as 0) bits of MXCSR are set in every thread
 * that runs its arithmetic: the calling thread for the whole compiled call, each OpenMP worker
 * for the kernel it runs (see vg_fp_pause for why a parallel region starts from the caller's
 * own state).  vg_fp_enter returns the thread's MXCSR as it was, vg_fp_leave puts
 * it back exactly (flags included), so code outside vgcore sees no change.  (2) BLAS's own
 * threads cannot be reached that way, so the kernels that write the operands of the matrix
 * products (activations forward, errors backward) also flush explicitly: a value whose
 * magnitude is below `tiny` (FLT_MIN / DBL_MIN, or 0 when flushing is off: then the kernels
 * compute exactly what they did before) is written as 0.  Without MXCSR (not x86) part (1)
 * compiles away and part (2) still holds. */
#if (defined(__x86_64__) || defined(__i386__)) && defined(__SSE__)
#include <xmmintrin.h>
#define VG_HAVE_MXCSR 1
#define VG_MXCSR_FTZ_DAZ 0x8040u
static inline unsigned vg_fp_enter(int flush)
{
    unsigned old = _mm_getcsr();
    if (flush) _mm_setcsr(old | VG_MXCSR_FTZ_DAZ);
    return old;
}
static inline void vg_fp_leave(int flush, unsigned old)
{
    if (flush) _mm_setcsr(old);
}
/* Around an OpenMP parallel region inside a flushing call: the calling thread goes back to
 * `caller` (its MXCSR before vgcore set FTZ/DAZ) while the region runs.  Threads the runtime
 * creates for the region inherit their creator's MXCSR and keep it for good, so they must be
 * created from the caller's state, not from vgcore's: otherwise OpenMP code outside vgcore
 * (and vgcore with flushing off) would later run with FTZ/DAZ.  The kernels in the region set
 * FTZ/DAZ themselves, in every thread.  Returns the state to resume. */
static inline unsigned vg_fp_pause(int flush, unsigned caller)
{
    unsigned cur = 0;
    if (flush) {
        cur = _mm_getcsr();
        _mm_setcsr(caller);
    }
    return cur;
}
static inline void vg_fp_resume(int flush, unsigned cur)
{
    if (flush) _mm_setcsr(cur);
}
static inline unsigned vg_get_mxcsr(void) { return _mm_getcsr(); }
static inline void vg_set_mxcsr(unsigned v) { _mm_setcsr(v); }
#else
#define VG_HAVE_MXCSR 0
#define VG_MXCSR_FTZ_DAZ 0u
static inline unsigned vg_fp_enter(int flush) { (void)flush; return 0; }
static inline void vg_fp_leave(int flush, unsigned old) { (void)flush; (void)old; }
static inline unsigned vg_fp_pause(int flush, unsigned caller) { (void)flush; return caller; }
static inline void vg_fp_resume(int flush, unsigned cur) { (void)flush; (void)cur; }
static inline unsigned vg_get_mxcsr(void) { return 0; }
static inline void vg_set_mxcsr(unsigned v) { (void)v; }
#endif

#define VG_SELU_ALPHA 1.6732632423543772848170429916717
#define VG_SELU_SCALE 1.0507009873554804934193349852946
#define VG_SQRT1_2 0.70710678118654752440084436210485
#define VG_INV_SQRT_2PI 0.39894228040143267793994605993438

/* Index of the first label outside [0, n_classes), or -1 when all are valid. */
static inline long vg_first_bad_label(long n, const int64_t *restrict y, int64_t n_classes)
{
    for (long i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= n_classes) return i;
    return -1;
}

/* Dropout: a counter-based hash (splitmix64's finaliser), so the backward pass recomputes the
 * mask instead of storing it and the NumPy reference draws the same one. */
static inline uint64_t vg_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 31;
    return x;
}

/* The key of layer l's mask at the counter-th training forward pass. */
static inline uint64_t vg_dropout_key(uint64_t seed, uint64_t counter, uint64_t layer)
{
    return vg_mix64(seed ^ vg_mix64(counter * 1000003ull + layer));
}

/* Keep entry idx when u = (mix(key + idx) >> 40) * 2^-24 >= p. */
static inline int vg_dropout_keep(uint64_t key, uint64_t idx, double p)
{
    double u = (double)(vg_mix64(key + idx) >> 40) * (1.0 / 16777216.0);
    return u >= p;
}

#define VG_LANES 64     /* independent partial sums in the norm reductions */

/* vg_scan_values's findings (bits) */
#define VG_SCAN_NONFINITE 1
#define VG_SCAN_SUBNORMAL 2

#define VG_CAT2(a, b) a##_##b
#define VG_CAT(a, b) VG_CAT2(a, b)

#define T float
#define VG_SFX f32
#define VG_TMAX FLT_MAX
#define VG_TMIN FLT_MIN
#define VG_UINT uint32_t                    /* T's bits: exponent and mantissa masks */
#define VG_EXP_BITS 0x7f800000u
#define VG_MANT_BITS 0x007fffffu
#define VG_SQ_WIDE 1        /* sums of squares below FLT_MIN are taken again (vg_sq_small) */
#define VG_FN(name) VG_CAT(name, VG_SFX)
#include "vg_kernels_impl.h"
#undef T
#undef VG_SFX
#undef VG_TMAX
#undef VG_TMIN
#undef VG_UINT
#undef VG_EXP_BITS
#undef VG_MANT_BITS
#undef VG_SQ_WIDE

#define T double
#define VG_SFX f64
#define VG_TMAX DBL_MAX
#define VG_TMIN DBL_MIN
#define VG_UINT uint64_t
#define VG_EXP_BITS 0x7ff0000000000000ull
#define VG_MANT_BITS 0x000fffffffffffffull
#define VG_SQ_WIDE 0
#include "vg_kernels_impl.h"
#undef T
#undef VG_SFX
#undef VG_TMAX
#undef VG_TMIN
#undef VG_UINT
#undef VG_EXP_BITS
#undef VG_MANT_BITS
#undef VG_SQ_WIDE
#undef VG_FN

#endif /* VG_KERNELS_H */
