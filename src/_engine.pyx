# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False, embedsignature=True
"""The compiled core of vgcore.

Everything here trusts its caller: shapes, dtypes, contiguity and finiteness are checked by the
Python layer (``vgcore._validation``) before a pointer reaches this module.  The numerical work
runs without the GIL, in ``noexcept nogil`` functions; matrix products of narrow layers go
through vgcore's own kernel (``vg_gemm.h``), larger ones through an OpenBLAS (NumPy's when its
wheel carries one, else SciPy's ``cython_blas``: ``vg_blas.h``), elementwise work through the C
kernels of
``vg_kernels.h``, spread over OpenMP threads only when a block is large enough to pay for it.
"""

import numpy as np
cimport numpy as cnp
from libc.stdint cimport int64_t, uint64_t
from libc.math cimport isfinite
from libc.string cimport memmove
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_GET_SIZE, PyTuple_GET_ITEM
from cython.parallel cimport parallel, prange
from scipy.linalg.cython_blas cimport sgemm, dgemm

cdef extern from "Python.h":
    Py_ssize_t _refcnt "Py_REFCNT"(PyObject *o)

cnp.import_array()

ctypedef fused floating:
    float
    double

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define VG_OPENMP 1
    #else
    #define VG_OPENMP 0
    static int omp_get_max_threads(void) { return 1; }
    #endif
    """
    int VG_OPENMP
    int omp_get_max_threads() noexcept nogil

cdef extern from *:
    """
    #include <time.h>
    static inline double vg_now(void) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
    }
    """
    double vg_now() noexcept nogil

cdef extern from "vg_kernels.h" nogil:
    int VG_IDENTITY, VG_RELU, VG_LEAKY_RELU, VG_HARD_TANH
    int VG_NORM_BATCH, VG_NORM_LAYER
    int VG_N_STATS
    int VG_ST_W2, VG_ST_DW2, VG_ST_B2, VG_ST_DB2, VG_ST_UW2
    int VG_ST_SUM_H2, VG_ST_SUM_A, VG_ST_SUM_A2, VG_ST_SUM_D2, VG_ST_N_SAT, VG_ST_N_ZERO
    int VG_ST_N_DEAD, VG_ST_N_UNDERFLOW
    void vg_opt_update_f32(int kind, long n, float *p, const float *g, float *s1, float *s2,
                           const double *hp, double *out) noexcept
    void vg_opt_update_f64(int kind, long n, double *p, const double *g, double *s1,
                           double *s2, const double *hp, double *out) noexcept
    uint64_t vg_dropout_key(uint64_t seed, uint64_t counter, uint64_t layer) noexcept
    void vg_bn_stats_f32(long rows, long cols, const float *h, float *mean, float *invstd,
                         double eps, double *run_mean, double *run_var, double m,
                         int training) noexcept
    void vg_bn_stats_f64(long rows, long cols, const double *h, double *mean, double *invstd,
                         double eps, double *run_mean, double *run_var, double m,
                         int training) noexcept
    void vg_ln_stats_f32(long rows, long cols, const float *h, float *mean, float *invstd,
                         double eps) noexcept
    void vg_ln_stats_f64(long rows, long cols, const double *h, double *mean, double *invstd,
                         double eps) noexcept
    void vg_norm_affine_f32(int by_row, long rows, long cols, const float *h, const float *mean,
                            const float *invstd, const float *gamma, const float *beta,
                            float *z) noexcept
    void vg_norm_affine_f64(int by_row, long rows, long cols, const double *h,
                            const double *mean, const double *invstd, const double *gamma,
                            const double *beta, double *z) noexcept
    void vg_bn_backward_f32(long rows, long cols, const float *h, const float *mean,
                            const float *invstd, const float *gamma, float *d,
                            const float *dbeta, float *dgamma, int training,
                            float tiny) noexcept
    void vg_bn_backward_f64(long rows, long cols, const double *h, const double *mean,
                            const double *invstd, const double *gamma, double *d,
                            const double *dbeta, double *dgamma, int training,
                            double tiny) noexcept
    void vg_ln_backward_f32(long rows, long cols, const float *h, const float *mean,
                            const float *invstd, const float *gamma, float *d,
                            float *dgamma, float tiny) noexcept
    void vg_ln_backward_f64(long rows, long cols, const double *h, const double *mean,
                            const double *invstd, const double *gamma, double *d,
                            double *dgamma, double tiny) noexcept
    void vg_res_drop_forward_f32(long rows, long cols, const float *x, float alpha,
                                 const float *a, float *out, double p, uint64_t key,
                                 float tiny) noexcept
    void vg_res_drop_forward_f64(long rows, long cols, const double *x, double alpha,
                                 const double *a, double *out, double p, uint64_t key,
                                 double tiny) noexcept
    void vg_res_drop_backward_f32(long rows, long cols, float *g, float *skip, int residual,
                                  float alpha, double p, uint64_t key, float tiny) noexcept
    void vg_res_drop_backward_f64(long rows, long cols, double *g, double *skip, int residual,
                                  double alpha, double p, uint64_t key,
                                  double tiny) noexcept
    double vg_norm2_f32(long n, const float *x) noexcept
    double vg_norm2_f64(long n, const double *x) noexcept
    void vg_sgd_norms_f32(long n, float lr, float *p, const float *g, double *out) noexcept
    void vg_sgd_norms_f64(long n, double lr, double *p, const double *g, double *out) noexcept
    void vg_act_forward_stats_f32(int kind, float param, long rows, long cols, float *h,
                                  const float *b, float *a, double *st, float *c1, float *c2,
                                  float *c3, float tiny) noexcept
    void vg_act_forward_stats_f64(int kind, double param, long rows, long cols, double *h,
                                  const double *b, double *a, double *st, double *c1,
                                  double *c2, double *c3, double tiny) noexcept
    void vg_add_bias_stats_f32(long rows, long cols, float *h, const float *b, double *st,
                               float *c1, float *c2, float tiny) noexcept
    void vg_add_bias_stats_f64(long rows, long cols, double *h, const double *b, double *st,
                               double *c1, double *c2, double tiny) noexcept
    void vg_act_backward_stats_f32(int kind, float param, float sat_thr, long rows, long cols,
                                   const float *h, const float *a, float *delta, float *db,
                                   double *st, float *zc, float *c1, float *c2, float *c3,
                                   int known_zero, float tiny) noexcept
    void vg_act_backward_stats_f64(int kind, double param, double sat_thr, long rows,
                                   long cols, const double *h, const double *a, double *delta,
                                   double *db, double *st, double *zc, double *c1,
                                   double *c2, double *c3, int known_zero,
                                   double tiny) noexcept
    void vg_colsum_stats_f32(long rows, long cols, const float *g, float *db, double *st,
                             float *acc) noexcept
    void vg_colsum_stats_f64(long rows, long cols, const double *g, double *db, double *st,
                             double *acc) noexcept
    void vg_norms2_f32(long n, const float *p, const float *g, double *p2, double *g2) noexcept
    void vg_norms2_f64(long n, const double *p, const double *g, double *p2,
                       double *g2) noexcept
    void vg_row_norms2_f32(long rows, long cols, const float *x, double *out,
                           int known_zero) noexcept
    void vg_row_norms2_f64(long rows, long cols, const double *x, double *out,
                           int known_zero) noexcept
    void vg_act_forward_f32(int kind, float param, long r0, long r1, long c0, long c1, long ld,
                            float *h, const float *b, float *a, float tiny) noexcept
    void vg_act_forward_f64(int kind, double param, long r0, long r1, long c0, long c1, long ld,
                            double *h, const double *b, double *a, double tiny) noexcept
    void vg_act_backward_f32(int kind, float param, long r0, long r1, long c0, long c1, long ld,
                             const float *h, const float *a, float *delta, float *db,
                             float tiny) noexcept
    void vg_act_backward_f64(int kind, double param, long r0, long r1, long c0, long c1, long ld,
                             const double *h, const double *a, double *delta, double *db,
                             double tiny) noexcept
    void vg_colsum_f32(long r0, long r1, long c0, long c1, long ld, const float *x,
                       float *out) noexcept
    void vg_colsum_f64(long r0, long r1, long c0, long c1, long ld, const double *x,
                       double *out) noexcept
    void vg_add_bias_f32(long r0, long r1, long c0, long c1, long ld, float *h,
                         const float *b, float tiny) noexcept
    void vg_add_bias_f64(long r0, long r1, long c0, long c1, long ld, double *h,
                         const double *b, double tiny) noexcept
    double vg_softmax_xent_f32(long n, long c, const float *z, const int64_t *y,
                               float *g, long n_all) noexcept
    double vg_softmax_xent_f64(long n, long c, const double *z, const int64_t *y,
                               double *g, long n_all) noexcept
    double vg_mse_f32(long n, long m, const float *p, const float *t, float *g,
                      long n_all) noexcept
    double vg_mse_f64(long n, long m, const double *p, const double *t, double *g,
                      long n_all) noexcept
    double vg_bce_logits_f32(long n, long m, const float *z, const float *t, float *g,
                             long n_all) noexcept
    double vg_bce_logits_f64(long n, long m, const double *z, const double *t,
                             double *g, long n_all) noexcept
    long vg_first_bad_label(long n, const int64_t *y, int64_t n_classes) noexcept
    int vg_all_finite_f32(long n, const float *x) noexcept
    int vg_all_finite_f64(long n, const double *x) noexcept
    int vg_scan_values_f32(long n, const float *x) noexcept
    int vg_scan_values_f64(long n, const double *x) noexcept
    void vg_flush_subnormals_f32(long n, const float *src, float *dst) noexcept
    void vg_flush_subnormals_f64(long n, const double *src, double *dst) noexcept
    int VG_SCAN_NONFINITE, VG_SCAN_SUBNORMAL
    void vg_sgd_f32(long k0, long k1, float lr, float *p, const float *g, int flush) noexcept
    void vg_sgd_f64(long k0, long k1, double lr, double *p, const double *g,
                    int flush) noexcept
    int VG_HAVE_MXCSR
    unsigned VG_MXCSR_FTZ_DAZ
    unsigned vg_fp_enter(int flush) noexcept
    void vg_fp_leave(int flush, unsigned old) noexcept
    unsigned vg_fp_pause(int flush, unsigned caller) noexcept
    void vg_fp_resume(int flush, unsigned cur) noexcept
    unsigned vg_get_mxcsr() noexcept
    void vg_set_mxcsr(unsigned v) noexcept
    float FLT_MIN
    double DBL_MIN


# Elementwise work is split over threads only above these sizes (elements per call): below
# them a parallel region's fork/join costs more than it saves on 2 shared cores.
cdef long PAR_MIN_CHEAP = 1 << 22      # identity, relu, leaky_relu, hard_tanh, bias, sgd
cdef long PAR_MIN_TRANSC = 1 << 19     # activations that call exp/erf/log1p
cdef long COL_ALIGN = 16               # column blocks start on a 64-byte boundary for float32

cdef int _n_threads = max(1, omp_get_max_threads())


def openmp_enabled():
    """True when the compiled core was built with OpenMP (elementwise work can use threads)."""
    return bool(VG_OPENMP)


def _omp_max_threads():
    """The OpenMP runtime's default thread count (honours OMP_NUM_THREADS)."""
    return int(omp_get_max_threads())


