# Included by _engine.pyx (one compiled module, its directives and cimports): the network
# description (NetDesc) and the plain passes: forward, backward, the measured norms and updates.

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
    void *wt                    # scratch: a transposed weight matrix, the largest layer's size
    void *wt_all                # or (when not NULL) every layer's, W_l^T at w_off[l] (batch
    bint wt_have                # chunks on one thread); wt_have: already made by a chunk before
    # workspace for one batch size
    long batch                  # rows this pass computes
    long ws_batch               # rows of the bound workspace (the layers' blocks are ws_batch x width)
    long row0                   # first of them this pass computes (a batch chunk: see Chunks)
    bint own_all                # every product through vgcore's own kernel (batch chunks)
    bint accum_grads            # add this pass's dW and db to grads instead of writing them
    void *dbs                   # then: scratch for db (the widest layer)
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
    """Offset of layer l's block (ws_batch x sizes[l+1]) in the H, A and D workspaces, at the
    pass's first row."""
    return n.cum_width[l] * n.ws_batch + n.row0 * n.sizes[l + 1]


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
    cdef long off
    cdef int l, fin, fout
    cdef int batch = <int>n.batch
    cdef double t0 = 0, t1 = 0
    cdef unsigned fp
    for l in range(n.n_layers):
        fin = <int>n.sizes[l]
        fout = <int>n.sizes[l + 1]
        off = ws_offset(n, l)
        h = H + off
        if n.timing != NULL:
            t0 = vg_now()
        linear_forward(x, P + n.w_off[l], h, batch, fin, fout, n.own_all)
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


cdef inline void row_norms2(long rows, long cols, floating *x, double *out,
                            bint known_zero=False) noexcept nogil:
    if floating is float:
        vg_row_norms2_f32(rows, cols, x, out, known_zero)
    else:
        vg_row_norms2_f64(rows, cols, x, out, known_zero)


cdef inline bint delta_known_zero(const NetDesc *n, int l) noexcept nogil:
    """Whether every delta of hidden layer l is 0 because none came from the hidden layer above
    (its measured sum of squares, taken in this pass, is 0, and vgcore's kernel wrote those
    deltas flushed: all exactly 0): a plain network (no skip path around the layer), flushing.
    Not below the output layer, whose delta is dout, which the kernels here did not write
    (MLP.backward and the batch chunks' loss hand it over flushed; kept out on principle).  Spares
    the kernels a second look at sums of squares that float32 cannot hold (vg_sq_small) in the
    vanished layers of a deep stack."""
    return (n.flush and not n.extras and l < n.n_layers - 2
            and n.stats[(l + 1) * VG_N_STATS + VG_ST_SUM_D2] == 0)


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
    cdef floating *db = <floating *>n.dbs if n.accum_grads else G + n.b_off[l]
    cdef floating *gb
    cdef unsigned fp
    cdef long j
    if not n.measure:
        fp = vg_fp_pause(n.flush, n.fp_caller)          # may run threads: see vg_fp_pause
        if l == n.n_layers - 1:
            colsum(batch, fout, dout, db, nthreads)
        else:
            act_backward(n.kinds[l], n.act_params[l], batch, fout, <floating *>n.H + off,
                         <floating *>n.A + off, <floating *>n.D + off, db,
                         nthreads, n.tiny)
        vg_fp_resume(n.flush, fp)
    elif l == n.n_layers - 1:
        if floating is float:
            vg_colsum_stats_f32(batch, fout, dout, db, st, acc)
        else:
            vg_colsum_stats_f64(batch, fout, dout, db, st, acc)
    elif floating is float:
        vg_act_backward_stats_f32(n.kinds[l], <float>n.act_params[l], <float>n.sat_thr[l],
                                  batch, fout, <float *>n.H + off, <float *>n.A + off,
                                  <float *>n.D + off, db, st, zc, acc,
                                  acc + fout, acc + 2 * fout, delta_known_zero(n, l),
                                  <float>n.tiny)
    else:
        vg_act_backward_stats_f64(n.kinds[l], n.act_params[l], n.sat_thr[l], batch, fout,
                                  <double *>n.H + off, <double *>n.A + off,
                                  <double *>n.D + off, db, st, zc, acc,
                                  acc + fout, acc + 2 * fout, delta_known_zero(n, l), n.tiny)
    if n.accum_grads:
        gb = G + n.b_off[l]
        for j in range(fout):
            gb[j] = gb[j] + db[j]


