# Included by _engine.pyx (one compiled module, its directives and cimports): the module's
# standalone functions: losses, checks, the SGD update, MXCSR, the contract's name tables.

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
            loss = vg_softmax_xent_f32(n, c, <float *>z, y, <float *>g, n)
        else:
            loss = vg_softmax_xent_f64(n, c, <double *>z, y, <double *>g, n)
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
            loss = vg_mse_f32(n, m, <float *>p, <float *>t, <float *>g, n)
        else:
            loss = vg_mse_f64(n, m, <double *>p, <double *>t, <double *>g, n)
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
            loss = vg_bce_logits_f32(n, m, <float *>z, <float *>t, <float *>g, n)
        else:
            loss = vg_bce_logits_f64(n, m, <double *>z, <double *>t, <double *>g, n)
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


cdef inline bint _f64_pair(object dst, object src) noexcept:
    """Both C-contiguous native-order float64 arrays, dst writable (shapes not compared)."""
    cdef cnp.ndarray d, s
    if not (isinstance(dst, cnp.ndarray) and isinstance(src, cnp.ndarray)):
        return False
    d = <cnp.ndarray>dst
    s = <cnp.ndarray>src
    if cnp.PyArray_TYPE(d) != cnp.NPY_DOUBLE or cnp.PyArray_TYPE(s) != cnp.NPY_DOUBLE:
        return False
    if not (cnp.PyArray_ISNOTSWAPPED(d) and cnp.PyArray_ISNOTSWAPPED(s)):
        return False
    return (cnp.PyArray_IS_C_CONTIGUOUS(d) and cnp.PyArray_IS_C_CONTIGUOUS(s)
            and cnp.PyArray_ISWRITEABLE(d))


cdef inline bint _same_f64_block(object dst, object src) noexcept:
    """Both C-contiguous native-order float64 arrays of one shape, dst writable."""
    if not _f64_pair(dst, src):
        return False
    cdef cnp.ndarray d = <cnp.ndarray>dst
    cdef cnp.ndarray s = <cnp.ndarray>src
    if cnp.PyArray_NDIM(d) != cnp.PyArray_NDIM(s):
        return False
    cdef int k
    for k in range(cnp.PyArray_NDIM(d)):
        if cnp.PyArray_DIM(d, k) != cnp.PyArray_DIM(s, k):
            return False
    return True


def copy_f64_pairs(dst1, src1, dst2, src2):
    """dst1[...] = src1 and dst2[...] = src2 in one call, for readers of a step's sums that
    run right after the step, when NumPy's own copy machinery has left the caches: True when
    every array is a C-contiguous float64 array, each dst writable and of its src's shape (both
    copied); False otherwise (another byte order included), and nothing is copied (the
    caller checks and explains)."""
    if not (_same_f64_block(dst1, src1) and _same_f64_block(dst2, src2)):
        return False
    memmove(cnp.PyArray_DATA(<cnp.ndarray>dst1), cnp.PyArray_DATA(<cnp.ndarray>src1),
           cnp.PyArray_NBYTES(<cnp.ndarray>src1))
    memmove(cnp.PyArray_DATA(<cnp.ndarray>dst2), cnp.PyArray_DATA(<cnp.ndarray>src2),
           cnp.PyArray_NBYTES(<cnp.ndarray>src2))
    return True


cdef inline bint _f64_row_of(object dst, object src, Py_ssize_t row) noexcept:
    """dst a writable C-contiguous native-order float64 array with one axis more than src
    (the same kind of array, read), its other axes src's, and 0 <= row < len(dst)."""
    if not _f64_pair(dst, src):
        return False
    cdef cnp.ndarray d = <cnp.ndarray>dst
    cdef cnp.ndarray s = <cnp.ndarray>src
    cdef int k
    if cnp.PyArray_NDIM(d) != cnp.PyArray_NDIM(s) + 1:
        return False
    if row < 0 or row >= cnp.PyArray_DIM(d, 0):
        return False
    for k in range(cnp.PyArray_NDIM(s)):
        if cnp.PyArray_DIM(d, k + 1) != cnp.PyArray_DIM(s, k):
            return False
    return True


def copy_f64_rows(dst1, src1, dst2, src2, row_obj):
    """dst1[row] = src1 and dst2[row] = src2 in one call, without the two row views (each
    costs microseconds right after a step): a Recorder's row of raw sums.  True when every
    array is C-contiguous native-order float64, each dst writable with one leading axis more
    than its src and row a Python int with 0 <= row < its length (both copied); False
    otherwise, and nothing is copied (the caller checks and explains)."""
    cdef Py_ssize_t row
    if type(row_obj) is not int:
        return False
    try:
        row = <Py_ssize_t>row_obj
    except OverflowError:
        return False
    if not (_f64_row_of(dst1, src1, row) and _f64_row_of(dst2, src2, row)):
        return False
    cdef Py_ssize_t n1 = cnp.PyArray_NBYTES(<cnp.ndarray>src1)
    cdef Py_ssize_t n2 = cnp.PyArray_NBYTES(<cnp.ndarray>src2)
    memmove(<char *>cnp.PyArray_DATA(<cnp.ndarray>dst1) + row * n1,
            cnp.PyArray_DATA(<cnp.ndarray>src1), n1)
    memmove(<char *>cnp.PyArray_DATA(<cnp.ndarray>dst2) + row * n2,
            cnp.PyArray_DATA(<cnp.ndarray>src2), n2)
    return True


