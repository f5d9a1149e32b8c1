"""vgcore.MLP.from_torch / to_torch: the same function, the same gradients, refusals by name.

Every test builds a PyTorch module, converts it, runs the same batch through both, takes the
softmax cross-entropy in both and backpropagates in both; outputs, input gradients and every
parameter gradient (weights, biases, gamma, beta) must agree to the dtype's tolerance, and the
batch-norm running statistics after a training-mode pass too.  Dropout masks differ between
the two libraries (vgcore's are a seeded hash), so dropout is compared in evaluation mode and
with p = 0 in training mode.
"""
from __future__ import annotations

import numpy as np
import pytest

import vgcore as vg
from _vgtest import assert_close

try:
    import torch
except ImportError:                 # each test is skipped (and fails under VGCORE_NO_SKIPS)
    torch = None

pytestmark = pytest.mark.skipif(torch is None, reason="needs PyTorch (CI installs torch==2.13.0; "
                                                      "README: 'Your own PyTorch network')")
if torch is not None:
    nn = torch.nn
    from vgcore.interop.torch_bridge import Residual
    TORCH_DTYPES = {np.float32: torch.float32, np.float64: torch.float64}
else:                               # the parametrisations below name nn lazily, in lambdas
    nn = Residual = TORCH_DTYPES = None


def torch_activations():
    """One module per vgcore activation (all 12), keyed by vgcore's name."""
    return {
        "identity": nn.Identity(), "sigmoid": nn.Sigmoid(), "tanh": nn.Tanh(),
        "relu": nn.ReLU(), "leaky_relu": nn.LeakyReLU(0.2), "elu": nn.ELU(0.7),
        "selu": nn.SELU(), "gelu": nn.GELU(), "softplus": nn.Softplus(threshold=40.0),
        "softsign": nn.Softsign(), "silu": nn.SiLU(), "hard_tanh": nn.Hardtanh(),
    }


def make_batch(n_in, n_out, dtype, batch=32, seed=0, scale=2.0):
    rng = np.random.default_rng(seed)
    X = (scale * rng.standard_normal((batch, n_in))).astype(dtype)
    y = rng.integers(0, n_out, batch)
    return X, y


def compare_step(module, net, X, y, dtype, what=""):
    """One forward and backward pass in both; assert equal outputs and gradients."""
    tX = torch.from_numpy(X.copy()).requires_grad_(True)
    for p in module.parameters():
        p.grad = None
    tout = module(tX)
    tloss = nn.functional.cross_entropy(tout, torch.from_numpy(y))
    tloss.backward()

    out = net.forward(X)
    assert_close(out, tout.detach().numpy(), dtype, f"{what}: outputs")
    loss, dout = vg.losses.cross_entropy(out, y)
    assert_close(loss, tloss.item(), dtype, f"{what}: loss")
    dX = net.backward(dout)
    assert_close(dX, tX.grad.numpy(), dtype, f"{what}: dL/dX")

    linears = [m for m in module.modules() if type(m) is nn.Linear]
    norms = [m for m in module.modules() if type(m) in (nn.BatchNorm1d, nn.LayerNorm)]
    assert len(linears) == net.n_layers
    for l, lin in enumerate(linears):
        assert_close(net.weight_grads[l], lin.weight.grad.numpy().T, dtype,
                     f"{what}: dL/dW of layer {l + 1}")
        # before a batch norm in training mode dL/db is 0 up to rounding: compare on the
        # scale of the layer's weight gradient
        assert_close(net.bias_grads[l], lin.bias.grad.numpy(), dtype,
                     f"{what}: dL/db of layer {l + 1}",
                     scale=max(np.abs(lin.weight.grad.numpy()).max(),
                               np.abs(lin.bias.grad.numpy()).max()))
    got = [(g, b) for g, b in zip(net.gamma_grads, net.beta_grads) if g is not None]
    assert len(got) == len(norms)
    for (g, b), m in zip(got, norms):
        assert_close(g, m.weight.grad.numpy(), dtype, f"{what}: dL/dgamma")
        assert_close(b, m.bias.grad.numpy(), dtype, f"{what}: dL/dbeta")
    bns = [m for m in norms if type(m) is nn.BatchNorm1d]
    stats = [(rm, rv) for rm, rv in zip(net.running_means, net.running_vars) if rm is not None]
    for (rm, rv), m in zip(stats, bns):
        assert_close(rm, m.running_mean.numpy(), dtype, f"{what}: running mean")
        assert_close(rv, m.running_var.numpy(), dtype, f"{what}: running var")