cdef inline void weight_grad(const NetDesc *n, int l, floating *X, floating *dout) noexcept nogil:
    """dW_l = x_l^T delta_l, x_l the layer's input."""
    cdef floating *x = X if l == 0 else layer_out(n, l - 1, <floating *>n.H, <floating *>n.A)
    linear_grad_w(x, layer_delta(n, l, dout), <floating *>n.grads + n.w_off[l], <int>n.batch,
                  <int>n.sizes[l], <int>n.sizes[l + 1], n.own_all, n.accum_grads)


cdef inline void input_grad(const NetDesc *n, int l, floating *dout, bint want_dx) noexcept nogil:
    """dL/d(input of layer l) = delta_l W_l^T, into D_{l-1} (or dX for the first layer)."""
    cdef floating *dst
    cdef floating *wt = <floating *>n.wt
    cdef bint fresh = True
    if l > 0:
        dst = <floating *>n.D + ws_offset(n, l - 1)
    elif want_dx:
        dst = <floating *>n.dX
    else:
        return
    if n.wt_all != NULL:                    # W_l^T kept per layer (batch chunks, one thread)
        wt = <floating *>n.wt_all + n.w_off[l]
        fresh = not n.wt_have
    linear_grad_x(layer_delta(n, l, dout), <floating *>n.params + n.w_off[l], dst,
                  <int>n.batch, <int>n.sizes[l], <int>n.sizes[l + 1], wt, n.own_all, fresh)


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


# How an optimiser step updates the parameters (net_update; the batch chunks' training pass
# folds it into its own region: see net_step_chunked).
DEF UPD_NONE = -2               # no optimiser step (the chunks' training pass)
DEF UPD_PLAIN_SGD = -1          # p -= lr g (vg_sgd, or vg_sgd_norms when measuring)
# train_pass's `update` argument besides the OPTIMIZERS ids
UPDATE_NONE = UPD_NONE
UPDATE_PLAIN_SGD = UPD_PLAIN_SGD


cdef struct UpdateSpec:
    int kind                    # UPD_PLAIN_SGD, or a VG_OPT_* id (vg_opt_update)
    double lr                   # the plain step's learning rate
    const double *hp            # the VG_HP_* slots (vg_opt_update)
    void *s1                    # the optimiser's state buffers, like params (vg_opt_update)
    void *s2
    double *stats               # per-layer norms (n_layers x VG_N_STATS): W and b before the
                                # step, dW, db and the update of W; NULL: plain SGD, unmeasured
    bint flush                  # plain unmeasured SGD: under FTZ/DAZ (vg_sgd sets them)


cdef inline void plain_update(UpdateSpec *u, double lr, double *stats,
                              bint flush) noexcept nogil:
    """The plain SGD step: norms into stats, or none (stats NULL: vg_sgd, flushing when asked)."""
    u.kind = UPD_PLAIN_SGD
    u.lr = lr
    u.hp = NULL
    u.s1 = NULL
    u.s2 = NULL
    u.stats = stats
    u.flush = flush


cdef void opt_spec(UpdateSpec *u, int kind, cnp.ndarray state1, cnp.ndarray state2,
                   cnp.ndarray hp, cnp.ndarray stats):
    """A vg_opt_update step (arrays checked by the Python layer)."""
    u.kind = kind
    u.lr = 0
    u.hp = <const double *>cnp.PyArray_DATA(hp)
    u.s1 = cnp.PyArray_DATA(state1)
    u.s2 = cnp.PyArray_DATA(state2)
    u.stats = <double *>cnp.PyArray_DATA(stats)
    u.flush = False


