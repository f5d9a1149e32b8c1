# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False, embedsignature=True
"""The compiled core of vgcore.

Everything here trusts its caller: shapes, dtypes, contiguity and finiteness are checked by the
Python layer (``vgcore._validation``) before a pointer reaches this module.  The numerical work
runs without the GIL, in ``noexcept nogil`` functions; matrix products go through the BLAS that
SciPy ships (``scipy.linalg.cython_blas``), elementwise work through the C kernels of
``vg_kernels.h``, spread over OpenMP threads only when a block is large enough to pay for it.
"""

import numpy as np
cimport numpy as cnp
from libc.stdint cimport int64_t, uint64_t
from cython.parallel cimport prange
from scipy.linalg.cython_blas cimport sgemm, dgemm

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
                                   float tiny) noexcept
    void vg_act_backward_stats_f64(int kind, double param, double sat_thr, long rows,
                                   long cols, const double *h, const double *a, double *delta,
                                   double *db, double *st, double *zc, double *c1,
                                   double *c2, double *c3, double tiny) noexcept
    void vg_colsum_stats_f32(long rows, long cols, const float *g, float *db, double *st,
                             float *acc) noexcept
    void vg_colsum_stats_f64(long rows, long cols, const double *g, double *db, double *st,
                             double *acc) noexcept
    void vg_norms2_f32(long n, const float *p, const float *g, double *p2, double *g2) noexcept
    void vg_norms2_f64(long n, const double *p, const double *g, double *p2,
                       double *g2) noexcept
    void vg_row_norms2_f32(long rows, long cols, const float *x, double *out) noexcept
    void vg_row_norms2_f64(long rows, long cols, const double *x, double *out) noexcept
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
                               float *g) noexcept
    double vg_softmax_xent_f64(long n, long c, const double *z, const int64_t *y,
                               double *g) noexcept
    double vg_mse_f32(long n, long m, const float *p, const float *t, float *g) noexcept
    double vg_mse_f64(long n, long m, const double *p, const double *t, double *g) noexcept
    double vg_bce_logits_f32(long n, long m, const float *z, const float *t, float *g) noexcept
    double vg_bce_logits_f64(long n, long m, const double *z, const double *t,
                             double *g) noexcept
    long vg_first_bad_label(long n, const int64_t *y, int64_t n_classes) noexcept
    int vg_all_finite_f32(long n, const float *x) noexcept
    int vg_all_finite_f64(long n, const double *x) noexcept
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

cdef inline void gemm(char ta, char tb, int m, int n, int k, floating *a, int lda,
                      floating *b, int ldb, floating beta, floating *c, int ldc) noexcept nogil:
    """Column-major C(m x n) = op(A) op(B) + beta C, as BLAS sees it."""
    cdef floating one = 1
    if floating is float:
        sgemm(&ta, &tb, &m, &n, &k, &one, a, &lda, b, &ldb, &beta, c, &ldc)
    else:
        dgemm(&ta, &tb, &m, &n, &k, &one, a, &lda, b, &ldb, &beta, c, &ldc)


cdef inline void linear_forward(floating *x, floating *w, floating *h, int batch, int fin,
                                int fout) noexcept nogil:
    # h (batch x fout) = x (batch x fin) @ w (fin x fout); col-major: h^T = w^T x^T
    gemm(c'N', c'N', fout, batch, fin, w, fout, x, fin, <floating>0, h, fout)


cdef inline void linear_grad_w(floating *x, floating *delta, floating *dw, int batch, int fin,
                               int fout) noexcept nogil:
    # dw (fin x fout) = x^T (fin x batch) @ delta (batch x fout); col-major: dw^T = delta^T x
    gemm(c'N', c'T', fout, fin, batch, delta, fout, x, fin, <floating>0, dw, fout)


cdef inline void linear_grad_x(floating *delta, floating *w, floating *dx, int batch, int fin,
                               int fout) noexcept nogil:
    # dx (batch x fin) = delta (batch x fout) @ w^T; col-major: dx^T = w delta^T
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
# The whole network
# ------------------------------------------------------------------------------------------

cdef struct NetDesc:
    # architecture
    int n_layers
    const int64_t *sizes        # n_layers + 1 widths
    const int *kinds            # activation id per layer (the output layer is identity)
    const double *act_params    # slope / alpha per layer
    const int64_t *w_off        # offset of W_l in the flat parameter buffer
    const int64_t *b_off        # offset of b_l in the flat parameter buffer
    const int64_t *cum_width    # sizes[1] + ... + sizes[l]: layer l's block starts at batch * this
    void *params
    void *grads
    # workspace for one batch size
    long batch
    void *H                     # pre-activations, all layers, flat
    void *A                     # activations (identity layers use H instead)
    void *D                     # backpropagated errors dL/dh of the hidden layers
    void *dX                    # dL/dX
    # measurements (when measure is set): see vgcore/flow.py for what each field means
    bint measure
    double *stats               # n_layers x VG_N_STATS
    const double *sat_thr       # per layer: |phi'| below this counts as saturated
    void *unit_zero             # per unit (all layers, flat): rows with phi' == 0
    void *acc                   # scratch: 3 x the widest layer, for column sums
    double *in_norm2            # per layer and sample (n_layers x batch): ||x_{l,i}||^2 and
    double *delta_norm2         # ||delta_{l,i}||^2, taken in the measured backward pass
    double *ps_mean_sq          # per layer: mean_i (B ||x_{l,i}|| ||delta_{l,i}||)^2
    # flushing subnormals (vg_kernels.h): FTZ/DAZ during the calls, and the kernels that write
    # matrix products' operands write values below tiny (the dtype's smallest normal) as 0
    bint flush
    double tiny                 # FLT_MIN / DBL_MIN when flush is set, else 0
    unsigned fp_caller          # the calling thread's MXCSR before this call set FTZ/DAZ
    # normalisation, residual blocks and dropout (hidden layers; see vgcore/network.py)
    bint extras                 # any of them: the passes take the general path
    const int *norm             # 0 none, 1 batch norm, 2 layer norm
    const double *res_scale     # residual scale alpha (0: no residual)
    const double *drop_p        # dropout probability (0: none)
    const int64_t *g_off        # gamma and beta offsets in the parameter buffer (-1: none)
    const int64_t *be_off
    double *run_mean            # batch-norm running averages, per unit (flat, like unit_zero)
    double *run_var
    double norm_eps
    double norm_momentum
    bint training
    uint64_t drop_seed
    uint64_t drop_counter       # training forward passes so far (the dropout masks' counter)
    void *Z                     # normalised pre-activations (like H)
    void *OUT                   # block outputs after the residual sum and dropout (like H)
    void *NS                    # per layer: mean | invstd, 2 * ns_stride entries
    long ns_stride
    void *zeros                 # the widest layer's worth of zeros (a null bias)
    # profiling: when set, seconds per layer are added to timing[4 l + k], k = forward GEMM,
    # forward elementwise (bias, normalisation, activation, measurements, residual, dropout),
    # backward elementwise, backward GEMMs
    double *timing