def _set_engine_threads(int n):
    global _n_threads
    _n_threads = max(1, n)


def _get_engine_threads():
    return _n_threads


# ------------------------------------------------------------------------------------------
# GEMM, row-major, through column-major BLAS
# ------------------------------------------------------------------------------------------

include "_engine_blas.pxi"          # the BLAS: which library, its threads, gemm()


cdef extern from "vg_gemm.h" nogil:
    int VG_GEMM_NONE
    int VG_GEMM_AVX2
    int VG_GEMM_AVX512
    int vg_gemm_isa
    int vg_gemm_best_isa() noexcept
    double VG_GEMM_MAX_MNK
    void vg_gemm_f32(long M, long N, long K, const float *A, long rs, long cs, const float *B,
                     long ldb, float *C, long ldc, int accum) noexcept
    void vg_gemm_f64(long M, long N, long K, const double *A, long rs, long cs,
                     const double *B, long ldb, double *C, long ldc, int accum) noexcept
    void vg_transpose_F32(long rows, long cols, const float *src, float *dst) noexcept
    void vg_transpose_F64(long rows, long cols, const double *src, double *dst) noexcept

vg_gemm_isa = vg_gemm_best_isa()
cdef int _gemm_best = vg_gemm_isa


cdef inline bint own_gemm(long m, long n, long k, bint f32) noexcept nogil:
    """Whether vgcore's own kernel computes an (m x k) (k x n) product: those of narrow
    layers, at most VG_GEMM_MAX_MNK multiply-adds (float64 counts twice) with at least 16
    output columns (8 in float64); larger ones go to BLAS, whose blocking and threads win."""
    if vg_gemm_isa == VG_GEMM_NONE:
        return False
    if f32:
        return n >= 16 and <double>m * n * k <= VG_GEMM_MAX_MNK
    return n >= 8 and 2.0 * m * n * k <= VG_GEMM_MAX_MNK


