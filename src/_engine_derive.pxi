# ------------------------------------------------------------------------------------------
# The gradient-flow fields derived from measurement rows (src/vg_derive.h): all of a step's
# in one call for a flow, one field over many steps for a recorder's history.
# ------------------------------------------------------------------------------------------

cdef extern from "vg_derive.h" nogil:
    int VG_N_FIELDS, VG_N_LAYER_FIELDS, VG_FLD_NONFINITE_FORWARD_LAYER
    int VG_FLD_NONFINITE_BACKWARD_LAYER
    const char **vg_field_names
    int vg_derive(int field, long rows, long L, const double *st, const double *psms,
                  const double *widths, const int64_t *batch, long bstep,
                  const int64_t *stepped, long sstep, double *out) noexcept


DERIVED = _names(vg_field_names, VG_N_FIELDS, "derived field")
"""The quantities derived from measurement rows, by id: the per-layer fields
(``N_LAYER_FIELDS`` of them), then the per-step scalars."""
N_LAYER_FIELDS = VG_N_LAYER_FIELDS
if VG_N_FIELDS - VG_N_LAYER_FIELDS > 8:
    raise ImportError("vgcore._engine: more than 8 derived scalars in src/vg_contract.h; "
                      "_derive_step keeps them in 8 slots: widen it (and rebuild)")


cdef const double *_f64(object a, str name, int ndim, Py_ssize_t d0, Py_ssize_t d1,
                        Py_ssize_t d2) except NULL:
    """a's data, once a is a C-contiguous native float64 array of the shape given (a -1
    takes any size)."""
    cdef Py_ssize_t want[3]
    cdef int k
    cdef cnp.ndarray arr
    want[0] = d0
    want[1] = d1
    want[2] = d2
    ok = isinstance(a, cnp.ndarray)
    if ok:
        arr = <cnp.ndarray>a
        ok = (cnp.PyArray_TYPE(arr) == cnp.NPY_FLOAT64 and cnp.PyArray_ISNOTSWAPPED(arr)
              and cnp.PyArray_IS_C_CONTIGUOUS(arr) and cnp.PyArray_NDIM(arr) == ndim)
        for k in range(ndim if ok else 0):
            ok = ok and (want[k] < 0 or cnp.PyArray_DIM(arr, k) == want[k])
    if not ok:
        shape = []
        for k in range(ndim):
            shape.append("any" if want[k] < 0 else want[k])
        got = (f"{a.dtype} {'contiguous' if a.flags.c_contiguous else 'strided'} shape "
               f"{a.shape}" if isinstance(a, cnp.ndarray) else type(a).__name__)
        raise ValueError(f"{name}: expected a C-contiguous float64 array of shape "
                         f"{tuple(shape)}, got {got}")
    return <const double *>cnp.PyArray_DATA(arr)


cdef tuple _derive_step(cnp.ndarray stats, cnp.ndarray ps_mean_sq, cnp.ndarray widths,
                        int64_t batch, bint stepped, double *fo):
    """Every derived quantity of one step: the per-layer fields into fo (field after field, L
    values each; the caller checked stats with _n_layers and sized fo), and the scalars
    returned as a flow keeps them (the non-finite layers as ints or None)."""
    cdef Py_ssize_t L = cnp.PyArray_DIM(stats, 0)
    cdef const double *st = <const double *>cnp.PyArray_DATA(stats)
    cdef const double *ps = _f64(ps_mean_sq, "ps_mean_sq", 1, L, 0, 0)
    cdef const double *w = _f64(widths, "widths", 1, L, 0, 0)
    cdef double sc[8]
    cdef int64_t step = stepped
    cdef int f, bad = 0
    for f in range(VG_N_LAYER_FIELDS):
        bad |= vg_derive(f, 1, L, st, ps, w, &batch, 0, &step, 0, fo + f * L)
    for f in range(VG_N_LAYER_FIELDS, VG_N_FIELDS):
        bad |= vg_derive(f, 1, L, st, ps, w, &batch, 0, &step, 0, &sc[f - VG_N_LAYER_FIELDS])
    if bad:
        raise RuntimeError("vgcore._engine: a derived field without its formula in "
                           "src/vg_derive.h; add it (and rebuild)")
    out = []
    for f in range(VG_N_LAYER_FIELDS, VG_N_FIELDS):
        if f == VG_FLD_NONFINITE_FORWARD_LAYER or f == VG_FLD_NONFINITE_BACKWARD_LAYER:
            out.append(int(sc[f - VG_N_LAYER_FIELDS]) or None)      # 1-based, 0 for none
        else:
            out.append(sc[f - VG_N_LAYER_FIELDS])
    return tuple(out)


cdef Py_ssize_t _n_layers(cnp.ndarray stats) except -1:
    _f64(stats, "stats", 2, -1, VG_N_STATS, 0)      # names what is wrong
    if cnp.PyArray_DIM(stats, 0) < 1:
        raise ValueError("stats: expected at least one layer's row, got none")
    return cnp.PyArray_DIM(stats, 0)