cdef inline long ws_offset(const NetDesc *n, int l) noexcept nogil:
    """Offset of layer l's block (batch x sizes[l+1]) in the H, A and D workspaces."""
    return n.cum_width[l] * n.batch


cdef inline floating *layer_out(const NetDesc *n, int l, floating *H, floating *A) noexcept nogil:
    """Layer l's output: its block output (residual sum, dropout), else its activation; an
    identity layer's activation is its pre-activation (normalised or not)."""
    cdef long off = ws_offset(n, l)
    if n.extras:
        if n.res_scale[l] != 0 or (n.training and n.drop_p[l] > 0):
            return <floating *>n.OUT + off
        if n.kinds[l] == VG_IDENTITY:
            return (<floating *>n.Z if n.norm[l] else H) + off
        return A + off
    if n.kinds[l] == VG_IDENTITY:
        return H + off
    return A + off


cdef void net_forward(const NetDesc *n, floating *X, int nthreads) noexcept nogil:
    if n.extras:
        net_forward_general(n, X, nthreads)
        return
    cdef floating *P = <floating *>n.params
    cdef floating *H = <floating *>n.H
    cdef floating *A = <floating *>n.A
    cdef floating *x = X
    cdef floating *h
    cdef long off = 0
    cdef int l, fin, fout
    cdef int batch = <int>n.batch
    cdef double t0 = 0, t1 = 0
    cdef unsigned fp
    for l in range(n.n_layers):
        fin = <int>n.sizes[l]
        fout = <int>n.sizes[l + 1]
        h = H + off
        if n.timing != NULL:
            t0 = vg_now()
        linear_forward(x, P + n.w_off[l], h, batch, fin, fout)
        if n.timing != NULL:
            t1 = vg_now()
        if n.measure:
            act_forward_stats(n.kinds[l], n.act_params[l], batch, fout, h, P + n.b_off[l],
                              A + off, n.stats + l * VG_N_STATS, <floating *>n.acc, n.tiny)
        else:
            fp = vg_fp_pause(n.flush, n.fp_caller)      # may run threads: see vg_fp_pause
            act_forward(n.kinds[l], n.act_params[l], batch, fout, h, P + n.b_off[l], A + off,
                        nthreads, n.tiny)
            vg_fp_resume(n.flush, fp)
        if n.timing != NULL:
            n.timing[4 * l] += t1 - t0
            n.timing[4 * l + 1] += vg_now() - t1
        x = h if n.kinds[l] == VG_IDENTITY else A + off
        off += batch * fout


cdef inline void row_norms2(long rows, long cols, floating *x, double *out) noexcept nogil:
    if floating is float:
        vg_row_norms2_f32(rows, cols, x, out)
    else:
        vg_row_norms2_f64(rows, cols, x, out)


cdef inline void act_forward_stats(int kind, double param, long rows, long cols, floating *h,
                                   floating *b, floating *a, double *st,
                                   floating *acc, double tiny) noexcept nogil:
    if kind == VG_IDENTITY:
        if floating is float:
            vg_add_bias_stats_f32(rows, cols, h, b, st, acc, acc + cols, <float>tiny)
        else:
            vg_add_bias_stats_f64(rows, cols, h, b, st, acc, acc + cols, tiny)
    elif floating is float:
        vg_act_forward_stats_f32(kind, <float>param, rows, cols, h, b, a, st, acc, acc + cols,
                                 acc + 2 * cols, <float>tiny)
    else:
        vg_act_forward_stats_f64(kind, param, rows, cols, h, b, a, st, acc, acc + cols,
                                 acc + 2 * cols, tiny)


cdef inline floating *layer_delta(const NetDesc *n, int l, floating *dout) noexcept nogil:
    """dL/dh of layer l: the incoming gradient for the (linear) output layer, else D_l."""
    if l == n.n_layers - 1:
        return dout
    return <floating *>n.D + ws_offset(n, l)


cdef inline void delta_and_bias_grad(const NetDesc *n, int l, floating *dout,
                                     int nthreads) noexcept nogil:
    """Turn D_l (= dL/da_l) into delta_l = dL/dh_l in place and write db_l."""
    cdef floating *G = <floating *>n.grads
    cdef long off = ws_offset(n, l)
    cdef int batch = <int>n.batch
    cdef int fout = <int>n.sizes[l + 1]
    cdef double *st = n.stats + l * VG_N_STATS
    cdef floating *acc = <floating *>n.acc
    cdef floating *zc = <floating *>n.unit_zero + n.cum_width[l]
    cdef unsigned fp
    if not n.measure:
        fp = vg_fp_pause(n.flush, n.fp_caller)          # may run threads: see vg_fp_pause
        if l == n.n_layers - 1:
            colsum(batch, fout, dout, G + n.b_off[l], nthreads)
        else:
            act_backward(n.kinds[l], n.act_params[l], batch, fout, <floating *>n.H + off,
                         <floating *>n.A + off, <floating *>n.D + off, G + n.b_off[l],
                         nthreads, n.tiny)
        vg_fp_resume(n.flush, fp)
    elif l == n.n_layers - 1:
        if floating is float:
            vg_colsum_stats_f32(batch, fout, dout, G + n.b_off[l], st, acc)
        else:
            vg_colsum_stats_f64(batch, fout, dout, G + n.b_off[l], st, acc)
    elif floating is float:
        vg_act_backward_stats_f32(n.kinds[l], <float>n.act_params[l], <float>n.sat_thr[l],
                                  batch, fout, <float *>n.H + off, <float *>n.A + off,
                                  <float *>n.D + off, G + n.b_off[l], st, zc, acc,
                                  acc + fout, acc + 2 * fout, <float>n.tiny)
    else:
        vg_act_backward_stats_f64(n.kinds[l], n.act_params[l], n.sat_thr[l], batch, fout,
                                  <double *>n.H + off, <double *>n.A + off,
                                  <double *>n.D + off, G + n.b_off[l], st, zc, acc,
                                  acc + fout, acc + 2 * fout, n.tiny)