def seeded(module_fn, dtype, seed=0):
    torch.manual_seed(seed)
    m = module_fn()
    m.to(TORCH_DTYPES[dtype])
    with torch.no_grad():       # norms away from their trivial init, so their gradients show
        for sub in m.modules():
            if type(sub) in (nn.BatchNorm1d, nn.LayerNorm):
                sub.weight.uniform_(0.5, 1.5)
                sub.bias.uniform_(-0.5, 0.5)
            if type(sub) is nn.BatchNorm1d:
                sub.running_mean.uniform_(-0.3, 0.3)
                sub.running_var.uniform_(0.5, 2.0)
    return m


# ------------------------------------------------------------------------------ same function
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", list(vg.ACTIVATIONS))
def test_every_activation_gives_the_same_outputs_and_gradients(act, dtype):
    def build():
        acts = torch_activations()
        return nn.Sequential(nn.Linear(6, 16), acts[act], nn.Linear(16, 16),
                             torch_activations()[act], nn.Linear(16, 4))

    module = seeded(build, dtype)
    net = vg.MLP.from_torch(module)
    assert net.dtype == dtype
    assert [a.name for a in net.activations] == [act, act, "identity"]
    X, y = make_batch(6, 4, dtype)
    compare_step(module, net, X, y, dtype, act)


def test_activation_parameters_are_copied():
    net = vg.MLP.from_torch(nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.3), nn.Linear(4, 4),
                                          nn.ELU(alpha=0.5), nn.Linear(4, 2)))
    assert net.activations[0] == vg.Activation("leaky_relu", slope=0.3)
    assert net.activations[1] == vg.Activation("elu", alpha=0.5)


def norm_dropout_net(p):
    return nn.Sequential(
        nn.Linear(8, 16), nn.BatchNorm1d(16, eps=1e-3, momentum=0.2), nn.Tanh(), nn.Dropout(p),
        nn.Linear(16, 16), nn.LayerNorm(16, eps=1e-3), nn.ReLU(), nn.Dropout(p),
        Residual(nn.Sequential(nn.Linear(16, 16), nn.BatchNorm1d(16, eps=1e-3, momentum=0.2),
                               nn.SiLU()), alpha=0.5),
        nn.Dropout(p),
        nn.Sequential(nn.Linear(16, 12), nn.Sigmoid()),     # nested: flattened
        nn.Linear(12, 5))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_norms_residual_and_dropout_give_the_same_outputs_gradients_and_statistics(mode,
                                                                                   dtype):
    p = 0.25 if mode == "eval" else 0.0      # masks differ between the libraries: see top
    module = seeded(lambda: norm_dropout_net(p), dtype)
    getattr(module, mode)()
    net = vg.MLP.from_torch(module)
    assert net.training == (mode == "train")
    assert net.norms == ("batch", "layer", "batch", None, None)
    assert net.residuals == (None, None, 0.5, None, None)
    assert net.dropouts == ((p, p, p, 0.0, 0.0))
    assert net.norm_eps == 1e-3 and net.norm_momentum == 0.2
    X, y = make_batch(8, 5, dtype)
    compare_step(module, net, X, y, dtype, mode)
    X2, y2 = make_batch(8, 5, dtype, seed=1, batch=17)      # again: statistics moved on
    compare_step(module, net, X2, y2, dtype, mode + " (second batch)")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_training_with_sgd_stays_equal_step_after_step(dtype):
    module = seeded(lambda: norm_dropout_net(0.0), dtype)
    net = vg.MLP.from_torch(module)
    opt_t = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9)
    opt_v = vg.optim.SGD(net, lr=0.1, momentum=0.9)
    for step in range(5):
        X, y = make_batch(8, 5, dtype, seed=step)
        opt_t.zero_grad()
        nn.functional.cross_entropy(module(torch.from_numpy(X)), torch.from_numpy(y)).backward()
        opt_t.step()
        net.train_step(X, y, "cross_entropy", opt_v)
    back = vg.MLP.from_torch(module)
    assert_close(net.params, back.params, dtype, "parameters after 5 SGD steps")
    for a, b in zip(net.running_vars, back.running_vars):
        if a is not None:
            assert_close(a, b, dtype, "running variances after 5 steps")


