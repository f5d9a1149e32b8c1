# ------------------------------------------------------------------------------------------
# The gradient-flow fields derived from measurement rows (src/vg_derive.h): all of a step's
# in one call for a flow, one field over many steps for a recorder's history.
# ------------------------------------------------------------------------------------------

cdef extern from "vg_derive.h" nogil:
    int VG_N_FIELDS, VG_N_LAYER_FIELDS, VG_FLD_GRAD_RATIO, VG_FLD_DELTA_RATIO
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


cdef const double *_f64(cnp.ndarray a, str name, int ndim, Py_ssize_t d0, Py_ssize_t d1,
                        Py_ssize_t d2) except NULL:
    """a's data, once a is a C-contiguous native float64 array of the shape given (a -1
    takes any size)."""
    cdef Py_ssize_t want[3]
    cdef int k
    want[0] = d0
    want[1] = d1
    want[2] = d2
    ok = (cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT64 and cnp.PyArray_ISNOTSWAPPED(a)
          and cnp.PyArray_IS_C_CONTIGUOUS(a) and cnp.PyArray_NDIM(a) == ndim)
    for k in range(ndim if ok else 0):
        ok = ok and (want[k] < 0 or cnp.PyArray_DIM(a, k) == want[k])
    if not ok:
        shape = []
        for k in range(ndim):
            shape.append("any" if want[k] < 0 else want[k])
        arr = <object>a
        raise ValueError(f"{name}: expected a C-contiguous float64 array of shape "
                         f"{tuple(shape)}, got {arr.dtype} "
                         f"{'contiguous' if arr.flags.c_contiguous else 'strided'} shape "
                         f"{arr.shape}")
    return <const double *>cnp.PyArray_DATA(a)


cdef tuple _derive_step(cnp.ndarray stats, cnp.ndarray ps_mean_sq, cnp.ndarray widths,
                        int64_t batch, bint stepped, double *fo):
    """Every derived quantity of one step: the per-layer fields into fo (field after field, L
    values each), and the scalars returned as a flow keeps them."""
    cdef Py_ssize_t L = cnp.PyArray_DIM(stats, 0) if cnp.PyArray_NDIM(stats) == 2 else -1
    cdef const double *st = _f64(stats, "stats", 2, L, VG_N_STATS, 0)
    cdef const double *ps = _f64(ps_mean_sq, "ps_mean_sq", 1, L, 0, 0)
    cdef const double *w = _f64(widths, "widths", 1, L, 0, 0)
    cdef double sc[8]
    cdef int64_t step = stepped
    cdef int f
    for f in range(VG_N_LAYER_FIELDS):
        vg_derive(f, 1, L, st, ps, w, &batch, 0, &step, 0, fo + f * L)
    for f in range(VG_N_LAYER_FIELDS, VG_N_FIELDS):
        vg_derive(f, 1, L, st, ps, w, &batch, 0, &step, 0, &sc[f - VG_N_LAYER_FIELDS])
    out = []
    for f in range(VG_N_LAYER_FIELDS, VG_N_FIELDS):
        if f == VG_FLD_GRAD_RATIO or f == VG_FLD_DELTA_RATIO:
            out.append(sc[f - VG_N_LAYER_FIELDS])
        else:
            out.append(int(sc[f - VG_N_LAYER_FIELDS]) or None)
    return tuple(out)


cdef Py_ssize_t _n_layers(cnp.ndarray stats) except -1:
    if cnp.PyArray_NDIM(stats) != 2 or cnp.PyArray_DIM(stats, 0) < 1:
        _f64(stats, "stats", 2, -1, VG_N_STATS, 0)      # names what is wrong
        raise ValueError("stats: expected at least one layer's row, got none")
    return cnp.PyArray_DIM(stats, 0)


