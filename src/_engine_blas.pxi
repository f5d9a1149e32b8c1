# Included by _engine.pyx (one compiled module, its directives and cimports): which BLAS
# computes the larger products (vg_blas.h) and how the passes run its threads
# (vg_blas_threads.h); gemm(), the one call of the passes into it.

cdef extern from "vg_blas_threads.h" nogil:
    ctypedef struct vg_blas_choice:
        double ewma[2]
        double probe[2]
        long passes
        int best
    int VG_BLAS_PROBE_EVERY
    double VG_BLAS_ONE_MAX_DEFAULT
    double vg_blas_one_max
    int vg_blas_adapt
    int vg_blas_bits_vary
    int vg_blas_reproducible
    bint vg_blas_hands_off() noexcept
    void vg_blas_lock() noexcept
    void vg_blas_unlock() noexcept
    ctypedef void (*vg_blas_set_fn)(int) noexcept
    ctypedef int (*vg_blas_get_fn)() noexcept
    vg_blas_set_fn vg_blas_set
    vg_blas_get_fn vg_blas_get
    void vg_blas_choice_init(vg_blas_choice *c) noexcept
    int vg_blas_pass_begin(const vg_blas_choice *c) noexcept
    void vg_blas_pass_end(vg_blas_choice *c, int mode, double seconds) noexcept
    int vg_choice_pick(const vg_blas_choice *c) noexcept
    void vg_choice_learn(vg_blas_choice *c, int mode, double cost) noexcept
    const char *vg_blas_symbol
    int vg_blas_bind(const void *blas_fn) noexcept
    void vg_blas_before(double mnk) noexcept
    void vg_blas_release() noexcept
    int vg_blas_holders() noexcept
    int vg_blas_switch(int which) noexcept

cdef extern from "vg_blas.h" nogil:
    int vg_blas_offer(int which, void *s, void *d, int int64) noexcept
    int vg_blas_offer_numpys() noexcept
    int vg_blas_use(int which) noexcept
    int vg_blas_in_use() noexcept
    const void *vg_blas_sgemm_of(int which) noexcept
    const char *vg_blas_file(int which) noexcept
    void vg_sgemm(char ta, char tb, int m, int n, int k, float alpha, float *a, int lda,
                  float *b, int ldb, float beta, float *c, int ldc) noexcept
    void vg_dgemm(char ta, char tb, int m, int n, int k, double alpha, double *a, int lda,
                  double *b, int ldb, double beta, double *c, int ldc) noexcept

# the two candidates (vg_blas.h): SciPy's always, NumPy's when found; SciPy's computes until
# the Python layer chooses (vgcore.core._threads.use_blas, when vgcore is imported)
BLAS_NAMES = ("scipy", "numpy")
vg_blas_offer(0, <void *>sgemm, <void *>dgemm, 0)
vg_blas_offer_numpys()
vg_blas_switch(0)


cdef inline bint _blas_bound() noexcept:
    """Whether the thread count of the library in use was reached (vg_blas_bind)."""
    return vg_blas_set != NULL


def _probe_product(int m, int n, int k, dtype, str trans="NN"):
    """A fixed product straight through the BLAS (column-major op(A) m x k by op(B) k x n, op
    per letter of trans: N as stored, T transposed, as vgcore's passes call it; not through
    gemm(), whose thread policy must not act here)."""
    A = ((np.arange(m * k) * 7919 % 1009) / 1009.0 - 0.5).astype(dtype)
    B = ((np.arange(k * n) * 104729 % 1013) / 1013.0 - 0.5).astype(dtype)
    A = A.reshape((m, k) if trans[0] == "N" else (k, m), order="F")
    B = B.reshape((k, n) if trans[1] == "N" else (n, k), order="F")
    return blas_product(trans, A, B, np.zeros((m, n), dtype=dtype, order="F"))


