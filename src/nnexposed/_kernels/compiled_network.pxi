# The Python-facing entry points: CompiledNetwork and activate_inplace check their arguments
# once, then release the GIL for the kernels. Included by core.pxi.

cdef inline bint is_behaved(object arr, int typenum):
    """A C-contiguous, aligned, native-order ndarray of the given type."""
    return (cnp.PyArray_Check(arr)
            and cnp.PyArray_TYPE(<cnp.ndarray>arr) == typenum
            and cnp.PyArray_ISCARRAY_RO(<cnp.ndarray>arr)
            and cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>arr))


cdef inline bint is_feature_major_batch(object arr, int typenum, Py_ssize_t n_in):
    """A Fortran-contiguous, aligned, native-order ndarray of the given type and shape
    (batch, n_in), batch >= MIN_TILED_BATCH and <= INT_MAX: the batched paths read its
    columns where they lie (network_forward)."""
    return (cnp.PyArray_Check(arr)
            and cnp.PyArray_TYPE(<cnp.ndarray>arr) == typenum
            and cnp.PyArray_NDIM(<cnp.ndarray>arr) == 2
            and cnp.PyArray_DIM(<cnp.ndarray>arr, 1) == n_in
            and MIN_TILED_BATCH <= cnp.PyArray_DIM(<cnp.ndarray>arr, 0) <= INT_MAX
            and cnp.PyArray_ISFARRAY_RO(<cnp.ndarray>arr)
            and cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>arr))


cdef inline bint overlaps(cnp.ndarray a, cnp.ndarray b):
    cdef char* a0 = cnp.PyArray_BYTES(a)
    cdef char* b0 = cnp.PyArray_BYTES(b)
    cdef Py_ssize_t a_len = cnp.PyArray_NBYTES(a)
    cdef Py_ssize_t b_len = cnp.PyArray_NBYTES(b)
    return a_len > 0 and b_len > 0 and a0 < b0 + b_len and b0 < a0 + a_len