cdef inline void weight_grad(const NetDesc *n, int l, floating *X, floating *dout) noexcept nogil:
    """dW_l = x_l^T delta_l, x_l the layer's input."""
    cdef floating *x = X if l == 0 else layer_out(n, l - 1, <floating *>n.H, <floating *>n.A)
    linear_grad_w(x, layer_delta(n, l, dout), <floating *>n.grads + n.w_off[l], <int>n.batch,
                  <int>n.sizes[l], <int>n.sizes[l + 1])


cdef inline void input_grad(const NetDesc *n, int l, floating *dout, bint want_dx) noexcept nogil:
    """dL/d(input of layer l) = delta_l W_l^T, into D_{l-1} (or dX for the first layer)."""
    cdef floating *dst
    if l > 0:
        dst = <floating *>n.D + ws_offset(n, l - 1)
    elif want_dx:
        dst = <floating *>n.dX
    else:
        return
    linear_grad_x(layer_delta(n, l, dout), <floating *>n.params + n.w_off[l], dst,
                  <int>n.batch, <int>n.sizes[l], <int>n.sizes[l + 1])


cdef void net_backward(const NetDesc *n, floating *X, floating *dout, bint want_dx,
                       int nthreads) noexcept nogil:
    cdef int l
    if n.extras:
        net_backward_general(n, X, dout, want_dx, nthreads)
        return
    cdef double t0 = 0, t1 = 0
    for l in range(n.n_layers - 1, -1, -1):
        if n.timing != NULL:
            t0 = vg_now()
        delta_and_bias_grad(n, l, dout, nthreads)
        if n.measure:
            sample_norms(n, l, X if l == 0 else layer_out(n, l - 1, <floating *>n.H,
                                                          <floating *>n.A),
                         layer_delta(n, l, dout))
        if n.timing != NULL:
            t1 = vg_now()
        weight_grad(n, l, X, dout)
        input_grad(n, l, dout, want_dx)
        if n.timing != NULL:
            n.timing[4 * l + 2] += t1 - t0
            n.timing[4 * l + 3] += vg_now() - t1


cdef inline void param_norms(const NetDesc *n, int l, floating *P, floating *G) noexcept nogil:
    """||W_l||^2, ||dW_l||^2, ||b_l||^2, ||db_l||^2 into the layer's measurement row."""
    cdef double *st = n.stats + l * VG_N_STATS
    cdef long nw = n.sizes[l] * n.sizes[l + 1]
    cdef long nb = n.sizes[l + 1]
    if floating is float:
        vg_norms2_f32(nw, P + n.w_off[l], G + n.w_off[l], st + VG_ST_W2, st + VG_ST_DW2)
        vg_norms2_f32(nb, P + n.b_off[l], G + n.b_off[l], st + VG_ST_B2, st + VG_ST_DB2)
    else:
        vg_norms2_f64(nw, P + n.w_off[l], G + n.w_off[l], st + VG_ST_W2, st + VG_ST_DW2)
        vg_norms2_f64(nb, P + n.b_off[l], G + n.b_off[l], st + VG_ST_B2, st + VG_ST_DB2)


cdef void net_param_norms(const NetDesc *n, floating *P, floating *G) noexcept nogil:
    cdef int l
    for l in range(n.n_layers):
        param_norms(n, l, P, G)


cdef void net_sgd_measured(const NetDesc *n, floating *P, floating *G, floating lr) noexcept nogil:
    """The SGD step, layer by layer, measuring the norms of W, dW, b, db and of the update in
    the same pass (W and b before the step)."""
    cdef int l
    cdef double out[3]
    cdef double *st
    cdef long nw, nb
    for l in range(n.n_layers):
        st = n.stats + l * VG_N_STATS
        nw = n.sizes[l] * n.sizes[l + 1]
        nb = n.sizes[l + 1]
        if floating is float:
            vg_sgd_norms_f32(nw, lr, P + n.w_off[l], G + n.w_off[l], out)
        else:
            vg_sgd_norms_f64(nw, lr, P + n.w_off[l], G + n.w_off[l], out)
        st[VG_ST_W2] = out[0]
        st[VG_ST_DW2] = out[1]
        st[VG_ST_UW2] = out[2]
        if floating is float:
            vg_sgd_norms_f32(nb, lr, P + n.b_off[l], G + n.b_off[l], out)
        else:
            vg_sgd_norms_f64(nb, lr, P + n.b_off[l], G + n.b_off[l], out)
        st[VG_ST_B2] = out[0]
        st[VG_ST_DB2] = out[1]
        if n.extras and n.g_off[l] >= 0:         # gamma and beta, contiguous
            if floating is float:
                vg_sgd_norms_f32(2 * nb, lr, P + n.g_off[l], G + n.g_off[l], out)
            else:
                vg_sgd_norms_f64(2 * nb, lr, P + n.g_off[l], G + n.g_off[l], out)


cdef void net_opt_update(const NetDesc *n, int kind, floating *P, floating *G, floating *S1,
                         floating *S2, const double *hp, double *stats) noexcept nogil:
    """One optimiser step over every layer's W and b; per-layer norms into stats (n_layers x
    VG_N_STATS): W before, dW, the update of W, b before, db."""
    cdef int l
    cdef double out[3]
    cdef double *st
    cdef long off, nw, nb
    for l in range(n.n_layers):
        st = stats + l * VG_N_STATS
        nw = n.sizes[l] * n.sizes[l + 1]
        nb = n.sizes[l + 1]
        off = n.w_off[l]
        if floating is float:
            vg_opt_update_f32(kind, nw, P + off, G + off, S1 + off, S2 + off, hp, out)
        else:
            vg_opt_update_f64(kind, nw, P + off, G + off, S1 + off, S2 + off, hp, out)
        st[VG_ST_W2] = out[0]
        st[VG_ST_DW2] = out[1]
        st[VG_ST_UW2] = out[2]
        off = n.b_off[l]
        if floating is float:
            vg_opt_update_f32(kind, nb, P + off, G + off, S1 + off, S2 + off, hp, out)
        else:
            vg_opt_update_f64(kind, nb, P + off, G + off, S1 + off, S2 + off, hp, out)
        st[VG_ST_B2] = out[0]
        st[VG_ST_DB2] = out[1]
        if n.extras and n.g_off[l] >= 0:         # gamma and beta, contiguous
            off = n.g_off[l]
            if floating is float:
                vg_opt_update_f32(kind, 2 * nb, P + off, G + off, S1 + off, S2 + off, hp, out)
            else:
                vg_opt_update_f64(kind, 2 * nb, P + off, G + off, S1 + off, S2 + off, hp, out)


