# Included by _engine.pyx (one compiled module, its directives and cimports): the plain passes
# of a narrow network split into batch chunks, one per thread, each running every layer.
#
# A narrow layer's products take microseconds: splitting each of them over two threads would
# cost a wake-up and a barrier per product (hundreds a step), and a thread the scheduler takes
# away would stall every one of them.  Instead the batch is cut into VG_CHUNKS row blocks and
# each runs the whole forward (or backward) pass through all layers on its own, through
# vgcore's own kernel (no BLAS call from a worker thread).  Chunks are handed out dynamically,
# one parallel region per pass.  Each chunk after the first has its own gradient buffer,
# measurement row, per-unit zero counts, column-sum scratch and transposed-weight scratch; they
# are added to the first chunk's (the network's own) in chunk order when the pass ends.
#
# The number of chunks does not depend on the thread count: one thread runs the chunks too,
# layer by layer (_engine_chunks_one.pxi), so results are bit-identical across thread counts.
# When a chunk's output is not finite, the others' backward passes run chunk after chunk: there
# the first keeps each layer's transposed W (Chunks.wt_all) and the next reads it.  They differ
# from the
# unchunked pass only in the order of the sums over the batch (dW, db and the measurements are
# the sum of two half-batch sums), within the tolerances the tests hold against the reference.

DEF VG_CHUNKS = 2
# at least this many rows in each chunk; smaller batches run unchunked
DEF VG_CHUNK_MIN_ROWS = 8
# and at least this much work for each chunk (multiply-adds of its products in one pass,
# float64 counted twice): waking a waiting thread costs tens of microseconds, about what a
# chunk of less does (deep-narrow-2, 100 x 32 at batch 32: 1.6 M, slower chunked on 2 cores)
DEF VG_CHUNK_MIN_MNK_DEFAULT = 4000000.0
# the gradient buffers are added in blocks of this many elements
DEF VG_MERGE_BLOCK = 16384

cdef bint _batch_chunks = True
cdef double _chunk_min_mnk = VG_CHUNK_MIN_MNK_DEFAULT


def set_batch_chunks(bint on, min_mnk=None):
    """Split narrow networks' passes into batch chunks (the default) or not (for comparison);
    min_mnk: the least work per chunk (None: the default; tests use 0)."""
    global _batch_chunks, _chunk_min_mnk
    _batch_chunks = on
    _chunk_min_mnk = VG_CHUNK_MIN_MNK_DEFAULT if min_mnk is None else float(min_mnk)


def batch_chunks_info():
    return {"on": bool(_batch_chunks), "chunks": VG_CHUNKS, "min_rows": VG_CHUNK_MIN_ROWS,
            "min_mnk": _chunk_min_mnk, "default_min_mnk": VG_CHUNK_MIN_MNK_DEFAULT}


cdef struct Chunks:
    # the private buffers of chunks 1 .. VG_CHUNKS - 1, each one after the other
    void *grads                 # n_params each
    long n_params
    double *stats               # n_layers x VG_N_STATS each
    double *ps                  # n_layers each (like ps_mean_sq: the chunk's share)
    void *zc                    # n_units each (like unit_zero)
    long n_units
    void *acc                   # acc_len each (like acc)
    long acc_len
    void *wt                    # wt_len each (like wt)
    long wt_len
    void *dbs                   # the widest layer's worth: db scratch of a chunk that adds its
                                # gradients to the network's (one thread: see backward_chunk)
    void *wt_all                # n_params: every layer's transposed W, made by the first chunk
                                # and read by the others when one thread runs them in order


cdef bint chunked(const NetDesc *n, bint f32) noexcept nogil:
    """Whether this pass runs in batch chunks: a plain network (no normalisation, residual or
    dropout), no profiling, vgcore's kernel available, enough rows and enough work per chunk,
    and every product of a chunk small enough for the kernel.  Nothing here depends on the
    thread count (results must not either)."""
    cdef long rows = (n.batch + VG_CHUNKS - 1) // VG_CHUNKS
    cdef int l
    cdef double mnk, work = 0
    if (not _batch_chunks or n.extras or n.timing != NULL or vg_gemm_isa == VG_GEMM_NONE
            or n.batch < VG_CHUNKS * VG_CHUNK_MIN_ROWS):
        return False
    for l in range(n.n_layers):
        mnk = <double>rows * n.sizes[l] * n.sizes[l + 1] * (1 if f32 else 2)
        if mnk > VG_GEMM_MAX_MNK:
            return False
        work += mnk
    return work >= _chunk_min_mnk