cdef cnp.ndarray panels_of(cnp.ndarray weights):
    """weights: (n_out, n_in) -> (n_out // OUT_BLOCK, n_in, OUT_BLOCK), panel p holding
    weights[p * OUT_BLOCK:(p + 1) * OUT_BLOCK].T; 64-byte aligned, for whole-line loads."""
    cdef Py_ssize_t n_panels = weights.shape[0] // OUT_BLOCK
    cdef Py_ssize_t n_in = weights.shape[1]
    cdef Py_ssize_t size = n_panels * n_in * OUT_BLOCK
    cdef Py_ssize_t itemsize = weights.itemsize
    buffer = np.empty(size + 64 // itemsize, weights.dtype)
    start = (-buffer.ctypes.data) % 64 // itemsize
    panels = buffer[start:start + size].reshape(n_panels, n_in, OUT_BLOCK)
    blocks = weights[:n_panels * OUT_BLOCK].reshape(n_panels, OUT_BLOCK, n_in)
    panels[...] = blocks.transpose(0, 2, 1)
    return panels


cdef class CompiledNetwork:
    """The layers of a network as the kernels see them.

    Built by ``nnexposed.Network`` from validated arrays of one dtype; the arrays are kept
    alive here and never written to.
    """
    cdef LayerPlan* layers
    cdef Py_ssize_t n_layers
    cdef Py_ssize_t max_width
    cdef Py_ssize_t macs_per_sample
    # Every layer small enough for panels (panel_max_weights) keeps them, where it has
    # OUT_BLOCK neurons or more: one-sample forwards may share the layers among threads.
    cdef bint keeps_panels
    cdef int typenum
    cdef readonly Py_ssize_t n_in
    cdef readonly Py_ssize_t n_out
    cdef readonly object dtype
    cdef tuple arrays

    def __cinit__(self, weights, biases, activations, alphas, bint keep_panels=True,
                  kinds=None, eps=None):
        """weights[k]: (n_out, n_in) and biases[k]: (n_out,), C-contiguous float32 or float64
        (all the same dtype); activations[k]: index into ACTIVATION_NAMES; alphas[k]: float.
        keep_panels: also keep small layers' weights as panels (LayerPlan.panels) for faster
        one-sample forwards (worth it for a network used many times, not for a single call).
        kinds[k] (default all KIND_DENSE): KIND_LAYER_NORM makes layer k a layer
        normalisation with weight weights[k]: (n,), bias biases[k]: (n,) and epsilon eps[k].
        """
        cdef Py_ssize_t k, n_layers = len(weights)
        cdef cnp.ndarray w, b, layer_panels
        cdef long long settings[NNX_N_SETTINGS]
        read_settings(settings)
        panels = []
        if n_layers == 0:
            raise ValueError("a network needs at least one layer")
        if not (len(biases) == len(activations) == len(alphas) == n_layers):
            raise ValueError("weights, biases, activations and alphas differ in length")
        self.dtype = np.dtype(np.asarray(weights[0]).dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"expected float32 or float64 weights, got {self.dtype}")
        self.typenum = self.dtype.num
        self.arrays = tuple(weights) + tuple(biases)
        self.layers = <LayerPlan*>PyMem_RawMalloc(n_layers * sizeof(LayerPlan))
        if self.layers == NULL:
            raise MemoryError()
        self.n_layers = n_layers
        self.max_width = 0
        self.macs_per_sample = 0
        self.keeps_panels = keep_panels
        if kinds is not None and not (len(kinds) == len(eps) == n_layers):
            raise ValueError("kinds and eps must have one entry per layer")
        for k in range(n_layers):
            # The kernels trust these invariants, so they are checked here, not assumed.
            w = weights[k]
            b = biases[k]
            self.layers[k].kind = KIND_DENSE if kinds is None else kinds[k]
            self.layers[k].eps = 0.0 if kinds is None else eps[k]
            if self.layers[k].kind == KIND_LAYER_NORM:
                if not (is_behaved(w, self.typenum) and is_behaved(b, self.typenum)
                        and w.ndim == 1 and b.ndim == 1 and b.shape[0] == w.shape[0] > 0
                        and self.layers[k].eps >= 0):
                    raise ValueError(f"layer {k}: layer normalisation needs C-contiguous "
                                     f"{self.dtype} weight and bias of one shape (n,), "
                                     f"and eps >= 0")
                w = w.reshape(1, w.shape[0])          # as (n_out, n_in) = (1, n) below
            elif self.layers[k].kind != KIND_DENSE:
                raise ValueError(f"layer {k}: unknown layer kind {kinds[k]}")
            elif not (is_behaved(w, self.typenum) and is_behaved(b, self.typenum)
                      and w.ndim == 2 and b.ndim == 1 and b.shape[0] == w.shape[0]
                      and w.shape[0] > 0 and w.shape[1] > 0):
                raise ValueError(f"layer {k}: weights {np.shape(w)} / biases {np.shape(b)} are not "
                                 f"C-contiguous {self.dtype} arrays of shapes (n_out, n_in) "
                                 f"and (n_out,)")
            if k > 0 and w.shape[1] != self.layers[k - 1].n_out:
                raise ValueError(f"layer {k} expects {int(w.shape[1])} inputs but layer {k - 1} "
                                 f"gives {self.layers[k - 1].n_out}")
            if not 0 <= activations[k] < N_ACTIVATIONS:
                raise ValueError(f"layer {k}: unknown activation code {activations[k]}")
            self.layers[k].n_in = w.shape[1]
            self.layers[k].n_out = w.shape[0]
            self.layers[k].activation = activations[k]
            self.layers[k].alpha = alphas[k]
            self.layers[k].weights = cnp.PyArray_DATA(w)
            self.layers[k].biases = cnp.PyArray_DATA(b)
            self.layers[k].panels = NULL
            if self.layers[k].kind == KIND_LAYER_NORM:
                # n -> n. The one-sample forward that shares panels among threads has no
                # layer normalisation, so networks with one never take it.
                self.layers[k].n_out = w.shape[1]
                self.keeps_panels = False
                self.max_width = max(self.max_width, w.shape[1])
                self.macs_per_sample += 4 * w.shape[1]
                continue
            if w.shape[0] * w.shape[1] > settings[NNX_PANEL_MAX_WEIGHTS]:
                self.keeps_panels = False
            elif keep_panels and w.shape[0] >= OUT_BLOCK:
                layer_panels = panels_of(w)
                panels.append(layer_panels)
                self.layers[k].panels = cnp.PyArray_DATA(layer_panels)
            self.max_width = max(self.max_width, w.shape[0], w.shape[1])
            self.macs_per_sample += w.shape[0] * w.shape[1]
        self.arrays += tuple(panels)
        self.n_in = self.layers[0].n_in
        self.n_out = self.layers[n_layers - 1].n_out

    def __dealloc__(self):
        PyMem_RawFree(self.layers)

    def forward(self, x, out=None, int threads=0):
        """Run all layers on x: (n_in,) -> (n_out,) or (batch, n_in) -> (batch, n_out).

        ``threads`` <= 0 uses get_num_threads(); plan_forward chooses the kernels and how many
        threads they use. A batch in Fortran order (a pandas DataFrame's values, say) is read
        where it lies, as is one in C order; other layouts and dtypes are copied first.
        """
        cdef cnp.ndarray xa, oa
        cdef long long settings[NNX_N_SETTINGS]
        cdef ForwardPlan plan
        cdef cnp.npy_intp dims[2]
        cdef int ndim, status
        cdef long long started = 0
        cdef nnx_parallel_watch watch
        cdef Py_ssize_t batch, sample_step, feature_step
        if is_behaved(x, self.typenum) or is_feature_major_batch(x, self.typenum, self.n_in):
            xa = <cnp.ndarray>x
        else:
            xa = as_network_input(x, self.dtype, self.n_in)
        ndim = cnp.PyArray_NDIM(xa)
        if not (1 <= ndim <= 2 and cnp.PyArray_DIM(xa, ndim - 1) == self.n_in):
            xa = as_network_input(xa, self.dtype, self.n_in)  # raises with the details
        batch = 1 if ndim == 1 else cnp.PyArray_DIM(xa, 0)
        dims[0] = batch
        dims[ndim - 1] = self.n_out
        if out is None:
            oa = <cnp.ndarray>cnp.PyArray_EMPTY(ndim, dims, self.typenum, 0)
        else:
            if not (is_behaved(out, self.typenum) and cnp.PyArray_ISWRITEABLE(<cnp.ndarray>out)
                    and cnp.PyArray_NDIM(<cnp.ndarray>out) == ndim
                    and cnp.PyArray_DIM(<cnp.ndarray>out, 0) == dims[0]
                    and cnp.PyArray_DIM(<cnp.ndarray>out, ndim - 1) == dims[ndim - 1]):
                check_out(out, tuple([dims[i] for i in range(ndim)]), self.dtype)
                raise ValueError("out is not a writeable, C-contiguous array of the result's "
                                 "shape and dtype")
            oa = <cnp.ndarray>out
            if overlaps(xa, oa):
                xa = xa.copy()
        if batch == 0:
            return oa
        read_settings(settings)
        # SciPy's BLAS is looked up (once, with the GIL) for the first batch that may use it.
        plan = plan_forward(self.layers, self.n_layers, self.macs_per_sample, self.keeps_panels,
                            batch, threads, settings,
                            batch >= MIN_TILED_BATCH and blas_mode_allows(settings[NNX_BLAS])
                            and blas_block_cols(batch) >= settings[NNX_BLAS_MIN_BATCH]
                            and blas_found(),
                            settings_state)
        nnx_count(settings_state, plan.path)
        if not cnp.PyArray_ISCARRAY_RO(xa) and plan.sample_major and (
                self.layers[0].kind != KIND_DENSE):
            xa = np.ascontiguousarray(xa)    # layer normalisation reads sample-major rows
        if cnp.PyArray_ISCARRAY_RO(xa):
            sample_step, feature_step = self.n_in, 1
        else:
            sample_step, feature_step = 1, batch
        if plan.n_threads > 1:
            nnx_note_openmp_started(settings_state)
            started = nnx_now_ns()
        memset(&watch, 0, sizeof(watch))
        with nogil:
            if self.typenum == cnp.NPY_FLOAT32:
                status = network_forward(&plan, self.layers, self.n_layers, self.max_width,
                                         <const float*>cnp.PyArray_DATA(xa), sample_step,
                                         feature_step, <float*>cnp.PyArray_DATA(oa), batch,
                                         &watch)
            else:
                status = network_forward(&plan, self.layers, self.n_layers, self.max_width,
                                         <const double*>cnp.PyArray_DATA(xa), sample_step,
                                         feature_step, <double*>cnp.PyArray_DATA(oa), batch,
                                         &watch)
        give_back_threads(&plan, settings_state)
        if status != 0:
            raise MemoryError("no memory for the forward pass workspace")
        nnx_judge_forward(policy, started, &watch)
        if plan.may_share:
            nnx_set_last_shared_end(settings_state, nnx_now_ns())
        return oa

    def trace(self, x, int threads=0):
        """Run all layers on x, keeping every layer's values: a list of (pre-activation,
        output) array pairs, one per layer, each (batch, n_out of the layer), or (n_out,) for
        x of shape (n_in,). ``threads`` as for forward."""
        cdef void** pre
        cdef void** post
        cdef cnp.ndarray xa, pre_k, post_k
        cdef Py_ssize_t k, batch
        cdef int ndim, status, taken = 0
        cdef cnp.npy_intp dims[2]
        cdef long long settings[NNX_N_SETTINGS]
        if is_behaved(x, self.typenum) and cnp.PyArray_NDIM(<cnp.ndarray>x) in (1, 2) and (
                cnp.PyArray_DIM(<cnp.ndarray>x, cnp.PyArray_NDIM(<cnp.ndarray>x) - 1)
                == self.n_in):
            xa = <cnp.ndarray>x
        else:
            xa = as_network_input(x, self.dtype, self.n_in)
        ndim = cnp.PyArray_NDIM(xa)
        batch = 1 if ndim == 1 else cnp.PyArray_DIM(xa, 0)
        dims[0] = batch
        pairs = []
        pre = <void**>PyMem_RawMalloc(2 * self.n_layers * sizeof(void*))
        if pre == NULL:
            raise MemoryError()
        post = pre + self.n_layers
        for k in range(self.n_layers):
            dims[ndim - 1] = self.layers[k].n_out
            pre_k = <cnp.ndarray>cnp.PyArray_EMPTY(ndim, dims, self.typenum, 0)
            post_k = <cnp.ndarray>cnp.PyArray_EMPTY(ndim, dims, self.typenum, 0)
            pre[k] = cnp.PyArray_DATA(pre_k)
            post[k] = cnp.PyArray_DATA(post_k)
            pairs.append((pre_k, post_k))
        read_settings(settings)
        threads = nnx_threads_for_call(threads, settings, settings_state)
        if (batch * self.macs_per_sample < settings[NNX_PARALLEL_MIN_MACS]
                or threads > 1 and nnx_backing_off(policy)):
            threads = 1
        elif threads > 1:
            taken = threads = nnx_take_threads(settings_state, threads,
                                               nnx_threads_for_call(0, settings, settings_state))
            nnx_note_openmp_started(settings_state)
        with nogil:
            if self.typenum == cnp.NPY_FLOAT32:
                status = network_trace(self.layers, self.n_layers, self.max_width,
                                       <const float*>cnp.PyArray_DATA(xa), <float**>pre,
                                       <float**>post, batch, threads)
            else:
                status = network_trace(self.layers, self.n_layers, self.max_width,
                                       <const double*>cnp.PyArray_DATA(xa), <double**>pre,
                                       <double**>post, batch, threads)
        if taken > 0:
            nnx_give_back_threads(settings_state, taken)
        PyMem_RawFree(pre)
        if status != 0:
            raise MemoryError("no memory for the trace workspace")
        return pairs


def activate_inplace(cnp.ndarray values, int activation, double alpha=0.01):
    """Apply an activation in place; softmax runs over the last axis.

    values: a writeable, C-contiguous float32 or float64 array of any shape.
    """
    cdef Py_ssize_t n, width, row
    cdef int typenum = cnp.PyArray_TYPE(values)
    if not (typenum in (cnp.NPY_FLOAT32, cnp.NPY_FLOAT64) and is_behaved(values, typenum)
            and cnp.PyArray_ISWRITEABLE(values)):
        raise ValueError(f"expected a writeable, C-contiguous float32 or float64 array, "
                         f"got {values.dtype} with flags {values.flags!r}")
    if not 0 <= activation < N_ACTIVATIONS:
        raise ValueError(f"unknown activation code {activation}")
    n = cnp.PyArray_SIZE(values)
    if activation == ACT_SOFTMAX:
        if cnp.PyArray_NDIM(values) == 0:
            raise ValueError("softmax needs at least one axis, got a 0-d array")
        width = cnp.PyArray_DIM(values, cnp.PyArray_NDIM(values) - 1)
        if n == 0:
            return values
        with nogil:
            for row in range(n // width):
                if typenum == cnp.NPY_FLOAT32:
                    softmax_strided(<float*>cnp.PyArray_DATA(values) + row * width, width, 1)
                else:
                    softmax_strided(<double*>cnp.PyArray_DATA(values) + row * width, width, 1)
        return values
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            activate(<float*>cnp.PyArray_DATA(values), n, activation, <float>alpha)
        else:
            activate(<double*>cnp.PyArray_DATA(values), n, activation, alpha)
    return values