cdef inline void own_gemm_run(long m, long n, long k, floating *a, long rs, long cs,
                              floating *b, long ldb, floating *c, long ldc,
                              bint accum=False) noexcept nogil:
    if floating is float:
        vg_gemm_f32(m, n, k, a, rs, cs, b, ldb, c, ldc, accum)
    else:
        vg_gemm_f64(m, n, k, a, rs, cs, b, ldb, c, ldc, accum)


def gemm_kernel_info():
    """vgcore's own product for narrow layers (vg_gemm.h): ``isa`` in use and ``best`` the CPU
    supports ("avx512", "avx2" or "none": BLAS computes every product), ``max_mnk``."""
    names = {VG_GEMM_NONE: "none", VG_GEMM_AVX2: "avx2", VG_GEMM_AVX512: "avx512"}
    return {"isa": names[vg_gemm_isa], "best": names[_gemm_best],
            "max_mnk": int(VG_GEMM_MAX_MNK)}


def set_gemm_isa(str name):
    """Use vgcore's own product with this instruction set ("avx512", "avx2"), or not at all
    ("none"); "best" for what the CPU supports.  Refuses what the CPU lacks."""
    global vg_gemm_isa
    codes = {"none": VG_GEMM_NONE, "avx2": VG_GEMM_AVX2, "avx512": VG_GEMM_AVX512,
             "best": _gemm_best}
    if name not in codes:
        raise ValueError(f"isa: expected one of {sorted(codes)}, got {name!r}")
    if codes[name] > _gemm_best:
        raise ValueError(f"isa: this CPU does not support {name!r} (best: "
                         f"{gemm_kernel_info()['best']!r})")
    vg_gemm_isa = codes[name]