cdef inline void sample_norms(const NetDesc *n, int l, floating *x,
                              floating *delta) noexcept nogil:
    """The per-sample measurements of layer l, in the measured backward pass while x and delta
    are in cache: the squared row norms of its input and of its delta, and the mean over the
    batch of the per-sample gradients' squared norms (B ||x_i|| ||delta_i||)^2."""
    if n.in_norm2 == NULL:
        return
    cdef long b = n.batch
    cdef long i
    cdef double *xn = n.in_norm2 + l * b
    cdef double *dn = n.delta_norm2 + l * b
    cdef double bb = <double>(b * b)
    cdef double s = 0
    row_norms2(b, n.sizes[l], x, xn)
    row_norms2(b, n.sizes[l + 1], delta, dn)
    for i in range(b):
        s += bb * xn[i] * dn[i]
    n.ps_mean_sq[l] = s / <double>b


# ------------------------------------------------------------------------------------------
# The general passes: batch and layer normalisation, residual blocks, dropout
# ------------------------------------------------------------------------------------------

cdef inline floating *ns_mean(const NetDesc *n, int l, floating *NS) noexcept nogil:
    """Layer l's saved means (per unit for batch norm, per sample for layer norm)."""
    return NS + 2 * l * n.ns_stride


cdef inline floating *ns_invstd(const NetDesc *n, int l, floating *NS) noexcept nogil:
    return NS + (2 * l + 1) * n.ns_stride


cdef inline uint64_t drop_key(const NetDesc *n, int l) noexcept nogil:
    return vg_dropout_key(n.drop_seed, n.drop_counter, <uint64_t>l)


cdef void net_forward_general(const NetDesc *n, floating *X, int nthreads) noexcept nogil:
    cdef floating *P = <floating *>n.params
    cdef floating *H = <floating *>n.H
    cdef floating *A = <floating *>n.A
    cdef floating *Z = <floating *>n.Z
    cdef floating *x = X
    cdef floating *h
    cdef floating *pre
    cdef floating *bias
    cdef floating *base
    cdef long off
    cdef int l, fin, fout, nk
    cdef int batch = <int>n.batch
    cdef double p
    cdef double t0 = 0, t1 = 0
    for l in range(n.n_layers):
        fin = <int>n.sizes[l]
        fout = <int>n.sizes[l + 1]
        off = ws_offset(n, l)
        h = H + off
        if n.timing != NULL:
            t0 = vg_now()
        linear_forward(x, P + n.w_off[l], h, batch, fin, fout)
        if n.timing != NULL:
            t1 = vg_now()
        nk = n.norm[l]
        if nk:
            colbias(batch, fout, h, P + n.b_off[l], n.tiny)
            norm_stats(n, l, nk, batch, fout, h)
            norm_affine(nk, batch, fout, h, ns_mean(n, l, <floating *>n.NS), ns_invstd(n, l, <floating *>n.NS), P + n.g_off[l],
                        P + n.be_off[l], Z + off)
            pre = Z + off
            bias = <floating *>n.zeros
        else:
            pre = h
            bias = P + n.b_off[l]
        if n.measure:
            act_forward_stats(n.kinds[l], n.act_params[l], batch, fout, pre, bias, A + off,
                              n.stats + l * VG_N_STATS, <floating *>n.acc, n.tiny)
        else:
            act_forward(n.kinds[l], n.act_params[l], batch, fout, pre, bias, A + off, 1,
                        n.tiny)
        base = pre if n.kinds[l] == VG_IDENTITY else A + off
        p = n.drop_p[l] if n.training else 0.0
        if n.res_scale[l] != 0 or p > 0:
            res_drop_forward(batch, fout, x if n.res_scale[l] != 0 else NULL,
                             <floating>n.res_scale[l], base, <floating *>n.OUT + off, p,
                             drop_key(n, l), n.tiny)
            x = <floating *>n.OUT + off
        else:
            x = base
        if n.timing != NULL:
            n.timing[4 * l] += t1 - t0
            n.timing[4 * l + 1] += vg_now() - t1


cdef inline void colbias(long rows, long cols, floating *h, floating *b,
                         double tiny) noexcept nogil:
    if floating is float:
        vg_add_bias_f32(0, rows, 0, cols, cols, h, b, <float>tiny)
    else:
        vg_add_bias_f64(0, rows, 0, cols, cols, h, b, tiny)


cdef inline void norm_stats(const NetDesc *n, int l, int nk, long rows, long cols,
                            floating *h) noexcept nogil:
    cdef long u = n.cum_width[l]
    if nk == VG_NORM_BATCH:
        if floating is float:
            vg_bn_stats_f32(rows, cols, h, ns_mean(n, l, <floating *>n.NS), ns_invstd(n, l, <floating *>n.NS), n.norm_eps,
                            n.run_mean + u, n.run_var + u, n.norm_momentum, n.training)
        else:
            vg_bn_stats_f64(rows, cols, h, ns_mean(n, l, <floating *>n.NS), ns_invstd(n, l, <floating *>n.NS), n.norm_eps,
                            n.run_mean + u, n.run_var + u, n.norm_momentum, n.training)
    elif floating is float:
        vg_ln_stats_f32(rows, cols, h, ns_mean(n, l, <floating *>n.NS), ns_invstd(n, l, <floating *>n.NS), n.norm_eps)
    else:
        vg_ln_stats_f64(rows, cols, h, ns_mean(n, l, <floating *>n.NS), ns_invstd(n, l, <floating *>n.NS), n.norm_eps)


cdef inline void norm_affine(int nk, long rows, long cols, floating *h, floating *mean,
                             floating *invstd, floating *gamma, floating *beta,
                             floating *z) noexcept nogil:
    if floating is float:
        vg_norm_affine_f32(nk == VG_NORM_LAYER, rows, cols, h, mean, invstd, gamma, beta, z)
    else:
        vg_norm_affine_f64(nk == VG_NORM_LAYER, rows, cols, h, mean, invstd, gamma, beta, z)