cdef inline floating *chunk_private(void *base, long count, int c,
                                    floating *dtype_of) noexcept nogil:
    """Chunk c's slice of a private buffer (`dtype_of` only selects the element type)."""
    return <floating *>base + (c - 1) * count


cdef void chunk_bufs(const NetDesc *n, const Chunks *ch, int c, NetDesc *d,
                     floating *dtype_of, bint shared_grads=False) noexcept nogil:
    """Chunk c's description: rows [r0, r1) of the batch, its own buffers after the first
    (`dtype_of` only selects the element type)."""
    cdef long r0 = n.batch * c // VG_CHUNKS
    cdef long r1 = n.batch * (c + 1) // VG_CHUNKS
    d[0] = n[0]
    d.batch = r1 - r0
    d.row0 = r0
    d.own_all = True
    d.timing = NULL
    if shared_grads:            # one thread, the chunks in order: transpose each W once a pass
        d.wt_all = ch.wt_all
        d.wt_have = c > 0
    if c > 0:
        d.ps_mean_sq = ch.ps + (c - 1) * n.n_layers
        if shared_grads:
            d.accum_grads = True
            d.dbs = ch.dbs
        else:
            d.grads = chunk_private(ch.grads, ch.n_params, c, dtype_of)
        d.stats = ch.stats + (c - 1) * n.n_layers * VG_N_STATS
        d.unit_zero = chunk_private(ch.zc, ch.n_units, c, dtype_of)
        d.acc = chunk_private(ch.acc, ch.acc_len, c, dtype_of)
        d.wt = chunk_private(ch.wt, ch.wt_len, c, dtype_of)


cdef void forward_chunk(const NetDesc *n, const Chunks *ch, floating *X, int c) noexcept nogil:
    cdef NetDesc d
    chunk_bufs(n, ch, c, &d, X)
    cdef unsigned fp = vg_fp_enter(n.flush)
    net_forward(&d, X + d.row0 * n.sizes[0], 1)
    vg_fp_leave(n.flush, fp)


cdef void backward_chunk(const NetDesc *n, const Chunks *ch, floating *X, floating *dout,
                         bint want_dx, int c) noexcept nogil:
    """Chunk c's backward pass, into its own gradient buffer (a worker thread's)."""
    cdef NetDesc d
    chunk_bufs(n, ch, c, &d, X)
    if want_dx:
        d.dX = <floating *>n.dX + d.row0 * n.sizes[0]
    cdef unsigned fp = vg_fp_enter(n.flush)
    net_backward(&d, X + d.row0 * n.sizes[0], dout + d.row0 * n.sizes[n.n_layers], want_dx, 1)
    vg_fp_leave(n.flush, fp)


cdef void net_forward_chunked(const NetDesc *n, const Chunks *ch, floating *X,
                              int nthreads) noexcept nogil:
    cdef int c
    cdef unsigned fp = vg_fp_pause(n.flush, n.fp_caller)     # see vg_fp_pause
    if nthreads > 1:
        for c in prange(VG_CHUNKS, schedule='dynamic', chunksize=1,
                        num_threads=min(nthreads, VG_CHUNKS)):
            forward_chunk(n, ch, X, c)
    else:
        forward_layers_one(n, ch, X)
    vg_fp_resume(n.flush, fp)
    merge_forward_stats(n, ch)


cdef void merge_forward_stats(const NetDesc *n, const Chunks *ch) noexcept nogil:
    """The forward measurements of the chunks after the first, added to the first's."""
    cdef int l, k
    cdef double *st
    cdef double *sc
    if not n.measure:
        return
    for l in range(n.n_layers):
        st = n.stats + l * VG_N_STATS
        for k in range(1, VG_CHUNKS):
            sc = ch.stats + ((k - 1) * n.n_layers + l) * VG_N_STATS
            st[VG_ST_SUM_H2] += sc[VG_ST_SUM_H2]
            st[VG_ST_SUM_A] += sc[VG_ST_SUM_A]
            st[VG_ST_SUM_A2] += sc[VG_ST_SUM_A2]