cdef extern from "vg_kernels.h" nogil:
    int vg_act_fma
    int vg_act_fma_best() noexcept

vg_act_fma = vg_act_fma_best()
cdef int _act_fma_best = vg_act_fma


def act_kernel_info():
    """How the forward kernels compute float32 tanh and sigmoid (vg_kernels.h): ``kind``
    now and ``best`` this CPU supports, "fma" (fused multiply-adds) or "plain"."""
    return {"kind": "fma" if vg_act_fma else "plain",
            "best": "fma" if _act_fma_best else "plain"}


def set_act_fma(str name):
    """Compute float32 tanh and sigmoid with fused multiply-adds ("fma"), without ("plain"),
    or as the CPU allows ("best").  "fma" where ``best`` is "plain" gives the same values
    through the C library's exact fmaf, much slower: to compare, and for the sanitizer build
    (compiled without the per-CPU versions)."""
    global vg_act_fma
    if name not in ("best", "fma", "plain"):
        raise ValueError(f"activations: expected one of 'best', 'fma', 'plain', got {name!r}")
    vg_act_fma = _act_fma_best if name == "best" else (name == "fma")


# `own`: every product through vgcore's kernel (a batch chunk's pass, which must not call BLAS
# from a worker thread); otherwise the kernel takes those own_gemm accepts.
cdef inline void linear_forward(floating *x, floating *w, floating *h, int batch, int fin,
                                int fout, bint own) noexcept nogil:
    # h (batch x fout) = x (batch x fin) @ w (fin x fout); col-major: h^T = w^T x^T
    if own or own_gemm(batch, fout, fin, floating is float):
        own_gemm_run(batch, fout, fin, x, fin, 1, w, fout, h, fout)
        return
    gemm(c'N', c'N', fout, batch, fin, w, fout, x, fin, <floating>0, h, fout)