def blas_product(str trans, A, B, C):
    """C = op(A) op(B) straight through the BLAS that computes vgcore's products, column-major
    (Fortran-ordered 2-D arrays of one float dtype; op per letter of trans, N or T), in place,
    without the GIL and without vgcore's thread policy: the products of a step alone, for
    `vgcore profile` and the benchmarks."""
    cdef char ta, tb
    cdef int m, n, k, lda, ldb, ldc
    cdef void *a
    cdef void *b
    cdef void *c
    cdef bint f32
    if len(trans) != 2 or trans[0] not in "NT" or trans[1] not in "NT":
        raise ValueError(f"trans: expected two letters N or T, got {trans!r}")
    for name, x in (("C", C), ("A", A), ("B", B)):
        if not isinstance(x, np.ndarray) or x.ndim != 2 or not x.flags.f_contiguous or \
                x.dtype != C.dtype or x.dtype not in (np.float32, np.float64):
            raise ValueError(f"{name}: expected a Fortran-ordered 2-D float32 or float64 array "
                             f"of C's dtype, got {getattr(x, 'dtype', type(x).__name__)} "
                             f"{getattr(x, 'shape', '')}")
    if not C.flags.writeable:
        raise ValueError("C: expected a writable array")
    m, n = C.shape
    k = A.shape[1] if trans[0] == "N" else A.shape[0]
    if (A.shape[0] if trans[0] == "N" else A.shape[1]) != m or \
            (B.shape[0] if trans[1] == "N" else B.shape[1]) != k or \
            (B.shape[1] if trans[1] == "N" else B.shape[0]) != n:
        raise ValueError(f"shapes: op(A) {A.shape} op(B) {B.shape} into C {C.shape} with "
                         f"trans {trans!r} do not chain")
    ta, tb = ord(trans[0]), ord(trans[1])
    lda, ldb, ldc = max(1, A.shape[0]), max(1, B.shape[0]), max(1, m)
    a = cnp.PyArray_DATA(A)
    b = cnp.PyArray_DATA(B)
    c = cnp.PyArray_DATA(C)
    f32 = C.dtype == np.float32
    with nogil:
        if f32:
            vg_sgemm(ta, tb, m, n, k, 1, <float *>a, lda, <float *>b, ldb, 0, <float *>c, ldc)
        else:
            vg_dgemm(ta, tb, m, n, k, 1, <double *>a, lda, <double *>b, ldb, 0, <double *>c,
                     ldc)
    return C


def blas_threads_change_bits():
    """Whether the bound BLAS gives other bits for the same product in one thread and in
    several (at least 2; its current count when larger): products of float32 and float64, of
    sizes OpenBLAS splits over its threads, in the three layouts of vgcore's passes (NN
    forward, NT weight gradient, TN input gradient), each computed both ways (~5 ms).  The
    count is put back.  False when no BLAS thread count is bound (nothing to change).  Runs
    under the lock that passes take to change the count: a pass that starts meanwhile waits."""
    if not _blas_bound():
        return False
    cdef int saved, many
    vg_blas_lock()
    saved = vg_blas_get()
    many = saved if saved > 1 else 2
    try:
        for dtype in (np.float32, np.float64):
            for m, n, k in ((131, 200, 96), (160, 192, 224), (515, 24, 40)):
                for trans in ("NN", "NT", "TN"):
                    vg_blas_set(1)
                    one = _probe_product(m, n, k, dtype, trans)
                    vg_blas_set(many)
                    several = _probe_product(m, n, k, dtype, trans)
                    if not np.array_equal(one, several):
                        return True
        return False
    finally:
        vg_blas_set(saved)
        vg_blas_unlock()


# vg_blas_bits_vary is probed when the Python layer picks the library (use_blas_products)


cdef dict _blas_files = None


def blas_products():
    """Which OpenBLAS computes the products vgcore's own kernel leaves to a BLAS (vg_blas.h):
    ``library`` ("numpy" or "scipy"), ``file`` (its path, None where it cannot be found),
    ``available`` (the candidates found, name: path or None)."""
    global _blas_files
    if _blas_files is None:         # the candidates are fixed when the module loads
        import os
        _blas_files = {}
        for i in range(2):
            if vg_blas_sgemm_of(i) != NULL:
                f = vg_blas_file(i).decode()
                _blas_files[BLAS_NAMES[i]] = os.path.realpath(f) if f else None
    name = BLAS_NAMES[vg_blas_in_use()]
    return {"library": name, "file": _blas_files[name], "available": dict(_blas_files)}