def test_a_dropout_network_in_training_mode_drops_like_vgcore():
    # the masks are vgcore's own: the converted network equals a vgcore network of the same
    # parameters and dropout_seed, and drops about p of the units
    module = seeded(lambda: norm_dropout_net(0.5), np.float64)
    net = vg.MLP.from_torch(module, dropout_seed=7)
    assert net.training and net.dropout_seed == 7
    X, _ = make_batch(8, 5, np.float64, batch=256)
    ref = vg.reference.ReferenceMLP.from_network(net)
    np.testing.assert_allclose(net.forward(X), ref.forward(X), rtol=1e-10, atol=1e-10)
    kept = np.count_nonzero(ref.dropout_masks[0]) / ref.dropout_masks[0].size
    assert 0.45 < kept < 0.55


# ------------------------------------------------------------------------------ round trips
def assert_same_network(a, b):
    assert a.sizes == b.sizes and a.dtype == b.dtype
    assert [x.name for x in a.activations] == [x.name for x in b.activations]
    assert [x.param for x in a.activations] == [x.param for x in b.activations]
    assert a.norms == b.norms and a.residuals == b.residuals and a.dropouts == b.dropouts
    assert a.norm_eps == b.norm_eps and a.norm_momentum == b.norm_momentum
    assert a.training == b.training
    np.testing.assert_array_equal(a.params, b.params)
    for x, y in zip(a.running_means + a.running_vars, b.running_means + b.running_vars):
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_array_equal(x.astype(a.dtype), y)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("training", [True, False])
def test_vgcore_to_torch_and_back_is_the_same_network(dtype, training):
    layers = [vg.Dense(12, "tanh", norm="batch"), vg.Dense(12, "gelu", residual=0.3),
              vg.Dense(12, vg.Activation("leaky_relu", slope=0.1), norm="layer", dropout=0.2),
              vg.Dense(12, "softplus", residual=1.0, norm="batch", dropout=0.1),
              vg.Dense(9, "hard_tanh"), vg.Dense(3)]
    net = vg.MLP.from_layers(7, layers, dtype=dtype, seed=3, sigma_b=0.1, norm_eps=1e-4,
                             norm_momentum=0.05)
    X, y = make_batch(7, 3, np.dtype(dtype), batch=20)
    net.train_step(X, y, "cross_entropy", vg.optim.SGD(net, lr=0.1))   # running stats move
    (net.train_mode if training else net.eval_mode)()
    module = net.to_torch()
    assert module.training == training
    back = vg.MLP.from_torch(module)
    assert_same_network(net, back)
    if not training:        # no dropout masks in evaluation mode: the functions agree
        out = module(torch.from_numpy(X)).detach().numpy()
        assert_close(net.forward(X), out, np.dtype(dtype), "to_torch outputs")


def test_torch_to_vgcore_and_back_gives_the_same_state_dict():
    module = seeded(lambda: norm_dropout_net(0.1), np.float32)
    back = vg.MLP.from_torch(module).to_torch()
    a = {k: v for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")}
    b = {k: v for k, v in back.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert len(a) == len(b)       # the nested Sequential comes back flattened: same order
    for (ka, va), (kb, vb) in zip(a.items(), b.items()):
        assert ka.rsplit(".", 1)[1] == kb.rsplit(".", 1)[1]
        assert torch.equal(va, vb), (ka, kb)


def test_dtype_option_converts_and_float16_needs_it():
    module = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    net = vg.MLP.from_torch(module, dtype="float64")
    assert net.dtype == np.float64
    np.testing.assert_array_equal(net.weights[0], module[0].weight.detach().double().numpy().T)
    half = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)).half()
    with pytest.raises(ValueError, match=r"torch.float16.*pass dtype="):
        vg.MLP.from_torch(half)
    net16 = vg.MLP.from_torch(half, dtype="float32")
    np.testing.assert_array_equal(net16.weights[0], half[0].weight.float().detach().numpy().T)


def test_conversion_leaves_the_module_unchanged_and_shares_no_memory():
    module = seeded(lambda: norm_dropout_net(0.0), np.float32)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    net = vg.MLP.from_torch(module)
    net.params[...] = 0
    for k, v in module.state_dict().items():
        assert torch.equal(v, before[k]), k
    again = net.to_torch()
    net.params[...] = 1
    assert all(float(p.detach().abs().sum()) == 0 for p in again.parameters())


