# Included by _engine.pyx after _engine_chunks.pxi: the batch chunks' passes on one thread,
# layer by layer.
#
# On one thread the chunks exist only so that results do not depend on the thread count: the
# sums over the batch (dW, db and the measurements) must be the sums of the chunks' sums.
# Running each chunk's whole pass after the other also halves the rows of every product, and a
# 32-row product runs 8-10% slower in vgcore's kernel than a 64-row one.  Here the passes run
# layer by layer instead: the forward and input-gradient products, whose rows do not depend on
# each other, once over the whole batch; the elementwise passes (with their column sums and
# measurements) and the weight gradients once per chunk, into the chunk's own rows of the
# measurements and in the same order as chunk after chunk (the first writes dW and db, the
# next adds to them).  vgcore's kernel sums each element of a product in the same order
# whatever the number of rows, so the bits are those of each chunk's whole pass run on its
# own, which is what two threads run.

cdef void forward_layers_one(const NetDesc *n, const Chunks *ch, floating *X) noexcept nogil:
    """The forward pass of every chunk, layer by layer (see above)."""
    cdef NetDesc d[VG_CHUNKS]
    cdef floating *P = <floating *>n.params
    cdef floating *H = <floating *>n.H
    cdef floating *A = <floating *>n.A
    cdef floating *x = X
    cdef long off, offc
    cdef int l, c, fin, fout
    cdef unsigned fp, fp2
    for c in range(VG_CHUNKS):
        chunk_bufs(n, ch, c, &d[c], X)
    fp = vg_fp_enter(n.flush)
    for l in range(n.n_layers):
        fin = <int>n.sizes[l]
        fout = <int>n.sizes[l + 1]
        off = ws_offset(n, l)
        linear_forward(x, P + n.w_off[l], H + off, <int>n.batch, fin, fout, True)
        for c in range(VG_CHUNKS):
            offc = ws_offset(&d[c], l)
            if n.measure:
                act_forward_stats(n.kinds[l], n.act_params[l], d[c].batch, fout, H + offc,
                                  P + n.b_off[l], A + offc, d[c].stats + l * VG_N_STATS,
                                  <floating *>d[c].acc, n.tiny)
            else:
                fp2 = vg_fp_pause(n.flush, n.fp_caller)
                act_forward(n.kinds[l], n.act_params[l], d[c].batch, fout, H + offc,
                            P + n.b_off[l], A + offc, 1, n.tiny)
                vg_fp_resume(n.flush, fp2)
        x = H + off if n.kinds[l] == VG_IDENTITY else A + off
    vg_fp_leave(n.flush, fp)


cdef void backward_layers_one(const NetDesc *n, const Chunks *ch, floating *X, floating *dout,
                              bint want_dx) noexcept nogil:
    """The backward pass of every chunk, layer by layer (see above); dout is the whole
    batch's."""
    cdef NetDesc d[VG_CHUNKS]
    cdef floating *doutc[VG_CHUNKS]
    cdef floating *Xc[VG_CHUNKS]
    cdef floating *dst
    cdef int l, c
    cdef int L = n.n_layers
    cdef unsigned fp
    for c in range(VG_CHUNKS):
        chunk_bufs(n, ch, c, &d[c], X, True)
        doutc[c] = dout + d[c].row0 * n.sizes[L]
        Xc[c] = X + d[c].row0 * n.sizes[0]
    fp = vg_fp_enter(n.flush)
    for l in range(L - 1, -1, -1):
        for c in range(VG_CHUNKS):
            delta_and_bias_grad(&d[c], l, doutc[c], 1)
            if n.measure:
                sample_norms(&d[c], l, Xc[c] if l == 0 else
                             layer_out(&d[c], l - 1, <floating *>n.H, <floating *>n.A),
                             layer_delta(&d[c], l, doutc[c]))
        for c in range(VG_CHUNKS):
            weight_grad(&d[c], l, Xc[c], doutc[c])
        if l > 0:
            dst = <floating *>n.D + ws_offset(n, l - 1)
        elif want_dx:
            dst = <floating *>n.dX
        else:
            continue
        linear_grad_x(layer_delta(n, l, dout), <floating *>n.params + n.w_off[l], dst,
                      <int>n.batch, <int>n.sizes[l], <int>n.sizes[l + 1],
                      <floating *>ch.wt_all + n.w_off[l], True, True)
    vg_fp_leave(n.flush, fp)


cdef void step_layers_one(const NetDesc *n, const Chunks *ch, floating *X,
                          LossSpec *ls) noexcept nogil:
    """step_chunk for every chunk on one thread, layer by layer: the forward passes, each
    chunk's loss rows, then the backward passes when every chunk's output was finite.  When one
    was not, the chunks that were finite run their backward pass as step_chunk would (the
    gradients are then incomplete and the caller raises)."""
    cdef NetDesc d[VG_CHUNKS]
    cdef int c
    cdef int L = n.n_layers
    cdef long C = n.sizes[L]
    cdef floating *g = <floating *>ls.dout
    cdef unsigned fp
    for c in range(VG_CHUNKS):
        chunk_bufs(n, ch, c, &d[c], X, True)
    forward_layers_one(n, ch, X)
    for c in range(VG_CHUNKS):
        chunk_loss(&d[c], ls, c, n.batch, X)
    if all_chunks_finite(ls):
        backward_layers_one(n, ch, X, g, False)
        for c in range(VG_CHUNKS):
            ls.sums[c] = measured_sum(&d[c])
        return
    for c in range(VG_CHUNKS):
        if not ls.finite[c]:
            continue
        if d[c].wt_have and not ls.finite[0]:
            d[c].wt_have = False        # the first chunk did not make W^T
        fp = vg_fp_enter(n.flush)
        net_backward(&d[c], X + d[c].row0 * n.sizes[0], g + d[c].row0 * C, False, 1)
        vg_fp_leave(n.flush, fp)
        ls.sums[c] = measured_sum(&d[c])