def _blas_sgemm_address():
    """For tests: the address of the sgemm the passes call now."""
    return <size_t>vg_blas_sgemm_of(vg_blas_in_use())


def use_blas_products(str name):
    """Compute the larger products with ``name``'s OpenBLAS ("numpy" or "scipy"), bind its
    thread count and probe whether its bits depend on that count.  Refused (RuntimeError) while
    a pass holds the BLAS's thread count; the Python layer validates ``name`` and availability."""
    global vg_blas_bits_vary
    cdef int which = BLAS_NAMES.index(name), bound
    bound = vg_blas_switch(which)
    if bound == -2:
        raise ValueError(f"library: {name}'s OpenBLAS is not loaded in this process")
    if bound < 0:
        raise RuntimeError("library: a pass is running in another thread; choose the BLAS "
                           "before training, not during it")
    vg_blas_bits_vary = blas_threads_change_bits()


def set_blas_reproducible(bint on):
    """Where the BLAS's bits depend on its thread count: leave that count alone (True, the
    default) or apply the policy anyway (False); see vgcore.set_blas_policy."""
    global vg_blas_reproducible
    vg_blas_reproducible = on


def set_blas_bits_vary(bint on):
    """For tests: act as if the probe had found (or not) that the BLAS's bits depend on its
    thread count."""
    global vg_blas_bits_vary
    vg_blas_bits_vary = on


def blas_one_thread_info():
    """How vgcore runs the BLAS's threads (see vg_blas_threads.h): ``bound`` (the BLAS's
    thread count could be reached), ``symbol``, ``max_mnk`` (products of at most this many
    float32 multiply-adds run in one thread; float64 counts twice; 0 = none), ``adapt`` (larger
    products run in one thread when that has been faster), ``probe_every``, ``holders``
    (passes holding the count at 1 now)."""
    bound = _blas_bound()
    return {"bound": bound, "symbol": vg_blas_symbol.decode() if bound else None,
            "max_mnk": float(vg_blas_one_max), "default_max_mnk": float(VG_BLAS_ONE_MAX_DEFAULT),
            "adapt": bool(vg_blas_adapt), "probe_every": int(VG_BLAS_PROBE_EVERY),
            "holders": int(vg_blas_holders()), "threads_change_bits": bool(vg_blas_bits_vary),
            "reproducible": bool(vg_blas_reproducible), "hands_off": bool(vg_blas_hands_off())}


cdef dict _choice_dict(const vg_blas_choice *c, str per="seconds_per_mnk"):
    return {"passes": int(c.passes), "one_thread": bool(c.best),
            per: tuple(None if c.ewma[i] < 0 else float(c.ewma[i]) for i in range(2))}


def choice_trace(costs):
    """For tests: the modes the two-mode chooser of vg_blas_threads.h picks, pass after pass,
    for a fresh choice whose passes cost ``costs[i][mode]`` (seconds per unit of work) in pass
    i; returns (modes, final choice as in blas_choice())."""
    cdef vg_blas_choice c
    cdef int mode
    vg_blas_choice_init(&c)
    modes = []
    for cost in costs:
        mode = vg_choice_pick(&c)
        vg_choice_learn(&c, mode, float(cost[mode]))
        modes.append(mode)
    return modes, _choice_dict(&c)


def set_blas_one_max(double max_mnk):
    global vg_blas_one_max
    vg_blas_one_max = max_mnk


def set_blas_adapt(bint on):
    global vg_blas_adapt
    vg_blas_adapt = on

cdef inline void gemm(char ta, char tb, int m, int n, int k, floating *a, int lda,
                      floating *b, int ldb, floating beta, floating *c, int ldc) noexcept nogil:
    """Column-major C(m x n) = op(A) op(B) + beta C, as BLAS sees it."""
    cdef floating one = 1
    if floating is float:
        vg_blas_before(<double>m * n * k)
        vg_sgemm(ta, tb, m, n, k, one, a, lda, b, ldb, beta, c, ldc)
    else:
        vg_blas_before(2.0 * m * n * k)
        vg_dgemm(ta, tb, m, n, k, one, a, lda, b, ldb, beta, c, ldc)