def test_the_converted_network_profiles_its_gradient_flow():
    torch.manual_seed(0)
    module = nn.Sequential(*[m for _ in range(8) for m in (nn.Linear(16, 16), nn.Sigmoid())],
                           nn.Linear(16, 4))
    net = vg.MLP.from_torch(module)
    X, y = make_batch(16, 4, np.float32)
    net.train_step(X, y, "cross_entropy", vg.optim.SGD(net, lr=0.1))
    flow = net.gradient_flow()
    assert flow.n_layers == 9 and flow.delta_ratio < 1e-3      # sigmoid stacks vanish
    assert any(f.kind == "vanishing" for f in vg.diagnose(net))


# ------------------------------------------------------------------------------ refusals
def refuses(module, pattern, **options):
    with pytest.raises(ValueError, match=pattern):
        vg.MLP.from_torch(module, **options)


def test_a_layer_that_is_not_dense_is_named():
    module = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Conv1d(1, 1, 3),
                           nn.Linear(8, 2))
    refuses(module, r"^layer 3: nn.Conv1d is not a dense layer")


def test_nested_layers_are_named_by_their_path():
    module = nn.Sequential(nn.Linear(4, 8), nn.Sequential(nn.ReLU(), nn.Flatten()),
                           nn.Linear(8, 2))
    refuses(module, r"^layer 1\.1: nn.Flatten is not a dense layer")


@pytest.mark.parametrize("module_fn, pattern", [
    (lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.BatchNorm1d(8), nn.Linear(8, 2)),
     r"layer 2: nn.BatchNorm1d after nn.ReLU \(layer 1\); vgcore normalises the pre-activation"),
    (lambda: nn.Sequential(nn.Linear(4, 8, bias=False), nn.ReLU(), nn.Linear(8, 2)),
     r"layer 0: nn.Linear\(4, 8, bias=False\); vgcore's dense layers always have a bias"),
    (lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Tanh(), nn.Linear(8, 2)),
     r"layer 2: nn.Tanh right after nn.ReLU \(layer 1\): two activations in a row"),
    (lambda: nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.1), nn.ReLU(), nn.Linear(8, 2)),
     r"layer 2: nn.ReLU after nn.Dropout \(layer 1\); vgcore drops the layer's output"),
    (lambda: nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.LayerNorm(8), nn.Linear(8, 2)),
     r"layer 2: nn.LayerNorm right after nn.BatchNorm1d \(layer 1\): two normalisations"),
    (lambda: nn.Sequential(nn.ReLU(), nn.Linear(4, 2)),
     r"layer 0: nn.ReLU before the first nn.Linear"),
    (lambda: nn.Sequential(nn.Linear(4, 8), nn.GELU(approximate="tanh"), nn.Linear(8, 2)),
     r"layer 1: nn.GELU\(approximate='tanh'\) is the tanh approximation"),
    (lambda: nn.Sequential(nn.Linear(4, 8), nn.Softplus(beta=2), nn.Linear(8, 2)),
     r"layer 1: nn.Softplus\(beta=2\)"),
    (lambda: nn.Sequential(nn.Linear(4, 8), nn.Softplus(threshold=5), nn.Linear(8, 2)),
     r"layer 1: nn.Softplus\(threshold=5\) returns h itself above 5.*threshold >= 17"),
    (lambda: nn.Sequential(nn.Linear(4, 8), nn.Hardtanh(-2, 2), nn.Linear(8, 2)),
     r"layer 1: nn.Hardtanh\(-2, 2\); vgcore's hard_tanh clips to \(-1, 1\)"),
    (lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU6(), nn.Linear(8, 2)),
     r"layer 1: nn.ReLU6 is not one of vgcore's activations"),
    (lambda: nn.Sequential(nn.Linear(4, 8), nn.PReLU(), nn.Linear(8, 2)),
     r"layer 1: nn.PReLU is not one of vgcore's activations.*learns its slope"),
    (lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2), nn.Softmax(dim=1)),
     r"layer 3: nn.Softmax is not one of vgcore's activations.*take logits"),
    (lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1), nn.Sigmoid()),
     r"layer 3: nn.Sigmoid after the output layer \(layer 2\).*binary_cross_entropy"),
    (lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2), nn.Dropout(0.1)),
     r"layer 3: nn.Dropout after the output layer"),
    (lambda: nn.Sequential(nn.Linear(4, 8), nn.AlphaDropout(0.1), nn.Linear(8, 2)),
     r"layer 1: nn.AlphaDropout is not vgcore's dropout"),
    (lambda: nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8, affine=False), nn.Linear(8, 2)),
     r"layer 1: nn.BatchNorm1d\(affine=False\)"),
    (lambda: nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8, momentum=None), nn.Linear(8, 2)),
     r"layer 1: nn.BatchNorm1d\(momentum=None\) keeps a cumulative average"),
    (lambda: nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8, track_running_stats=False),
                           nn.Linear(8, 2)),
     r"layer 1: nn.BatchNorm1d\(track_running_stats=False\)"),
    (lambda: nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8),
                           nn.BatchNorm1d(8, eps=1e-3), nn.ReLU(), nn.Linear(8, 2)),
     r"layer 4: eps=0.001, but layer 1 has eps=1e-05; vgcore uses one norm_eps"),
    (lambda: nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8),
                           nn.BatchNorm1d(8, momentum=0.3), nn.ReLU(), nn.Linear(8, 2)),
     r"layer 4: momentum=0.3, but layer 1 has momentum=0.1"),
    (lambda: nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(4), nn.Linear(8, 2)),
     r"layer 1: nn.LayerNorm\(\[4\]\) after a layer of 8 units"),
    (lambda: nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8, elementwise_affine=False),
                           nn.Linear(8, 2)),
     r"layer 1: nn.LayerNorm\(elementwise_affine=False\)"),
    (lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(6, 2)),
     r"layer 2: nn.Linear\(6, 2\) takes 6 inputs but the layer before gives 8"),
    (lambda: nn.Sequential(nn.Linear(4, 8), Residual(nn.Sequential(nn.Linear(8, 6), nn.ReLU())),
                           nn.Linear(6, 2)),
     r"layer 1: a residual block needs fan_in == fan_out"),
    (lambda: nn.Sequential(nn.Linear(4, 8), Residual(nn.Sequential(nn.Linear(8, 8), nn.ReLU())),
                           nn.Tanh(), nn.Linear(8, 2)),
     r"layer 2: nn.Tanh after the residual block 1"),
    (lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), Residual(nn.Linear(8, 8))),
     r"layer 2: the network ends with a residual block"),
    (lambda: nn.Sequential(nn.Dropout(0.1)),
     r"layer 0: nn.Dropout before the first nn.Linear"),
    (lambda: nn.Sequential(),
     r"module: it holds no nn.Linear"),
])
def test_what_vgcore_cannot_express_is_refused_with_the_layer_and_what_it_expects(module_fn,
                                                                                 pattern):
    refuses(module_fn(), pattern)