def put_i64_row(dst, Py_ssize_t row, values):
    """dst[row, :] = values (Python ints) in one call, where NumPy's item assignment costs
    microseconds per item right after a step.  True when dst is a writable C-contiguous
    native-order int64 matrix of len(values) columns (at most 16), values a tuple of ints each
    fitting in int64 and 0 <= row < len(dst); False otherwise, and nothing is written (the
    caller falls back to NumPy)."""
    cdef cnp.ndarray d
    cdef Py_ssize_t k, n
    cdef int64_t buf[16]
    cdef int64_t *out
    if type(values) is not tuple or not isinstance(dst, cnp.ndarray):
        return False
    n = len(values)
    if n > 16:
        return False
    d = <cnp.ndarray>dst
    if (cnp.PyArray_TYPE(d) != cnp.NPY_INT64 or not cnp.PyArray_ISNOTSWAPPED(d)
            or not cnp.PyArray_IS_C_CONTIGUOUS(d) or not cnp.PyArray_ISWRITEABLE(d)
            or cnp.PyArray_NDIM(d) != 2 or cnp.PyArray_DIM(d, 1) != n
            or row < 0 or row >= cnp.PyArray_DIM(d, 0)):
        return False
    for k in range(n):
        v = values[k]
        if type(v) is not int and type(v) is not bool:
            return False
        try:
            buf[k] = <int64_t>v
        except OverflowError:
            return False
    out = <int64_t *>cnp.PyArray_DATA(d) + row * n
    for k in range(n):
        out[k] = buf[k]
    return True


def snapshot_arrays(*arrays):
    """Read-only, C-contiguous copies of the given arrays (one tuple, one compiled call): what
    GradientFlow.from_buffers keeps of the buffers it is given.  Taken right after a step,
    when NumPy's own copying code has left the caches, this costs a fraction of
    ``a.copy()`` per array.  Contiguous native-order numbers are copied as bytes; anything
    else (strided, another byte order, objects, dates) through NumPy."""
    cdef list out = []
    cdef cnp.ndarray a, c
    for obj in arrays:
        a = <cnp.ndarray?>obj
        if (cnp.PyArray_IS_C_CONTIGUOUS(a) and cnp.PyArray_ISNUMBER(a)
                and cnp.PyArray_ISNOTSWAPPED(a)):
            c = cnp.PyArray_SimpleNew(cnp.PyArray_NDIM(a), cnp.PyArray_DIMS(a),
                                      cnp.PyArray_TYPE(a))
            memmove(cnp.PyArray_DATA(c), cnp.PyArray_DATA(a), cnp.PyArray_NBYTES(a))
        else:
            c = np.array(a, order="C", copy=True)
        cnp.PyArray_CLEARFLAGS(c, cnp.NPY_ARRAY_WRITEABLE)
        out.append(c)
    return tuple(out)


cdef class _Lease:
    """The base of the arrays read_only_view makes: keeps their memory's owner alive, and
    offers no buffer of its own (so no array can be made over the memory without one of
    them, whose reference counts are then seen)."""
    cdef object owner


def read_only_view(cnp.ndarray owner, Py_ssize_t n):
    """A read-only 1-D array over the first n items of the contiguous array owner, whose base
    is a private object (not owner, not a buffer): a view of it has it as its base, so its
    reference count counts every array over that memory made from it."""
    cdef cnp.npy_intp dims[1]
    cdef _Lease lease
    cdef cnp.ndarray a
    if not cnp.PyArray_IS_C_CONTIGUOUS(owner) or n < 0 or n > cnp.PyArray_SIZE(owner):
        raise ValueError(f"read_only_view: expected a contiguous array of at least {n} items")
    dims[0] = n
    a = cnp.PyArray_SimpleNewFromData(1, dims, cnp.PyArray_TYPE(owner),
                                      cnp.PyArray_DATA(owner))
    lease = _Lease()
    lease.owner = owner
    cnp.Py_INCREF(lease)        # the reference PyArray_SetBaseObject steals
    cnp.PyArray_SetBaseObject(a, lease)
    cnp.PyArray_CLEARFLAGS(a, cnp.NPY_ARRAY_WRITEABLE)
    return a


def refcount_sum(tuple objs):
    """The sum of the reference counts of the objects in objs (the tuple's own references
    included): a measurement set compares it with its value when nothing outside the set held
    its arrays, to tell whether a flow, or an array taken from one, still does."""
    return _refsum(objs)


cdef Py_ssize_t _refsum(tuple objs) except -1:
    cdef Py_ssize_t i, total = 0
    for i in range(PyTuple_GET_SIZE(objs)):
        total += _refcnt(PyTuple_GET_ITEM(objs, i))
    return total


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