cdef inline void res_drop_forward(long rows, long cols, floating *x, floating alpha,
                                  floating *a, floating *out, double p,
                                  uint64_t key, double tiny) noexcept nogil:
    if floating is float:
        vg_res_drop_forward_f32(rows, cols, x, alpha, a, out, p, key, <float>tiny)
    else:
        vg_res_drop_forward_f64(rows, cols, x, alpha, a, out, p, key, tiny)


cdef void net_backward_general(const NetDesc *n, floating *X, floating *dout, bint want_dx,
                               int nthreads) noexcept nogil:
    cdef floating *P = <floating *>n.params
    cdef floating *G = <floating *>n.grads
    cdef floating *H = <floating *>n.H
    cdef floating *A = <floating *>n.A
    cdef floating *Z = <floating *>n.Z
    cdef floating *D = <floating *>n.D
    cdef floating *delta
    cdef floating *skip
    cdef floating *pre
    cdef floating *dst
    cdef floating *x
    cdef int l, fin, fout, nk
    cdef int L = n.n_layers
    cdef int batch = <int>n.batch
    cdef long off
    cdef double p
    cdef bint residual
    cdef double t0 = 0, t1 = 0
    for l in range(L - 1, -1, -1):
        if n.timing != NULL:
            t0 = vg_now()
        fin = <int>n.sizes[l]
        fout = <int>n.sizes[l + 1]
        off = ws_offset(n, l)
        # where dL/d(input of layer l) goes
        if l > 0:
            dst = D + ws_offset(n, l - 1)
        elif want_dx:
            dst = <floating *>n.dX
        else:
            dst = NULL
        residual = n.res_scale[l] != 0
        if l == L - 1:
            delta = dout
            delta_and_bias_grad(n, l, dout, 1)
        else:
            delta = D + off
            p = n.drop_p[l] if n.training else 0.0
            if residual or p > 0:
                skip = dst if residual else NULL
                if floating is float:
                    vg_res_drop_backward_f32(batch, fout, delta, skip, residual,
                                             <float>n.res_scale[l], p, drop_key(n, l),
                                             <float>n.tiny)
                else:
                    vg_res_drop_backward_f64(batch, fout, delta, skip, residual,
                                             n.res_scale[l], p, drop_key(n, l), n.tiny)
            nk = n.norm[l]
            pre = (Z if nk else H) + off
            act_backward_any(n, l, batch, fout, pre, A + off, delta,
                             G + (n.be_off[l] if nk else n.b_off[l]))
            if nk:
                norm_backward(n, l, nk, batch, fout, H + off, delta)
                colsum(batch, fout, delta, G + n.b_off[l], 1)
        x = X if l == 0 else layer_out(n, l - 1, H, A)
        if n.measure:
            sample_norms(n, l, x, delta)
        if n.timing != NULL:
            t1 = vg_now()
        linear_grad_w(x, delta, G + n.w_off[l], batch, fin, fout)
        if dst != NULL:
            # a residual block's identity path already put its gradient in dst: accumulate
            gemm(c'T', c'N', fin, batch, fout, P + n.w_off[l], fout, delta, fout,
                 <floating>(1 if residual and l < L - 1 else 0), dst, fin)
        if n.timing != NULL:
            n.timing[4 * l + 2] += t1 - t0
            n.timing[4 * l + 3] += vg_now() - t1


cdef inline void act_backward_any(const NetDesc *n, int l, long rows, long cols, floating *pre,
                                  floating *a, floating *delta, floating *db) noexcept nogil:
    cdef double *st = n.stats + l * VG_N_STATS
    cdef floating *acc = <floating *>n.acc
    cdef floating *zc = <floating *>n.unit_zero + n.cum_width[l]
    if not n.measure:
        act_backward(n.kinds[l], n.act_params[l], rows, cols, pre, a, delta, db, 1, n.tiny)
    elif floating is float:
        vg_act_backward_stats_f32(n.kinds[l], <float>n.act_params[l], <float>n.sat_thr[l],
                                  rows, cols, pre, a, delta, db, st, zc, acc, acc + cols,
                                  acc + 2 * cols, <float>n.tiny)
    else:
        vg_act_backward_stats_f64(n.kinds[l], n.act_params[l], n.sat_thr[l], rows, cols,
                                  pre, a, delta, db, st, zc, acc, acc + cols, acc + 2 * cols,
                                  n.tiny)


cdef inline void norm_backward(const NetDesc *n, int l, int nk, long rows, long cols,
                               floating *h, floating *d) noexcept nogil:
    cdef floating *P = <floating *>n.params
    cdef floating *G = <floating *>n.grads
    if nk == VG_NORM_BATCH:
        if floating is float:
            vg_bn_backward_f32(rows, cols, h, ns_mean(n, l, <floating *>n.NS), ns_invstd(n, l, <floating *>n.NS), P + n.g_off[l],
                               d, G + n.be_off[l], G + n.g_off[l], n.training, <float>n.tiny)
        else:
            vg_bn_backward_f64(rows, cols, h, ns_mean(n, l, <floating *>n.NS), ns_invstd(n, l, <floating *>n.NS), P + n.g_off[l],
                               d, G + n.be_off[l], G + n.g_off[l], n.training, n.tiny)
    elif floating is float:
        vg_ln_backward_f32(rows, cols, h, ns_mean(n, l, <floating *>n.NS), ns_invstd(n, l, <floating *>n.NS), P + n.g_off[l], d,
                           G + n.g_off[l], <float>n.tiny)
    else:
        vg_ln_backward_f64(rows, cols, h, ns_mean(n, l, <floating *>n.NS), ns_invstd(n, l, <floating *>n.NS), P + n.g_off[l], d,
                           G + n.g_off[l], n.tiny)