cdef inline void linear_grad_w(floating *x, floating *delta, floating *dw, int batch, int fin,
                               int fout, bint own, bint accum=False) noexcept nogil:
    # dw (fin x fout) = x^T (fin x batch) @ delta (batch x fout); col-major: dw^T = delta^T x.
    # accum (own only): dw += that product, added once per element after the sum
    if own or own_gemm(fin, fout, batch, floating is float):
        own_gemm_run(fin, fout, batch, x, 1, fin, delta, fout, dw, fout, accum)
        return
    gemm(c'N', c'T', fout, fin, batch, delta, fout, x, fin, <floating>0, dw, fout)


cdef inline void linear_grad_x(floating *delta, floating *w, floating *dx, int batch, int fin,
                               int fout, floating *wt, bint own,
                               bint transpose=True) noexcept nogil:
    # dx (batch x fin) = delta (batch x fout) @ w^T; col-major: dx^T = w delta^T.
    # vgcore's kernel wants w^T row-major: wt (fout x fin, room for the widest layer) takes a
    # transposed copy (a 64 x 64 copy costs 0.4 us; BLAS's transposed path 1.6 us more);
    # transpose=False: wt already holds it (the second batch chunk on one thread).
    if wt != NULL and (own or own_gemm(batch, fin, fout, floating is float)):
        if transpose:
            if floating is float:
                vg_transpose_F32(fin, fout, w, wt)
            else:
                vg_transpose_F64(fin, fout, w, wt)
        own_gemm_run(batch, fin, fout, delta, fout, 1, wt, fin, dx, fin)
        return
    gemm(c'T', c'N', fin, batch, fout, w, fout, delta, fout, <floating>0, dx, fin)


# ------------------------------------------------------------------------------------------
# Elementwise passes, split over threads by column blocks when large enough
# ------------------------------------------------------------------------------------------

cdef inline bint is_cheap(int kind) noexcept nogil:
    return kind == VG_IDENTITY or kind == VG_RELU or kind == VG_LEAKY_RELU or kind == VG_HARD_TANH