cdef void add_into(long count, floating *dst, const floating *src) noexcept nogil:
    cdef long i
    for i in range(count):
        dst[i] = dst[i] + src[i]


cdef void merge_block(const NetDesc *n, const Chunks *ch, long blk,
                      floating *dtype_of) noexcept nogil:
    cdef long lo = blk * VG_MERGE_BLOCK
    cdef int k
    cdef unsigned fp = vg_fp_enter(n.flush)
    for k in range(1, VG_CHUNKS):
        add_into(min(VG_MERGE_BLOCK, ch.n_params - lo), <floating *>n.grads + lo,
                 chunk_private(ch.grads, ch.n_params, k, dtype_of) + lo)
    vg_fp_leave(n.flush, fp)


cdef void net_backward_chunked(const NetDesc *n, const Chunks *ch, floating *X, floating *dout,
                               bint want_dx, int nthreads) noexcept nogil:
    cdef int c
    cdef long nblk = (ch.n_params + VG_MERGE_BLOCK - 1) // VG_MERGE_BLOCK
    cdef long blk
    cdef unsigned fp = vg_fp_pause(n.flush, n.fp_caller)
    if nthreads > 1:
        with parallel(num_threads=min(nthreads, VG_CHUNKS)):
            for c in prange(VG_CHUNKS, schedule='dynamic', chunksize=1):
                backward_chunk(n, ch, X, dout, want_dx, c)
            # (every chunk done) the gradients: the first chunk's buffer is the network's own;
            # add the others to it, in blocks handed out as the threads come free, flushing as
            # the chunks' own additions do on one thread
            for blk in prange(nblk, schedule='dynamic', chunksize=1):
                merge_block(n, ch, blk, X)
    else:
        backward_layers_one(n, ch, X, dout, want_dx)
    vg_fp_resume(n.flush, fp)
    merge_backward_stats(n, ch, X)


cdef void merge_backward_stats(const NetDesc *n, const Chunks *ch,
                               floating *dtype_of) noexcept nogil:
    """The backward measurements of the chunks after the first, added to the first's (dead
    units counted again from the summed per-unit zero counts)."""
    cdef int l, k
    cdef long j, u, w, dead
    cdef double *st
    cdef double *sc
    cdef floating *zc
    cdef floating all_rows = <floating>n.batch
    if not n.measure:
        return
    for l in range(n.n_layers):
        st = n.stats + l * VG_N_STATS
        for k in range(1, VG_CHUNKS):
            if n.in_norm2 != NULL:
                n.ps_mean_sq[l] += ch.ps[(k - 1) * n.n_layers + l]
            sc = ch.stats + ((k - 1) * n.n_layers + l) * VG_N_STATS
            st[VG_ST_SUM_D2] += sc[VG_ST_SUM_D2]
            st[VG_ST_N_SAT] += sc[VG_ST_N_SAT]
            st[VG_ST_N_ZERO] += sc[VG_ST_N_ZERO]
            st[VG_ST_N_UNDERFLOW] += sc[VG_ST_N_UNDERFLOW]
        if l == n.n_layers - 1:
            continue                    # the linear output layer: no zero counts, no dead units
        # per-unit zero counts add up; a unit is dead when its count is the whole batch
        u = n.cum_width[l]
        w = n.sizes[l + 1]
        zc = <floating *>n.unit_zero + u
        for k in range(1, VG_CHUNKS):
            add_into(w, zc, chunk_private(ch.zc, ch.n_units, k, dtype_of) + u)
        dead = 0
        for j in range(w):
            if zc[j] == all_rows:
                dead += 1
        st[VG_ST_N_DEAD] = <double>dead


# ------------------------------------------------------------------------------------------
# A whole training pass in one region: forward, the loss rows, backward, per chunk
# ------------------------------------------------------------------------------------------
#
# The losses are means over the batch whose gradient rows depend only on their own rows, so
# each chunk computes its rows' loss gradient (scaled by the whole batch) and goes straight on
# to its backward pass: one parallel region a step instead of two, and no Python between the
# passes.  The gradients are those of the separate calls, bit for bit; the loss value is the sum
# of the chunks' shares of the mean (equal within rounding).