cdef class Engine:
    """A network's compiled description: raw pointers into buffers owned by the Python layer.

    The Python ``MLP`` creates one, keeps every array it points into alive (they are also
    stored here), binds a workspace for the current batch size, and then calls
    ``forward``/``backward`` once per pass whatever the depth.
    """
    cdef NetDesc desc
    cdef bint is_f32
    cdef object _keep          # the arrays the descriptor points into
    cdef object _ws            # the bound workspace arrays
    cdef object _meas          # the measurement buffers
    cdef object _layers        # the normalisation / residual / dropout settings
    cdef object _ws_extra      # the general passes' workspace
    cdef object _timing        # the profiling array, when set
    cdef object _sn            # the per-sample measurement arrays of the bound batch size

    def __cinit__(self, cnp.ndarray sizes, cnp.ndarray kinds, cnp.ndarray act_params,
                  cnp.ndarray w_off, cnp.ndarray b_off, cnp.ndarray params,
                  cnp.ndarray grads):
        cum_width = np.concatenate(([0], np.cumsum(sizes[1:-1]))).astype(np.int64)
        self._keep = (sizes, kinds, act_params, w_off, b_off, params, grads, cum_width)
        self.desc.cum_width = <const int64_t *>cnp.PyArray_DATA(cum_width)
        self.desc.n_layers = <int>(sizes.shape[0] - 1)
        self.desc.sizes = <const int64_t *>cnp.PyArray_DATA(sizes)
        self.desc.kinds = <const int *>cnp.PyArray_DATA(kinds)
        self.desc.act_params = <const double *>cnp.PyArray_DATA(act_params)
        self.desc.w_off = <const int64_t *>cnp.PyArray_DATA(w_off)
        self.desc.b_off = <const int64_t *>cnp.PyArray_DATA(b_off)
        self.desc.params = cnp.PyArray_DATA(params)
        self.desc.grads = cnp.PyArray_DATA(grads)
        self.is_f32 = params.dtype.itemsize == 4
        self.desc.batch = 0
        self.desc.measure = False
        self.desc.extras = False
        self.desc.training = True
        self._ws = None
        self._meas = None
        self._layers = None
        self._ws_extra = None
        self._timing = None
        self.desc.timing = NULL
        self._sn = None
        self.desc.in_norm2 = NULL
        self.desc.delta_norm2 = NULL
        self.desc.ps_mean_sq = NULL
        self.desc.flush = False
        self.desc.tiny = 0

    def set_flush(self, bint on):
        """Flush subnormals (FTZ/DAZ during every pass and step, and values below the dtype's
        smallest normal written as 0 by the kernels that feed the matrix products) or not."""
        self.desc.flush = on
        self.desc.tiny = (FLT_MIN if self.is_f32 else DBL_MIN) if on else 0.0

    def set_layers(self, cnp.ndarray norm, cnp.ndarray res_scale, cnp.ndarray drop_p,
                   cnp.ndarray g_off, cnp.ndarray be_off, cnp.ndarray run_mean,
                   cnp.ndarray run_var, double eps, double momentum, uint64_t seed,
                   cnp.ndarray zeros):
        """Normalisation, residual and dropout settings of every layer (arrays from MLP)."""
        self._layers = (norm, res_scale, drop_p, g_off, be_off, run_mean, run_var, zeros)
        self.desc.norm = <const int *>cnp.PyArray_DATA(norm)
        self.desc.res_scale = <const double *>cnp.PyArray_DATA(res_scale)
        self.desc.drop_p = <const double *>cnp.PyArray_DATA(drop_p)
        self.desc.g_off = <const int64_t *>cnp.PyArray_DATA(g_off)
        self.desc.be_off = <const int64_t *>cnp.PyArray_DATA(be_off)
        self.desc.run_mean = <double *>cnp.PyArray_DATA(run_mean)
        self.desc.run_var = <double *>cnp.PyArray_DATA(run_var)
        self.desc.zeros = cnp.PyArray_DATA(zeros)
        self.desc.norm_eps = eps
        self.desc.norm_momentum = momentum
        self.desc.drop_seed = seed
        self.desc.extras = True
        self.desc.training = True

    def set_mode(self, bint training, uint64_t counter):
        """Training or evaluation mode, and the dropout counter of the next pass."""
        self.desc.training = training
        self.desc.drop_counter = counter

    def bind_extras(self, cnp.ndarray Z, cnp.ndarray OUT, cnp.ndarray NS, long ns_stride):
        """The general passes' workspace for the bound batch size."""
        self._ws_extra = (Z, OUT, NS)
        self.desc.Z = cnp.PyArray_DATA(Z)
        self.desc.OUT = cnp.PyArray_DATA(OUT)
        self.desc.NS = cnp.PyArray_DATA(NS)
        self.desc.ns_stride = ns_stride

    def set_measurement(self, bint on, cnp.ndarray stats=None, cnp.ndarray sat_thr=None,
                        cnp.ndarray unit_zero=None, cnp.ndarray acc=None):
        """Switch the measurements on (with the per-network buffers they fill) or off."""
        if on:
            self._meas = (stats, sat_thr, unit_zero, acc)
            self.desc.stats = <double *>cnp.PyArray_DATA(stats)
            self.desc.sat_thr = <const double *>cnp.PyArray_DATA(sat_thr)
            self.desc.unit_zero = cnp.PyArray_DATA(unit_zero)
            self.desc.acc = cnp.PyArray_DATA(acc)
        self.desc.measure = on

    def param_norms(self):
        """||W||^2, ||dW||^2, ||b||^2, ||db||^2 of every layer into the measurement array."""
        with nogil:
            if self.is_f32:
                net_param_norms(&self.desc, <float *>self.desc.params, <float *>self.desc.grads)
            else:
                net_param_norms(&self.desc, <double *>self.desc.params,
                                <double *>self.desc.grads)

    def sgd_measured(self, double lr):
        """params -= lr * grads, measuring parameter, gradient and update norms per layer."""
        cdef unsigned fp
        with nogil:
            fp = vg_fp_enter(self.desc.flush)
            if self.is_f32:
                net_sgd_measured(&self.desc, <float *>self.desc.params,
                                 <float *>self.desc.grads, <float>lr)
            else:
                net_sgd_measured(&self.desc, <double *>self.desc.params,
                                 <double *>self.desc.grads, lr)
            vg_fp_leave(self.desc.flush, fp)

    def opt_update(self, int kind, cnp.ndarray state1, cnp.ndarray state2, cnp.ndarray hp,
                   cnp.ndarray stats):
        """One optimiser step over the flat buffers: kind and the slots of hp as OPTIMIZERS and
        HYPERPARAMETERS name them (src/vg_contract.h); state1/state2 are like params
        (momentum, squares); per-layer norms into stats."""
        cdef void *s1 = cnp.PyArray_DATA(state1)
        cdef void *s2 = cnp.PyArray_DATA(state2)
        cdef const double *h = <const double *>cnp.PyArray_DATA(hp)
        cdef double *st = <double *>cnp.PyArray_DATA(stats)
        cdef unsigned fp
        with nogil:
            fp = vg_fp_enter(self.desc.flush)
            if self.is_f32:
                net_opt_update(&self.desc, kind, <float *>self.desc.params,
                               <float *>self.desc.grads, <float *>s1, <float *>s2, h, st)
            else:
                net_opt_update(&self.desc, kind, <double *>self.desc.params,
                               <double *>self.desc.grads, <double *>s1, <double *>s2, h, st)
            vg_fp_leave(self.desc.flush, fp)

    def set_timing(self, cnp.ndarray timing=None):
        """Accumulate per-layer seconds into timing (float64, 4 per layer), or stop (None)."""
        self._timing = timing
        self.desc.timing = NULL if timing is None else <double *>cnp.PyArray_DATA(timing)

    def bind_sample_norms(self, cnp.ndarray in_norm2, cnp.ndarray delta_norm2,
                          cnp.ndarray ps_mean_sq):
        """Where the measured backward pass writes the per-sample measurements of the bound
        batch size: float64 arrays of shapes (n_layers, batch) twice and (n_layers,)."""
        cdef tuple per_sample = (self.desc.n_layers, self.desc.batch)
        if (in_norm2.dtype != np.float64 or delta_norm2.dtype != np.float64
                or ps_mean_sq.dtype != np.float64 or not in_norm2.flags.c_contiguous
                or not delta_norm2.flags.c_contiguous or not ps_mean_sq.flags.c_contiguous
                or (<object>in_norm2).shape != per_sample
                or (<object>delta_norm2).shape != per_sample
                or (<object>ps_mean_sq).shape != (self.desc.n_layers,)):
            raise ValueError(f"bind_sample_norms: expected contiguous float64 arrays of shapes "
                             f"{per_sample} (twice) and ({self.desc.n_layers},)")
        self._sn = (in_norm2, delta_norm2, ps_mean_sq)
        self.desc.in_norm2 = <double *>cnp.PyArray_DATA(in_norm2)
        self.desc.delta_norm2 = <double *>cnp.PyArray_DATA(delta_norm2)
        self.desc.ps_mean_sq = <double *>cnp.PyArray_DATA(ps_mean_sq)

    def bind(self, long batch, cnp.ndarray H, cnp.ndarray A, cnp.ndarray D, cnp.ndarray dX):
        """Point the engine at a workspace for ``batch`` rows (arrays from ``MLP``)."""
        self._ws = (H, A, D, dX)
        self.desc.batch = batch
        self.desc.H = cnp.PyArray_DATA(H)
        self.desc.A = cnp.PyArray_DATA(A)
        self.desc.D = cnp.PyArray_DATA(D)
        self.desc.dX = cnp.PyArray_DATA(dX)
        self._sn = None             # sized for the previous batch: bind_sample_norms again
        self.desc.in_norm2 = NULL
        self.desc.delta_norm2 = NULL
        self.desc.ps_mean_sq = NULL

    def forward(self, cnp.ndarray X):
        """Run every layer on X (batch x sizes[0], the bound batch size); no allocation."""
        cdef void *x = cnp.PyArray_DATA(X)
        cdef int nt = _n_threads
        cdef unsigned fp
        with nogil:
            fp = vg_fp_enter(self.desc.flush)     # the caller's MXCSR, put back below
            self.desc.fp_caller = fp
            if self.is_f32:
                net_forward(&self.desc, <float *>x, nt)
            else:
                net_forward(&self.desc, <double *>x, nt)
            vg_fp_leave(self.desc.flush, fp)

    def backward(self, cnp.ndarray X, cnp.ndarray dout, bint want_dx):
        """Backpropagate dout (batch x sizes[-1]); fills the gradient buffer (and dX)."""
        cdef void *x = cnp.PyArray_DATA(X)
        cdef void *g = cnp.PyArray_DATA(dout)
        cdef int nt = _n_threads
        cdef unsigned fp
        with nogil:
            fp = vg_fp_enter(self.desc.flush)
            self.desc.fp_caller = fp
            if self.is_f32:
                net_backward(&self.desc, <float *>x, <float *>g, want_dx, nt)
            else:
                net_backward(&self.desc, <double *>x, <double *>g, want_dx, nt)
            vg_fp_leave(self.desc.flush, fp)