def derive_flow(cnp.ndarray stats, cnp.ndarray ps_mean_sq, cnp.ndarray widths, int64_t batch,
                bint stepped):
    """Every derived quantity of one step, in ``DERIVED`` order, as a flow keeps them: a
    read-only float64 array ``(L,)`` per per-layer field (views of one read-only buffer),
    then ``grad_ratio`` and ``delta_ratio`` as floats and the non-finite layers as 1-based
    ints or None.  ``stats`` is the step's ``(L, N_STATS)`` rows, ``ps_mean_sq`` ``(L,)``,
    ``widths`` ``(L,)``.  For a flow without a measurement set's buffer (derive_into)."""
    cdef Py_ssize_t L = _n_layers(stats)
    cdef cnp.npy_intp dims[1]
    dims[0] = VG_N_LAYER_FIELDS * L
    cdef cnp.ndarray fields = cnp.PyArray_SimpleNew(1, dims, cnp.NPY_FLOAT64)
    cdef double *fo = <double *>cnp.PyArray_DATA(fields)
    scalars = _derive_step(stats, ps_mean_sq, widths, batch, stepped, fo)
    cnp.PyArray_CLEARFLAGS(fields, cnp.NPY_ARRAY_WRITEABLE)
    out = []
    cdef int f
    cdef cnp.ndarray row
    dims[0] = L
    for f in range(VG_N_LAYER_FIELDS):
        row = cnp.PyArray_SimpleNewFromData(1, dims, cnp.NPY_FLOAT64, fo + f * L)
        cnp.Py_INCREF(fields)       # the reference PyArray_SetBaseObject steals
        cnp.PyArray_SetBaseObject(row, fields)
        cnp.PyArray_CLEARFLAGS(row, cnp.NPY_ARRAY_WRITEABLE)
        out.append(row)
    return tuple(out) + scalars


def derive_into(cnp.ndarray stats, cnp.ndarray ps_mean_sq, cnp.ndarray widths, int64_t batch,
                bint stepped, cnp.ndarray fields):
    """derive_flow into a buffer made beforehand (a measurement set's, whose read-only views
    the flow is given): the per-layer fields into ``fields`` (float64, ``N_LAYER_FIELDS * L``,
    writable, field after field), and the scalars returned.  No allocation: right after a
    step NumPy's allocation takes ten microseconds, its code having left the caches."""
    cdef Py_ssize_t L = _n_layers(stats)
    cdef double *fo = <double *>_f64(fields, "fields", 1, VG_N_LAYER_FIELDS * L, 0, 0)
    if not cnp.PyArray_ISWRITEABLE(fields):
        raise ValueError("fields: expected a writable array, got a read-only one")
    return _derive_step(stats, ps_mean_sq, widths, batch, stepped, fo)


def derive_rows(int field, cnp.ndarray stats, cnp.ndarray ps_mean_sq, cnp.ndarray widths,
                const int64_t[:] batch, const int64_t[:] stepped, cnp.ndarray out):
    """Derived quantity ``field`` (an index of ``DERIVED``) of R steps into ``out``: ``(R, L)``
    for a per-layer field, ``(R,)`` for a scalar.  ``stats`` ``(R, L, N_STATS)``,
    ``ps_mean_sq`` ``(R, L)``, ``widths`` ``(L,)``, ``batch`` and ``stepped`` ``(R,)`` int64
    (any stride: a recorder's columns)."""
    if field < 0 or field >= VG_N_FIELDS:
        raise ValueError(f"field: expected an index of DERIVED (0 to {VG_N_FIELDS - 1}), got "
                         f"{field}")
    cdef Py_ssize_t R = cnp.PyArray_DIM(stats, 0) if cnp.PyArray_NDIM(stats) == 3 else -1
    cdef Py_ssize_t L = cnp.PyArray_DIM(stats, 1) if cnp.PyArray_NDIM(stats) == 3 else -1
    cdef const double *st = _f64(stats, "stats", 3, R, L, VG_N_STATS)
    cdef const double *ps = _f64(ps_mean_sq, "ps_mean_sq", 2, R, L, 0)
    cdef const double *w = _f64(widths, "widths", 1, L, 0, 0)
    if L < 1:
        raise ValueError("stats: expected at least one layer's row per step, got none")
    if batch.shape[0] != R or stepped.shape[0] != R:
        raise ValueError(f"batch, stepped: expected {R} values each (one per step), got "
                         f"{batch.shape[0]} and {stepped.shape[0]}")
    cdef double *o
    if field < VG_N_LAYER_FIELDS:
        o = <double *>_f64(out, "out", 2, R, L, 0)
    else:
        o = <double *>_f64(out, "out", 1, R, 0, 0)
    if not cnp.PyArray_ISWRITEABLE(out):
        raise ValueError("out: expected a writable array, got a read-only one")
    if R == 0:
        return
    with nogil:
        vg_derive(field, R, L, st, ps, w, &batch[0], batch.strides[0] // 8, &stepped[0],
                  stepped.strides[0] // 8, o)