DEF LOSS_XENT = 0
DEF LOSS_MSE = 1
DEF LOSS_BCE = 2
# the ids by the names of vgcore.losses.LOSSES (vgcore/core/_updates.py maps them at import)
STEP_LOSSES = {"cross_entropy": LOSS_XENT, "mse": LOSS_MSE, "binary_cross_entropy": LOSS_BCE}


cdef struct LossSpec:
    int kind
    const int64_t *y            # labels (cross-entropy)
    void *t                     # targets, batch x outputs (mse, binary cross-entropy)
    void *dout                  # where the loss gradient goes, batch x outputs
    double part[VG_CHUNKS]      # each chunk's share of the loss
    int finite[VG_CHUNKS]       # whether each chunk's output was finite
    double sums[VG_CHUNKS]      # its measured sums of h^2 and delta^2 over every layer (0
                                # unmeasured): finite when its passes were (measured_sum)
    bint updated                # whether the optimiser's step ran (net_step_chunked)


cdef bint chunk_loss(const NetDesc *d, LossSpec *ls, int c, long n_all,
                     floating *dtype_of) noexcept nogil:
    """Chunk c's loss rows after its forward pass (d: its description; n_all: the whole
    batch's rows, which the loss is a mean over; `dtype_of` only selects the element type):
    whether its output is
    finite (ls.finite), its share of the loss (ls.part) and its rows of the loss gradient,
    flushed when flushing, as MLP.backward reads dout.  Runs in the caller's floating-point
    state, as the loss calls do."""
    cdef int L = d.n_layers
    cdef long C = d.sizes[L]
    cdef long r0 = d.row0
    cdef long rows = d.batch
    cdef floating *g = <floating *>ls.dout + r0 * C
    cdef floating *out = layer_out(d, L - 1, <floating *>d.H, <floating *>d.A)
    cdef floating *t = <floating *>ls.t + r0 * C if ls.t != NULL else NULL
    cdef int ok
    cdef double part = 0
    if floating is float:
        ok = vg_all_finite_f32(rows * C, out)
    else:
        ok = vg_all_finite_f64(rows * C, out)
    ls.finite[c] = ok
    ls.sums[c] = 0
    if not ok:
        ls.part[c] = 0
        return False
    if ls.kind == LOSS_XENT:
        if floating is float:
            part = vg_softmax_xent_f32(rows, C, out, ls.y + r0, g, n_all)
        else:
            part = vg_softmax_xent_f64(rows, C, out, ls.y + r0, g, n_all)
    elif ls.kind == LOSS_MSE:
        if floating is float:
            part = vg_mse_f32(rows, C, out, t, g, n_all)
        else:
            part = vg_mse_f64(rows, C, out, t, g, n_all)
    else:
        if floating is float:
            part = vg_bce_logits_f32(rows, C, out, t, g, n_all)
        else:
            part = vg_bce_logits_f64(rows, C, out, t, g, n_all)
    ls.part[c] = part
    if d.flush:
        if floating is float:
            vg_flush_subnormals_f32(rows * C, g, g)
        else:
            vg_flush_subnormals_f64(rows * C, g, g)
    return True


cdef void step_chunk(const NetDesc *n, const Chunks *ch, floating *X, LossSpec *ls,
                     int c) noexcept nogil:
    """Chunk c's forward pass, loss rows and backward pass (a worker thread's)."""
    cdef NetDesc d
    chunk_bufs(n, ch, c, &d, X)
    cdef unsigned fp = vg_fp_enter(n.flush)
    net_forward(&d, X + d.row0 * n.sizes[0], 1)
    vg_fp_leave(n.flush, fp)
    if not chunk_loss(&d, ls, c, n.batch, X):
        return
    fp = vg_fp_enter(n.flush)
    net_backward(&d, X + d.row0 * n.sizes[0], <floating *>ls.dout + d.row0 * n.sizes[n.n_layers],
                 False, 1)
    vg_fp_leave(n.flush, fp)
    ls.sums[c] = measured_sum(&d)


cdef double measured_sum(const NetDesc *d) noexcept nogil:
    """The sum over a pass's layers of its measured sums of squared pre-activations and
    errors (0 when not measuring): MLP.nonfinite() finds NaN or Inf in the passes when the
    network's total of them (every chunk's added) is not finite."""
    cdef double s = 0
    cdef int l
    if not d.measure:
        return 0
    for l in range(d.n_layers):
        s += d.stats[l * VG_N_STATS + VG_ST_SUM_H2] + d.stats[l * VG_N_STATS + VG_ST_SUM_D2]
    return s