def scan_values(cnp.ndarray x):
    """(finite, subnormal) for the contiguous float32/float64 array x: whether every element
    is finite, and whether any is subnormal (not 0, below the smallest normal), in one pass."""
    cdef long n = x.size
    cdef void *p = cnp.PyArray_DATA(x)
    cdef int found
    cdef bint f32 = x.dtype.itemsize == 4
    with nogil:
        if f32:
            found = vg_scan_values_f32(n, <float *>p)
        else:
            found = vg_scan_values_f64(n, <double *>p)
    return not (found & VG_SCAN_NONFINITE), bool(found & VG_SCAN_SUBNORMAL)


def flush_subnormals_into(cnp.ndarray src, cnp.ndarray dst):
    """dst[...] = src with its subnormal entries +0 (every other value as it is), for
    contiguous float32/float64 arrays of one dtype and size (checked by the caller); dst may be
    src."""
    cdef long n = src.size
    cdef void *s = cnp.PyArray_DATA(src)
    cdef void *d = cnp.PyArray_DATA(dst)
    cdef bint f32 = src.dtype.itemsize == 4
    with nogil:
        if f32:
            vg_flush_subnormals_f32(n, <float *>s, <float *>d)
        else:
            vg_flush_subnormals_f64(n, <double *>s, <double *>d)


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


# ------------------------------------------------------------------------------------------
# vgcore's own matrix product (vg_gemm.h), reachable for tests
# ------------------------------------------------------------------------------------------

def gemm_own(cnp.ndarray A, cnp.ndarray B, cnp.ndarray C, bint accumulate=False):
    """C = A @ B (C += A @ B with accumulate) through vgcore's own kernel (the instruction set
    of set_gemm_isa) whatever the size.  A: C- or F-contiguous (a transposed view is F-contiguous); B and C:
    C-contiguous; one float dtype for all three."""
    if vg_gemm_isa == VG_GEMM_NONE:
        raise RuntimeError("gemm_own: vgcore's own product is off (set_gemm_isa('none') or "
                           "a CPU without AVX2)")
    if A.ndim != 2 or B.ndim != 2 or C.ndim != 2:
        raise ValueError("gemm_own: A, B and C must be matrices")
    if A.dtype != B.dtype or A.dtype != C.dtype or A.dtype not in (np.float32, np.float64):
        raise TypeError(f"gemm_own: expected one of float32 or float64 for A, B and C, got "
                        f"{A.dtype}, {B.dtype}, {C.dtype}")
    cdef long M = A.shape[0], K = A.shape[1], N = B.shape[1]
    if B.shape[0] != K or C.shape[0] != M or C.shape[1] != N:
        raise ValueError(f"gemm_own: shapes ({M}, {K}) @ ({B.shape[0]}, {N}) -> "
                         f"({C.shape[0]}, {C.shape[1]}) do not match")
    if not (B.flags.c_contiguous and C.flags.c_contiguous and C.flags.writeable):
        raise ValueError("gemm_own: B and C must be C-contiguous, C writeable")
    cdef long rs, cs
    if A.flags.c_contiguous:
        rs, cs = K, 1
    elif A.flags.f_contiguous:
        rs, cs = 1, M
    else:
        raise ValueError("gemm_own: A must be C- or F-contiguous")
    cdef void *a = cnp.PyArray_DATA(A)
    cdef void *b = cnp.PyArray_DATA(B)
    cdef void *c = cnp.PyArray_DATA(C)
    cdef bint f32 = A.dtype == np.float32
    with nogil:
        if f32:
            vg_gemm_f32(M, N, K, <float *>a, rs, cs, <float *>b, N, <float *>c, N, accumulate)
        else:
            vg_gemm_f64(M, N, K, <double *>a, rs, cs, <double *>b, N, <double *>c, N,
                        accumulate)


def transpose_own(cnp.ndarray A, cnp.ndarray out):
    """out = A.T through the transposition the backward pass uses (both C-contiguous)."""
    if A.dtype != out.dtype or A.dtype not in (np.float32, np.float64) or A.ndim != 2 or \
            out.ndim != 2 or out.shape[0] != A.shape[1] or out.shape[1] != A.shape[0] or \
            not (A.flags.c_contiguous and out.flags.c_contiguous and out.flags.writeable):
        raise ValueError("transpose_own: expected C-contiguous matrices of one float dtype, "
                         "out of shape A.shape[::-1]")
    if vg_gemm_isa == VG_GEMM_NONE:
        raise RuntimeError("transpose_own: needs AVX2 (vgcore's own product is off)")
    cdef long r = A.shape[0], c = A.shape[1]
    cdef void *a = cnp.PyArray_DATA(A)
    cdef void *o = cnp.PyArray_DATA(out)
    cdef bint f32 = A.dtype == np.float32
    with nogil:
        if f32:
            vg_transpose_F32(r, c, <float *>a, <float *>o)
        else:
            vg_transpose_F64(r, c, <double *>a, <double *>o)