cdef inline long col_start(long cols, long t, long nblk) noexcept nogil:
    if t >= nblk:
        return cols
    return ((cols * t) // nblk) & ~(COL_ALIGN - 1)


cdef inline int n_blocks(long rows, long cols, long threshold, int nthreads) noexcept nogil:
    if nthreads <= 1 or rows * cols < threshold or cols < COL_ALIGN * nthreads:
        return 1
    return nthreads


cdef void act_forward(int kind, double param, long rows, long cols, floating *h,
                      floating *b, floating *a, int nthreads, double tiny) noexcept nogil:
    """h += b, then a = phi(h); for identity only the bias is added (a aliases h).  tiny > 0:
    flush subnormals (the kernel sets FTZ/DAZ in the thread that runs it)."""
    cdef int nblk = n_blocks(rows, cols,
                             PAR_MIN_CHEAP if is_cheap(kind) else PAR_MIN_TRANSC, nthreads)
    cdef long t, c0, c1
    if nblk == 1:
        act_forward_block(kind, param, rows, cols, 0, cols, h, b, a, tiny)
        return
    for t in prange(nblk, nogil=True, num_threads=nblk, schedule='static'):
        act_forward_block(kind, param, rows, cols, col_start(cols, t, nblk),
                          col_start(cols, t + 1, nblk), h, b, a, tiny)


cdef inline void act_forward_block(int kind, double param, long rows, long cols, long c0,
                                   long c1, floating *h, floating *b,
                                   floating *a, double tiny) noexcept nogil:
    if kind == VG_IDENTITY:
        if floating is float:
            vg_add_bias_f32(0, rows, c0, c1, cols, h, b, <float>tiny)
        else:
            vg_add_bias_f64(0, rows, c0, c1, cols, h, b, tiny)
    elif floating is float:
        vg_act_forward_f32(kind, <float>param, 0, rows, c0, c1, cols, h, b, a, <float>tiny)
    else:
        vg_act_forward_f64(kind, param, 0, rows, c0, c1, cols, h, b, a, tiny)


cdef void act_backward(int kind, double param, long rows, long cols, floating *h,
                       floating *a, floating *delta, floating *db,
                       int nthreads, double tiny) noexcept nogil:
    """delta *= phi'(h) in place, db = column sums of delta (tiny: as act_forward)."""
    cdef int nblk = n_blocks(rows, cols,
                             PAR_MIN_CHEAP if is_cheap(kind) else PAR_MIN_TRANSC, nthreads)
    cdef long t
    if nblk == 1:
        act_backward_block(kind, param, rows, cols, 0, cols, h, a, delta, db, tiny)
        return
    for t in prange(nblk, nogil=True, num_threads=nblk, schedule='static'):
        act_backward_block(kind, param, rows, cols, col_start(cols, t, nblk),
                           col_start(cols, t + 1, nblk), h, a, delta, db, tiny)


cdef inline void act_backward_block(int kind, double param, long rows, long cols, long c0,
                                    long c1, floating *h, floating *a, floating *delta,
                                    floating *db, double tiny) noexcept nogil:
    if floating is float:
        vg_act_backward_f32(kind, <float>param, 0, rows, c0, c1, cols, h, a, delta, db,
                            <float>tiny)
    else:
        vg_act_backward_f64(kind, param, 0, rows, c0, c1, cols, h, a, delta, db, tiny)


cdef void colsum(long rows, long cols, floating *x, floating *out,
                 int nthreads) noexcept nogil:
    cdef int nblk = n_blocks(rows, cols, PAR_MIN_CHEAP, nthreads)
    cdef long t
    if nblk == 1:
        colsum_block(rows, cols, 0, cols, x, out)
        return
    for t in prange(nblk, nogil=True, num_threads=nblk, schedule='static'):
        colsum_block(rows, cols, col_start(cols, t, nblk), col_start(cols, t + 1, nblk), x, out)


cdef inline void colsum_block(long rows, long cols, long c0, long c1, floating *x,
                              floating *out) noexcept nogil:
    if floating is float:
        vg_colsum_f32(0, rows, c0, c1, cols, x, out)
    else:
        vg_colsum_f64(0, rows, c0, c1, cols, x, out)


# ------------------------------------------------------------------------------------------
# The rest of the module, one section a file (`include` pastes each in: one compiled module)
# ------------------------------------------------------------------------------------------

include "_engine_net.pxi"           # NetDesc; the plain passes, measured norms and updates
include "_engine_chunks.pxi"        # narrow networks' passes in batch chunks, one per thread
include "_engine_chunks_one.pxi"    # the same chunks on one thread, layer by layer
include "_engine_general.pxi"       # batch and layer norm, residual blocks, dropout
include "_engine_class.pxi"         # Engine: one network's description and its calls
include "_engine_functions.pxi"     # losses, checks, SGD, MXCSR, the contract's name tables
include "_engine_derive.pxi"        # the gradient-flow fields from the measurement rows