# ------------------------------------------------------------------------------------------
# Losses, checks and the SGD update (arrays validated by the caller)
# ------------------------------------------------------------------------------------------

def softmax_cross_entropy(cnp.ndarray logits, cnp.ndarray labels, cnp.ndarray grad):
    """Mean softmax cross-entropy; writes dL/dlogits into grad. labels: int64."""
    cdef long n = logits.shape[0], c = logits.shape[1]
    cdef void *z = cnp.PyArray_DATA(logits)
    cdef const int64_t *y = <const int64_t *>cnp.PyArray_DATA(labels)
    cdef void *g = cnp.PyArray_DATA(grad)
    cdef double loss
    cdef bint f32 = logits.dtype.itemsize == 4
    with nogil:
        if f32:
            loss = vg_softmax_xent_f32(n, c, <float *>z, y, <float *>g)
        else:
            loss = vg_softmax_xent_f64(n, c, <double *>z, y, <double *>g)
    return loss


def mean_squared_error(cnp.ndarray pred, cnp.ndarray target, cnp.ndarray grad):
    """Mean over all elements of (pred - target)^2; writes dL/dpred into grad."""
    cdef long n = pred.shape[0], m = pred.shape[1]
    cdef void *p = cnp.PyArray_DATA(pred)
    cdef void *t = cnp.PyArray_DATA(target)
    cdef void *g = cnp.PyArray_DATA(grad)
    cdef double loss
    cdef bint f32 = pred.dtype.itemsize == 4
    with nogil:
        if f32:
            loss = vg_mse_f32(n, m, <float *>p, <float *>t, <float *>g)
        else:
            loss = vg_mse_f64(n, m, <double *>p, <double *>t, <double *>g)
    return loss


def binary_cross_entropy_logits(cnp.ndarray logits, cnp.ndarray target, cnp.ndarray grad):
    """Mean over all elements of the logistic loss; writes dL/dlogits into grad."""
    cdef long n = logits.shape[0], m = logits.shape[1]
    cdef void *z = cnp.PyArray_DATA(logits)
    cdef void *t = cnp.PyArray_DATA(target)
    cdef void *g = cnp.PyArray_DATA(grad)
    cdef double loss
    cdef bint f32 = logits.dtype.itemsize == 4
    with nogil:
        if f32:
            loss = vg_bce_logits_f32(n, m, <float *>z, <float *>t, <float *>g)
        else:
            loss = vg_bce_logits_f64(n, m, <double *>z, <double *>t, <double *>g)
    return loss