def derive_flow(cnp.ndarray stats not None, cnp.ndarray ps_mean_sq not None,
                cnp.ndarray widths not None, int64_t batch, bint stepped):
    """Every derived quantity of one step, in ``DERIVED`` order, as a flow keeps them: a
    read-only float64 array ``(L,)`` per per-layer field (views of one read-only buffer
    whose base offers no buffer, as read_only_view makes), then ``grad_ratio`` and
    ``delta_ratio`` as floats and the non-finite layers as 1-based ints or None.  ``stats``
    is the step's ``(L, N_STATS)`` rows, ``ps_mean_sq`` ``(L,)``, ``widths`` ``(L,)``.  For
    a flow without a measurement set's buffer (derive_into)."""
    cdef Py_ssize_t L = _n_layers(stats)
    cdef cnp.npy_intp dims[1]
    dims[0] = VG_N_LAYER_FIELDS * L
    cdef cnp.ndarray fields = cnp.PyArray_SimpleNew(1, dims, cnp.NPY_FLOAT64)
    scalars = _derive_step(stats, ps_mean_sq, widths, batch, stepped,
                           <double *>cnp.PyArray_DATA(fields))
    flat = read_only_view(fields, VG_N_LAYER_FIELDS * L)
    return tuple([flat[f * L:(f + 1) * L] for f in range(VG_N_LAYER_FIELDS)]) + scalars


def derive_into(cnp.ndarray stats not None, cnp.ndarray ps_mean_sq not None,
                cnp.ndarray widths not None, int64_t batch, bint stepped,
                cnp.ndarray fields not None):
    """derive_flow into a buffer made beforehand (a measurement set's, whose read-only views
    the flow is given): the per-layer fields into ``fields`` (float64, ``N_LAYER_FIELDS * L``,
    writable, field after field), and the scalars returned.  No allocation: right after a
    step NumPy's allocation takes ten microseconds, its code having left the caches."""
    cdef Py_ssize_t L = _n_layers(stats)
    cdef double *fo = <double *>_f64(fields, "fields", 1, VG_N_LAYER_FIELDS * L, 0, 0)
    if not cnp.PyArray_ISWRITEABLE(fields):
        raise ValueError("fields: expected a writable array, got a read-only one")
    return _derive_step(stats, ps_mean_sq, widths, batch, stepped, fo)


cdef const int64_t *_i64_column(object a, str name, Py_ssize_t n, Py_ssize_t *step) except NULL:
    """The data of a 1-D native int64 array of n values whose stride is a whole number of
    items (a recorder's column), and that stride in items."""
    if (not isinstance(a, cnp.ndarray) or cnp.PyArray_NDIM(<cnp.ndarray>a) != 1
            or cnp.PyArray_TYPE(<cnp.ndarray>a) != cnp.NPY_INT64
            or not cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>a)
            or cnp.PyArray_DIM(<cnp.ndarray>a, 0) != n
            or cnp.PyArray_STRIDE(<cnp.ndarray>a, 0) % 8 != 0):
        got = (f"{a.dtype} shape {a.shape} strides {a.strides}"
               if isinstance(a, cnp.ndarray) else type(a).__name__)
        raise ValueError(f"{name}: expected a 1-D int64 array of {n} values (one per step) "
                         f"whose stride is a multiple of 8 bytes, got {got}")
    step[0] = cnp.PyArray_STRIDE(<cnp.ndarray>a, 0) // 8
    return <const int64_t *>cnp.PyArray_DATA(<cnp.ndarray>a)


def derive_rows(int field, cnp.ndarray stats not None, cnp.ndarray ps_mean_sq not None,
                cnp.ndarray widths not None, batch, stepped, cnp.ndarray out not None):
    """Derived quantity ``field`` (an index of ``DERIVED``) of R steps into ``out``: ``(R, L)``
    for a per-layer field, ``(R,)`` for a scalar.  ``stats`` ``(R, L, N_STATS)``,
    ``ps_mean_sq`` ``(R, L)``, ``widths`` ``(L,)``, ``batch`` and ``stepped`` ``(R,)`` int64
    (any stride of whole items: a recorder's columns)."""
    if field < 0 or field >= VG_N_FIELDS:
        raise ValueError(f"field: expected an index of DERIVED (0 to {VG_N_FIELDS - 1}), got "
                         f"{field}")
    cdef const double *st = _f64(stats, "stats", 3, -1, -1, VG_N_STATS)
    cdef Py_ssize_t R = cnp.PyArray_DIM(stats, 0), L = cnp.PyArray_DIM(stats, 1)
    cdef const double *ps = _f64(ps_mean_sq, "ps_mean_sq", 2, R, L, 0)
    cdef const double *w = _f64(widths, "widths", 1, L, 0, 0)
    if L < 1:
        raise ValueError("stats: expected at least one layer's row per step, got none")
    cdef Py_ssize_t bstep, sstep
    cdef const int64_t *b = _i64_column(batch, "batch", R, &bstep)
    cdef const int64_t *sp = _i64_column(stepped, "stepped", R, &sstep)
    cdef double *o
    if field < VG_N_LAYER_FIELDS:
        o = <double *>_f64(out, "out", 2, R, L, 0)
    else:
        o = <double *>_f64(out, "out", 1, R, 0, 0)
    if not cnp.PyArray_ISWRITEABLE(out):
        raise ValueError("out: expected a writable array, got a read-only one")
    cdef int bad
    with nogil:
        bad = vg_derive(field, R, L, st, ps, w, b, bstep, sp, sstep, o)
    if bad:
        raise RuntimeError("vgcore._engine: a derived field without its formula in "
                           "src/vg_derive.h; add it (and rebuild)")