def test_softplus_threshold_depends_on_the_dtype():
    module = nn.Sequential(nn.Linear(4, 8), nn.Softplus(), nn.Linear(8, 2))   # threshold 20
    assert vg.MLP.from_torch(module).activations[0].name == "softplus"        # float32: exact
    refuses(module, r"nn.Softplus\(threshold=20.*float64's rounding.*threshold >= 37",
            dtype="float64")
    refuses(module.double(), r"threshold >= 37")
    module64 = nn.Sequential(nn.Linear(4, 8), nn.Softplus(threshold=37), nn.Linear(8, 2))
    assert vg.MLP.from_torch(module64.double()).dtype == np.float64


def test_layers_in_different_modes_are_refused():
    module = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2),
                           nn.Linear(8, 2))
    module[3].eval()
    refuses(module, r"layer 1 is in training mode and layer 3 in evaluation mode")


def test_mixed_dtypes_and_non_finite_parameters_are_refused():
    module = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    module[2].double()
    refuses(module, r"parameters of several dtypes")
    module = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with torch.no_grad():
        module[2].weight[0, 0] = float("nan")
    refuses(module, r"layer 2: its weight holds NaN or Inf")


def test_a_module_that_is_not_a_sequential_is_refused():
    class MyNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x) * 2

    with pytest.raises(TypeError, match=r"expected a torch.nn.Sequential.*with its own forward"):
        vg.MLP.from_torch(MyNet())
    with pytest.raises(TypeError, match=r"expected a torch.nn.Sequential, got list"):
        vg.MLP.from_torch([nn.Linear(4, 2)])
