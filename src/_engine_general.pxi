# Included by _engine.pyx (one compiled module, its directives and cimports): the general
# passes (batch and layer normalisation, residual blocks, dropout).

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
        linear_forward(x, P + n.w_off[l], h, batch, fin, fout, False)
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
        linear_grad_w(x, delta, G + n.w_off[l], batch, fin, fout, False)
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
                                  acc + 2 * cols, False, <float>n.tiny)
    else:
        vg_act_backward_stats_f64(n.kinds[l], n.act_params[l], n.sat_thr[l], rows, cols,
                                  pre, a, delta, db, st, zc, acc, acc + cols, acc + 2 * cols,
                                  False, n.tiny)


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