def first_bad_label(cnp.ndarray labels, long n_classes):
    """Index of the first entry of the int64 array outside [0, n_classes), or -1."""
    cdef long n = labels.size
    cdef const int64_t *y = <const int64_t *>cnp.PyArray_DATA(labels)
    cdef long bad
    with nogil:
        bad = vg_first_bad_label(n, y, n_classes)
    return bad


def norm2(cnp.ndarray x):
    """Squared Euclidean norm of a contiguous float32/float64 array, in double."""
    cdef long n = x.size
    cdef void *p = cnp.PyArray_DATA(x)
    cdef double r
    cdef bint f32 = x.dtype.itemsize == 4
    with nogil:
        if f32:
            r = vg_norm2_f32(n, <float *>p)
        else:
            r = vg_norm2_f64(n, <double *>p)
    return r


def all_finite(cnp.ndarray x):
    """True when every element of the contiguous float32/float64 array x is finite."""
    cdef long n = x.size
    cdef void *p = cnp.PyArray_DATA(x)
    cdef int ok
    cdef bint f32 = x.dtype.itemsize == 4
    with nogil:
        if f32:
            ok = vg_all_finite_f32(n, <float *>p)
        else:
            ok = vg_all_finite_f64(n, <double *>p)
    return bool(ok)


def sgd_step(cnp.ndarray params, cnp.ndarray grads, double lr, bint flush=False):
    """params -= lr * grads over the whole flat buffer, in one pass; with ``flush``, under FTZ
    and DAZ in every thread that runs it (the caller's MXCSR restored after)."""
    cdef long n = params.size
    cdef void *p = cnp.PyArray_DATA(params)
    cdef void *g = cnp.PyArray_DATA(grads)
    cdef int nt = _n_threads
    cdef int nblk = 1
    cdef long t
    cdef bint f32 = params.dtype.itemsize == 4
    if nt > 1 and n >= PAR_MIN_CHEAP * 4:
        nblk = nt
    with nogil:
        if nblk == 1:
            if f32:
                vg_sgd_f32(0, n, <float>lr, <float *>p, <const float *>g, flush)
            else:
                vg_sgd_f64(0, n, lr, <double *>p, <const double *>g, flush)
        else:
            for t in prange(nblk, num_threads=nblk, schedule='static'):
                if f32:
                    vg_sgd_f32(n * t // nblk, n * (t + 1) // nblk, <float>lr, <float *>p,
                               <const float *>g, flush)
                else:
                    vg_sgd_f64(n * t // nblk, n * (t + 1) // nblk, lr, <double *>p,
                               <const double *>g, flush)


# ------------------------------------------------------------------------------------------
# The floating-point control register (MXCSR), for the tests of flush_subnormals
# ------------------------------------------------------------------------------------------

HAVE_MXCSR = bool(VG_HAVE_MXCSR)
"""Whether this build reads and sets MXCSR (x86); elsewhere the helpers below return 0."""
MXCSR_FTZ_DAZ = int(VG_MXCSR_FTZ_DAZ)
"""The FTZ (bit 15) and DAZ (bit 6) bits flushing sets: 0x8040 (0 without MXCSR)."""


def _get_mxcsr():
    """The calling thread's MXCSR (0 without MXCSR)."""
    return int(vg_get_mxcsr())


def _set_mxcsr(unsigned value):
    """Set the calling thread's MXCSR (tests: an unusual caller state that calls must keep)."""
    vg_set_mxcsr(value)


def _mxcsr_in_parallel(bint flush, int nthreads):
    """The MXCSR each of ``nthreads`` OpenMP threads sees inside a parallel region, entered
    the way the kernels enter it (vg_fp_enter(flush) ... vg_fp_leave), and after it: a list of
    (inside, after) per thread, in thread order."""
    cdef int nt = max(1, nthreads)
    out = np.zeros((nt, 2), np.uint32)
    cdef unsigned[:, :] o = out
    cdef int t
    cdef unsigned fp
    with nogil:
        for t in prange(nt, num_threads=nt, schedule='static'):
            fp = vg_fp_enter(flush)
            o[t, 0] = vg_get_mxcsr()
            vg_fp_leave(flush, fp)
            o[t, 1] = vg_get_mxcsr()
    return [(int(a), int(b)) for a, b in out]



# ------------------------------------------------------------------------------------------
# The contract with the Python layer (src/vg_contract.h): the names of the shared ids, in id
# order.  vgcore/core/_contract.py reads them and checks them against the Python side when
# vgcore is imported.
# ------------------------------------------------------------------------------------------

cdef extern from "vg_kernels.h":
    int VG_N_ACTIVATIONS, VG_N_OPTIMIZERS, VG_N_HYPER, VG_N_NORMS
    const char **vg_activation_names
    const char **vg_stat_names
    const char **vg_optimizer_names
    const char **vg_hyper_names
    const char **vg_norm_names


cdef tuple _names(const char **table, int n, str what):
    out = []
    for i in range(n):
        if table[i] == NULL:
            raise ImportError(f"vgcore._engine: {what} {i} has no name in src/vg_contract.h; "
                              f"name it there (and rebuild)")
        out.append(table[i].decode("ascii"))
    return tuple(out)


ACTIVATIONS = _names(vg_activation_names, VG_N_ACTIVATIONS, "activation id")
"""Activation names by kernel id."""
STATISTICS = _names(vg_stat_names, VG_N_STATS, "measurement field")
"""The fields of a layer's measurement row, by index (``N_STATS`` doubles per layer)."""
OPTIMIZERS = _names(vg_optimizer_names, VG_N_OPTIMIZERS, "optimiser kind")
"""The compiled optimiser updates by kind."""
HYPERPARAMETERS = _names(vg_hyper_names, VG_N_HYPER, "hyper-parameter slot")
"""The slots of an update's hyper-parameter vector (``N_HYPERPARAMETERS`` doubles)."""
NORMS = _names(vg_norm_names, VG_N_NORMS, "normalisation kind")
"""Normalisation kinds by id."""
N_STATS = VG_N_STATS
N_HYPERPARAMETERS = VG_N_HYPER


def set_engine_threads(int n):
    """The thread count of the elementwise kernels (OpenMP); at least 1."""
    _set_engine_threads(n)


def get_engine_threads():
    """The thread count of the elementwise kernels."""
    return _get_engine_threads()


def omp_max_threads():
    """The OpenMP runtime's default thread count (honours OMP_NUM_THREADS)."""
    return _omp_max_threads()
