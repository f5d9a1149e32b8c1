# Included by _engine.pyx (one compiled module, its directives and cimports): the Engine class,
# one network's compiled description and its pass and update methods.

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
    cdef object _meas          # the measurements' thresholds and accumulators
    cdef object _sets          # the measurement rows and per-unit counts they write
    cdef object _layers        # the normalisation / residual / dropout settings
    cdef object _ws_extra      # the general passes' workspace
    cdef object _timing        # the profiling array, when set
    cdef object _sn            # the per-sample measurement arrays of the bound batch size
    cdef vg_blas_choice blas_fwd   # which BLAS thread count has been faster, per direction
    cdef vg_blas_choice blas_bwd
    cdef Chunks chunks             # the batch chunks' private buffers (_engine_chunks.pxi)
    cdef vg_blas_choice chunk_fwd  # whether two threads or one have run the chunks faster
    cdef vg_blas_choice chunk_bwd
    cdef vg_blas_choice chunk_step
    cdef object _chunk_keep        # their arrays, allocated at the first chunked pass

    def __cinit__(self, cnp.ndarray sizes, cnp.ndarray kinds, cnp.ndarray act_params,
                  cnp.ndarray w_off, cnp.ndarray b_off, cnp.ndarray params,
                  cnp.ndarray grads):
        cum_width = np.concatenate(([0], np.cumsum(sizes[1:-1]))).astype(np.int64)
        fans = np.asarray(sizes)
        wt = np.empty(int(np.max(fans[:fans.shape[0] - 1] * fans[1:])), dtype=params.dtype)
        self._keep = (sizes, kinds, act_params, w_off, b_off, params, grads, cum_width, wt)
        self.desc.wt = cnp.PyArray_DATA(wt)
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
        self._sets = None
        self.desc.stats = NULL
        self.desc.unit_zero = NULL
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
        vg_blas_choice_init(&self.blas_fwd)
        vg_blas_choice_init(&self.blas_bwd)
        vg_blas_choice_init(&self.chunk_fwd)
        vg_blas_choice_init(&self.chunk_bwd)
        vg_blas_choice_init(&self.chunk_step)
        self._chunk_keep = None

    cdef bint _chunked(self):
        """Whether the next pass runs in batch chunks; allocates their buffers the first time."""
        if not chunked(&self.desc, self.is_f32):
            return False
        if self._chunk_keep is None:
            sizes, grads, wt = self._keep[0], self._keep[6], self._keep[8]
            k = VG_CHUNKS - 1
            dt = grads.dtype
            g = np.zeros(k * grads.size, dt)
            st = np.zeros(k * self.desc.n_layers * VG_N_STATS, np.float64)
            zc = np.zeros(k * int(np.sum(sizes[1:])), dt)
            acc = np.zeros(k * 3 * int(np.max(sizes[1:])), dt)
            w = np.zeros(k * wt.size, dt)
            ps = np.zeros(k * self.desc.n_layers, np.float64)
            dbs = np.zeros(int(np.max(sizes[1:])), dt)
            wt_all = np.zeros(grads.size, dt)
            self._chunk_keep = (g, st, zc, acc, w, ps, dbs, wt_all)
            self.chunks.wt_all = cnp.PyArray_DATA(wt_all)
            self.chunks.dbs = cnp.PyArray_DATA(dbs)
            self.chunks.ps = <double *>cnp.PyArray_DATA(ps)
            self.chunks.grads = cnp.PyArray_DATA(g)
            self.chunks.n_params = grads.size
            self.chunks.stats = <double *>cnp.PyArray_DATA(st)
            self.chunks.zc = cnp.PyArray_DATA(zc)
            self.chunks.n_units = int(np.sum(sizes[1:]))
            self.chunks.acc = cnp.PyArray_DATA(acc)
            self.chunks.acc_len = 3 * int(np.max(sizes[1:]))
            self.chunks.wt = cnp.PyArray_DATA(w)
            self.chunks.wt_len = wt.size
        return True

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

    def set_measurement(self, bint on, cnp.ndarray sat_thr=None, cnp.ndarray acc=None):
        """Switch the measurements on (with the per-network thresholds and accumulators they
        use) or off.  Where they go is bind_measurements'."""
        if on:
            self._meas = (sat_thr, acc)
            self.desc.sat_thr = <const double *>cnp.PyArray_DATA(sat_thr)
            self.desc.acc = cnp.PyArray_DATA(acc)
        self.desc.measure = on

    cdef bint _bad_measurements(self, cnp.ndarray stats, cnp.ndarray unit_zero,
                                cnp.ndarray in_norm2, cnp.ndarray delta_norm2,
                                cnp.ndarray ps_mean_sq):
        """Whether the arrays are not what bind_measurements takes (checked in C)."""
        cdef int L = self.desc.n_layers
        cdef cnp.ndarray a
        if (cnp.PyArray_TYPE(stats) != cnp.NPY_DOUBLE or cnp.PyArray_NDIM(stats) != 2
                or not cnp.PyArray_IS_C_CONTIGUOUS(stats) or cnp.PyArray_DIM(stats, 0) != L
                or cnp.PyArray_DIM(stats, 1) != VG_N_STATS
                or cnp.PyArray_NDIM(unit_zero) != 1 or not cnp.PyArray_IS_C_CONTIGUOUS(unit_zero)
                or cnp.PyArray_ITEMSIZE(unit_zero) != (4 if self.is_f32 else 8)
                or cnp.PyArray_DIM(unit_zero, 0) < self.desc.cum_width[L - 1]):
            return True
        if in_norm2 is None:
            return delta_norm2 is not None or ps_mean_sq is not None
        if delta_norm2 is None or ps_mean_sq is None:
            return True
        for a in (in_norm2, delta_norm2):
            if (cnp.PyArray_TYPE(a) != cnp.NPY_DOUBLE or cnp.PyArray_NDIM(a) != 2
                    or not cnp.PyArray_IS_C_CONTIGUOUS(a) or cnp.PyArray_DIM(a, 0) != L
                    or cnp.PyArray_DIM(a, 1) != self.desc.batch):
                return True
        return (cnp.PyArray_TYPE(ps_mean_sq) != cnp.NPY_DOUBLE
                or cnp.PyArray_NDIM(ps_mean_sq) != 1
                or not cnp.PyArray_IS_C_CONTIGUOUS(ps_mean_sq)
                or cnp.PyArray_DIM(ps_mean_sq, 0) != L)

    cdef void _point_at(self, cnp.ndarray stats, cnp.ndarray unit_zero, cnp.ndarray in_norm2,
                        cnp.ndarray delta_norm2, cnp.ndarray ps_mean_sq):
        self._sets = (stats, unit_zero)
        self.desc.stats = <double *>cnp.PyArray_DATA(stats)
        self.desc.unit_zero = cnp.PyArray_DATA(unit_zero)
        if in_norm2 is None:
            self._sn = None
            self.desc.in_norm2 = NULL
            self.desc.delta_norm2 = NULL
            self.desc.ps_mean_sq = NULL
        else:
            self._sn = (in_norm2, delta_norm2, ps_mean_sq)
            self.desc.in_norm2 = <double *>cnp.PyArray_DATA(in_norm2)
            self.desc.delta_norm2 = <double *>cnp.PyArray_DATA(delta_norm2)
            self.desc.ps_mean_sq = <double *>cnp.PyArray_DATA(ps_mean_sq)

    def bind_measurements(self, cnp.ndarray stats, cnp.ndarray unit_zero,
                          cnp.ndarray in_norm2=None, cnp.ndarray delta_norm2=None,
                          cnp.ndarray ps_mean_sq=None):
        """Where the measured passes write: the per-layer rows stats (float64, n_layers x
        N_STATS), the per-unit counts unit_zero (the network's dtype, at least one per hidden
        unit) and, for the bound batch size, the per-sample measurements (float64,
        (n_layers, batch) twice and (n_layers,); None before a batch size is bound).  All
        contiguous."""
        cdef int L = self.desc.n_layers
        if self._bad_measurements(stats, unit_zero, in_norm2, delta_norm2, ps_mean_sq):
            raise ValueError(f"bind_measurements: expected contiguous arrays: float64 "
                             f"({L}, {VG_N_STATS}); the network's dtype (at least "
                             f"{self.desc.cum_width[L - 1]},); and None or float64 "
                             f"{(L, self.desc.batch)} twice and ({L},)")
        self._point_at(stats, unit_zero, in_norm2, delta_norm2, ps_mean_sq)

    def writable_set(self, list sets, bint keep, object new=None):
        """Before a measured pass writes the measurement set sets[0] (a workspace's sets, as
        vgcore.core._measure_sets.MeasureSets keeps them: arrays stats, unit_zero, in_norm2,
        delta_norm2, ps_mean_sq, and objs and free_refs, the objects a flow's arrays keep
        alive and the sum of their reference counts when nothing else does).

        Without ``new``: None when no flow holds sets[0].  Otherwise the first later set no
        flow holds moves to the front, gets sets[0]'s contents when keep, is bound (as
        bind_measurements) and is returned; False when every set is held.  With ``new`` (a
        set the caller made after False): new goes to the front (with sets[0]'s contents
        when keep), the list keeps at most three sets, and new is bound and returned.  The
        list and the binding change together, in C: an interrupt cannot leave them apart."""
        cdef object cur = sets[0], s = new
        cdef Py_ssize_t i, n = len(sets)
        cdef cnp.ndarray a, b
        if new is None:
            if _refsum(<tuple?>cur.objs) == cur.free_refs:
                return None
            for i in range(1, n):
                if _refsum(<tuple?>sets[i].objs) == sets[i].free_refs:
                    s = sets[i]
                    break
            else:
                return False
        if self._bad_measurements(s.stats, s.unit_zero, s.in_norm2, s.delta_norm2,
                                  s.ps_mean_sq):
            raise ValueError("writable_set: a set's arrays are not what bind_measurements "
                             "takes")
        if keep:
            pairs = ((s.stats, cur.stats), (s.unit_zero, cur.unit_zero),
                     (s.in_norm2, cur.in_norm2), (s.delta_norm2, cur.delta_norm2),
                     (s.ps_mean_sq, cur.ps_mean_sq))
            for a, b in pairs:              # every size checked before anything is copied
                if cnp.PyArray_NBYTES(a) != cnp.PyArray_NBYTES(b):
                    raise ValueError("writable_set: the sets differ in size")
            for a, b in pairs:
                memmove(cnp.PyArray_DATA(a), cnp.PyArray_DATA(b), cnp.PyArray_NBYTES(a))
        if new is None:
            sets.remove(s)
        sets.insert(0, s)
        del sets[3:]
        self._point_at(s.stats, s.unit_zero, s.in_norm2, s.delta_norm2, s.ps_mean_sq)
        return s

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
        cdef UpdateSpec u
        plain_update(&u, lr, self.desc.stats, False)
        self._update(&u)

    def opt_update(self, int kind, cnp.ndarray state1, cnp.ndarray state2, cnp.ndarray hp,
                   cnp.ndarray stats):
        """One optimiser step over the flat buffers: kind and the slots of hp as OPTIMIZERS and
        HYPERPARAMETERS name them (src/vg_contract.h); state1/state2 are like params
        (momentum, squares); per-layer norms into stats."""
        cdef UpdateSpec u
        opt_spec(&u, kind, state1, state2, hp, stats)
        self._update(&u)

    cdef void _update(self, const UpdateSpec *u):
        cdef unsigned fp
        with nogil:
            fp = vg_fp_enter(self.desc.flush)
            if self.is_f32:
                net_update(&self.desc, u, <float *>self.desc.params, <float *>self.desc.grads)
            else:
                net_update(&self.desc, u, <double *>self.desc.params,
                           <double *>self.desc.grads)
            vg_fp_leave(self.desc.flush, fp)

    def set_timing(self, cnp.ndarray timing=None):
        """Accumulate per-layer seconds into timing (float64, 4 per layer), or stop (None)."""
        self._timing = timing
        self.desc.timing = NULL if timing is None else <double *>cnp.PyArray_DATA(timing)

    def bind(self, long batch, cnp.ndarray H, cnp.ndarray A, cnp.ndarray D, cnp.ndarray dX):
        """Point the engine at a workspace for ``batch`` rows (arrays from ``MLP``)."""
        self._ws = (H, A, D, dX)
        self.desc.batch = batch
        self.desc.ws_batch = batch
        self.desc.row0 = 0
        self.desc.own_all = False
        self.desc.accum_grads = False
        self.desc.H = cnp.PyArray_DATA(H)
        self.desc.A = cnp.PyArray_DATA(A)
        self.desc.D = cnp.PyArray_DATA(D)
        self.desc.dX = cnp.PyArray_DATA(dX)
        self._sn = None             # sized for the previous batch: bind_measurements again
        self.desc.in_norm2 = NULL
        self.desc.delta_norm2 = NULL
        self.desc.ps_mean_sq = NULL

    def forward(self, cnp.ndarray X):
        """Run every layer on X (batch x sizes[0], the bound batch size); no allocation."""
        cdef void *x = cnp.PyArray_DATA(X)
        cdef int nt = _n_threads
        cdef unsigned fp
        cdef int mode
        cdef double t0
        cdef bint ch = self._chunked()
        cdef bint adapt = ch and nt > 1 and vg_blas_adapt
        cdef int one = 0
        with nogil:
            fp = vg_fp_enter(self.desc.flush)     # the caller's MXCSR, put back below
            self.desc.fp_caller = fp
            mode = vg_blas_pass_begin(&self.blas_fwd)
            if adapt:
                one = vg_choice_pick(&self.chunk_fwd)
            t0 = vg_now()
            if ch and self.is_f32:
                net_forward_chunked(&self.desc, &self.chunks, <float *>x, 1 if one else nt)
            elif ch:
                net_forward_chunked(&self.desc, &self.chunks, <double *>x, 1 if one else nt)
            elif self.is_f32:
                net_forward(&self.desc, <float *>x, nt)
            else:
                net_forward(&self.desc, <double *>x, nt)
            if adapt:
                vg_choice_learn(&self.chunk_fwd, one, (vg_now() - t0) / self.desc.batch)
            vg_blas_pass_end(&self.blas_fwd, mode, vg_now() - t0)
            vg_fp_leave(self.desc.flush, fp)

    def backward(self, cnp.ndarray X, cnp.ndarray dout, bint want_dx):
        """Backpropagate dout (batch x sizes[-1]); fills the gradient buffer (and dX)."""
        cdef void *x = cnp.PyArray_DATA(X)
        cdef void *g = cnp.PyArray_DATA(dout)
        cdef int nt = _n_threads
        cdef unsigned fp
        cdef int mode
        cdef double t0
        cdef bint ch = self._chunked()
        cdef bint adapt = ch and nt > 1 and vg_blas_adapt
        cdef int one = 0
        with nogil:
            fp = vg_fp_enter(self.desc.flush)
            self.desc.fp_caller = fp
            mode = vg_blas_pass_begin(&self.blas_bwd)
            if adapt:
                one = vg_choice_pick(&self.chunk_bwd)
            t0 = vg_now()
            if ch and self.is_f32:
                net_backward_chunked(&self.desc, &self.chunks, <float *>x, <float *>g, want_dx,
                                     1 if one else nt)
            elif ch:
                net_backward_chunked(&self.desc, &self.chunks, <double *>x, <double *>g,
                                     want_dx, 1 if one else nt)
            elif self.is_f32:
                net_backward(&self.desc, <float *>x, <float *>g, want_dx, nt)
            else:
                net_backward(&self.desc, <double *>x, <double *>g, want_dx, nt)
            if adapt:
                vg_choice_learn(&self.chunk_bwd, one, (vg_now() - t0) / self.desc.batch)
            vg_blas_pass_end(&self.blas_bwd, mode, vg_now() - t0)
            vg_fp_leave(self.desc.flush, fp)

    def blas_choice(self):
        """Per pass direction: the passes that had products above the small-product limit,
        whether one BLAS thread has been the faster mode for them, and the moving averages of
        seconds per multiply-add in either mode (None: not measured yet)."""
        return {"forward": _choice_dict(&self.blas_fwd),
                "backward": _choice_dict(&self.blas_bwd)}

    def can_step(self):
        """Whether train_pass can run now: the network's passes run in batch chunks at the
        bound batch size."""
        return self._chunked()

    def train_pass(self, cnp.ndarray X, int loss, cnp.ndarray labels, cnp.ndarray targets,
                   cnp.ndarray dout, int update=UPD_NONE, double lr=0.0, cnp.ndarray hp=None,
                   cnp.ndarray state1=None, cnp.ndarray state2=None, cnp.ndarray stats=None):
        """Forward, loss and backward in one call (only when can_step()): loss 0 softmax
        cross-entropy (int64 labels), 1 mean squared error, 2 binary cross-entropy on logits
        (targets batch x outputs, the network's dtype); dout (batch x outputs) takes the loss
        gradient.  update: UPD_NONE (no optimiser step), UPD_PLAIN_SGD (params -= lr grads,
        norms into the measurement array when measuring) or an OPTIMIZERS id (hp, state1,
        state2 and stats as opt_update takes them, checked by the caller): the step runs in
        the same call when the passes were finite.  Returns (loss, finite, updated): finite
        False when the output was not (the gradients are then incomplete)."""
        cdef LossSpec ls
        cdef UpdateSpec u
        cdef UpdateSpec *up = NULL
        cdef void *x = cnp.PyArray_DATA(X)
        cdef int nt = _n_threads
        cdef bint adapt = nt > 1 and vg_blas_adapt
        cdef int one = 0
        cdef unsigned fp
        cdef double t0
        ls.kind = loss
        ls.y = <const int64_t *>cnp.PyArray_DATA(labels) if labels is not None else NULL
        ls.t = cnp.PyArray_DATA(targets) if targets is not None else NULL
        ls.dout = cnp.PyArray_DATA(dout)
        if update == UPD_PLAIN_SGD:
            plain_update(&u, lr, self.desc.stats if self.desc.measure else NULL,
                         self.desc.flush)
            up = &u
        elif update != UPD_NONE:
            if not 0 <= update < VG_N_OPTIMIZERS or hp is None or state1 is None or (
                    state2 is None or stats is None):
                raise ValueError(f"update: expected an optimiser id below {VG_N_OPTIMIZERS} "
                                 f"with hp, state1, state2 and stats, got {update}")
            opt_spec(&u, update, state1, state2, hp, stats)
            up = &u
        with nogil:
            fp = vg_fp_enter(self.desc.flush)
            self.desc.fp_caller = fp
            if adapt:
                one = vg_choice_pick(&self.chunk_step)
            t0 = vg_now()
            if self.is_f32:
                net_step_chunked(&self.desc, &self.chunks, <float *>x, &ls, up, 1 if one else nt)
            else:
                net_step_chunked(&self.desc, &self.chunks, <double *>x, &ls, up,
                                 1 if one else nt)
            if adapt:
                vg_choice_learn(&self.chunk_step, one, (vg_now() - t0) / self.desc.batch)
            vg_fp_leave(self.desc.flush, fp)
        return (sum(ls.part[c] for c in range(VG_CHUNKS)), all_chunks_finite(&ls),
                bool(ls.updated))

    def chunk_choice(self):
        """The same for the batch chunks' passes at two threads or more: passes measured,
        whether one thread (both chunks, layer by layer) has been faster, and the moving
        averages of seconds per row in either mode."""
        return {"forward": _choice_dict(&self.chunk_fwd, "seconds_per_row"),
                "backward": _choice_dict(&self.chunk_bwd, "seconds_per_row"),
                "step": _choice_dict(&self.chunk_step, "seconds_per_row")}