cdef void layer_update(const NetDesc *n, const UpdateSpec *u, int l, floating *P,
                       floating *G) noexcept nogil:
    """Layer l's share of one optimiser step: its W, b (and gamma, beta), each block in one
    pass that also takes its norms (into u.stats when not NULL)."""
    cdef long nw = n.sizes[l] * n.sizes[l + 1]
    cdef long nb = n.sizes[l + 1]
    cdef long offs[3]
    cdef long lens[3]
    cdef int nblk = 2, k
    cdef double out[3]
    cdef double *st = u.stats + l * VG_N_STATS if u.stats != NULL else NULL
    cdef floating *S1 = <floating *>u.s1
    cdef floating *S2 = <floating *>u.s2
    offs[0] = n.w_off[l]
    lens[0] = nw
    offs[1] = n.b_off[l]
    lens[1] = nb
    if n.extras and n.g_off[l] >= 0:         # gamma and beta, contiguous
        offs[2] = n.g_off[l]
        lens[2] = 2 * nb
        nblk = 3
    for k in range(nblk):
        if u.kind == UPD_PLAIN_SGD and st == NULL:
            if floating is float:
                vg_sgd_f32(0, lens[k], <float>u.lr, P + offs[k], G + offs[k], u.flush)
            else:
                vg_sgd_f64(0, lens[k], u.lr, P + offs[k], G + offs[k], u.flush)
            continue
        if u.kind == UPD_PLAIN_SGD:
            if floating is float:
                vg_sgd_norms_f32(lens[k], <float>u.lr, P + offs[k], G + offs[k], out)
            else:
                vg_sgd_norms_f64(lens[k], u.lr, P + offs[k], G + offs[k], out)
        elif floating is float:
            vg_opt_update_f32(u.kind, lens[k], P + offs[k], G + offs[k], S1 + offs[k],
                              S2 + offs[k], u.hp, out)
        else:
            vg_opt_update_f64(u.kind, lens[k], P + offs[k], G + offs[k], S1 + offs[k],
                              S2 + offs[k], u.hp, out)
        if k == 0:
            st[VG_ST_W2] = out[0]
            st[VG_ST_DW2] = out[1]
            st[VG_ST_UW2] = out[2]
        elif k == 1:
            st[VG_ST_B2] = out[0]
            st[VG_ST_DB2] = out[1]


cdef void net_update(const NetDesc *n, const UpdateSpec *u, floating *P,
                     floating *G) noexcept nogil:
    """One optimiser step over every layer (the caller sets FTZ/DAZ when flushing)."""
    cdef int l
    for l in range(n.n_layers):
        layer_update(n, u, l, P, G)


cdef inline void sample_norms(const NetDesc *n, int l, floating *x,
                              floating *delta) noexcept nogil:
    """The per-sample measurements of layer l, in the measured backward pass while x and delta
    are in cache: the squared row norms of its input and of its delta, and the mean over the
    batch of the per-sample gradients' squared norms (B ||x_i|| ||delta_i||)^2."""
    if n.in_norm2 == NULL:
        return
    cdef long rows = n.batch
    cdef long b = n.ws_batch            # the whole batch (a chunk computes rows of it)
    cdef long i
    cdef double *xn = n.in_norm2 + l * b + n.row0
    cdef double *dn = n.delta_norm2 + l * b + n.row0
    cdef double bb = <double>(b * b)
    cdef double s = 0
    row_norms2(rows, n.sizes[l], x, xn)
    # the deltas' own measured sum of squares is 0 (taken again where float32 could not hold
    # it): every delta is 0, no row's sum needs a second look
    row_norms2(rows, n.sizes[l + 1], delta, dn,
               n.flush and not n.extras and n.stats[l * VG_N_STATS + VG_ST_SUM_D2] == 0)
    for i in range(rows):
        s += bb * xn[i] * dn[i]
    n.ps_mean_sq[l] = s / <double>b     # a chunk's share: the chunks' shares are added