cdef inline bint all_chunks_finite(const LossSpec *ls) noexcept nogil:
    cdef int c
    for c in range(VG_CHUNKS):
        if not ls.finite[c]:
            return False
    return True


cdef inline bint may_update(const LossSpec *ls, const UpdateSpec *u) noexcept nogil:
    """An optimiser step is given, every chunk's output was finite and (measuring) the total
    of their measured sums is: the test MLP.nonfinite() makes on the added measurements."""
    cdef int c
    cdef double s = 0
    if u == NULL:
        return False
    for c in range(VG_CHUNKS):
        if not ls.finite[c]:
            return False
        s += ls.sums[c]
    return isfinite(s)


cdef void merge_update_layer(const NetDesc *n, const Chunks *ch, int l, const LossSpec *ls,
                             const UpdateSpec *u, floating *dtype_of) noexcept nogil:
    """Layer l after every chunk's pass: the other chunks' dW and db added to the network's,
    then (u not NULL, everything finite) the optimiser's step of the layer, while its
    gradient is in this core's cache."""
    cdef floating *G = <floating *>n.grads
    cdef long off, cnt
    cdef int k, part
    cdef unsigned fp = vg_fp_enter(n.flush)
    for part in range(2):
        off = n.w_off[l] if part == 0 else n.b_off[l]
        cnt = n.sizes[l] * n.sizes[l + 1] if part == 0 else n.sizes[l + 1]
        for k in range(1, VG_CHUNKS):
            add_into(cnt, G + off, chunk_private(ch.grads, ch.n_params, k, dtype_of) + off)
    if may_update(ls, u):
        layer_update(n, u, l, <floating *>n.params, G)
    vg_fp_leave(n.flush, fp)


cdef void net_step_chunked(const NetDesc *n, const Chunks *ch, floating *X, LossSpec *ls,
                           const UpdateSpec *u, int nthreads) noexcept nogil:
    """Forward, loss and backward of every chunk (see above), then, when u is not NULL, the
    optimiser's step in the same region: layer by layer, each thread adds the chunks' gradients
    of a layer and updates it (the step a separate call would make, bit for bit; after a
    two-thread pass a separate call would find half of the gradients and every parameter in
    the other core's cache: 77 against 26 us on deep-narrow).  The step runs only when every
    chunk's forward and (measured) backward pass was finite: otherwise the parameters stay as
    they were and ls.updated is False.  When a chunk's output is not finite it stops there; the
    gradients are then not complete (the caller raises), but the forward measurements are added
    up, so that the layer can be named."""
    cdef int c
    cdef long item
    # what the threads share out after the chunks: layers when stepping (a layer's update
    # takes its norms in one pass), else blocks of the gradients (even shares)
    cdef long n_items = n.n_layers if u != NULL else (
        (ch.n_params + VG_MERGE_BLOCK - 1) // VG_MERGE_BLOCK)
    cdef unsigned fp = vg_fp_pause(n.flush, n.fp_caller)
    cdef unsigned fp2
    if nthreads > 1:
        with parallel(num_threads=min(nthreads, VG_CHUNKS)):
            for c in prange(VG_CHUNKS, schedule='dynamic', chunksize=1):
                step_chunk(n, ch, X, ls, c)
            for item in prange(n_items, schedule='dynamic', chunksize=1):
                if not all_chunks_finite(ls):
                    pass
                elif u != NULL:
                    merge_update_layer(n, ch, <int>item, ls, u, X)
                else:
                    merge_block(n, ch, item, X)
    else:
        step_layers_one(n, ch, X, ls)
        if may_update(ls, u):
            fp2 = vg_fp_enter(n.flush)
            net_update(n, u, <floating *>n.params, <floating *>n.grads)
            vg_fp_leave(n.flush, fp2)
    vg_fp_resume(n.flush, fp)
    ls.updated = may_update(ls, u)
    merge_forward_stats(n, ch)
    if all_chunks_finite(ls):
        merge_backward_stats(n, ch, X)
