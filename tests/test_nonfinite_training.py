"""A step that produces NaN or Inf, under each policy of vg.fit(on_nonfinite=...): an exploding
learning rate and a poisoned batch; and float32 gradients that underflow read as vanishing."""
import numpy as np
import pytest

import vgcore as vg


def _data(n=256, poison_row=None):
    X, y = vg.datasets.gaussian_mixture(n, 16, 4, seed=0)
    if poison_row is not None:
        X[poison_row] = 3e37                  # finite, but overflows float32 in the first layer
    return X, y


def _net(measure=True):
    return vg.MLP([16, 32, 32, 4], activation="relu", init="he_normal", seed=0,
                  measure=measure)


@pytest.mark.parametrize("measure", [True, False])
def test_exploding_learning_rate_raises_naming_the_step_and_keeps_the_last_good_parameters(
        measure):
    X, y = _data()
    net = _net(measure)
    opt = vg.optim.SGD(net, lr=1e6)
    snapshots = []

    class Keep:
        def on_batch_end(self, step, loss, trainer):
            snapshots.append(trainer.net.params.copy())

    with pytest.raises(FloatingPointError, match=r"step \d+: the (forward|backward) pass "
                                                 r"produced NaN or Inf"):
        vg.fit(net, X, y, optimizer=opt, epochs=5, batch_size=32, callbacks=[Keep()],
               verbose=0)
    assert np.isfinite(net.params).all()
    np.testing.assert_array_equal(net.params, snapshots[-1])   # untouched by the bad step


@pytest.mark.parametrize("measure", [True, False])
def test_a_first_step_that_overflows_points_to_the_input_not_the_learning_rate(measure):
    """Nothing has been updated yet: the learning rate cannot be why; after a step it may."""
    X, y = _data()
    net = _net(measure)
    with pytest.raises(FloatingPointError, match=r"step 0: the forward pass produced NaN or "
                       r"Inf.*learning rate is not the cause: check the inputs' scale"):
        vg.fit(net, np.full_like(X, 3e38), y, optimizer=vg.optim.SGD(net, lr=0.01),
               epochs=1, batch_size=32, verbose=0)
    X[100] = 3e38                                   # overflows the forward pass itself
    tr = vg.trainer.Trainer(net, X, y,
                            optimizer=vg.optim.SGD(net, lr=0.05), epochs=1, batch_size=32,
                            shuffle=False, on_nonfinite="stop", verbose=0)
    tr.run()
    assert tr.step == 3 and "try a lower learning rate" in tr.nonfinite_message


def test_poisoned_batch_is_skipped_and_training_goes_on():
    X, y = _data(poison_row=5)
    net = _net()
    hist = vg.fit(net, X, y, optimizer=vg.optim.SGD(net, lr=0.05), epochs=3, batch_size=32,
                  shuffle=False, on_nonfinite="skip", verbose=0)
    h = hist.as_dict()
    assert h["skipped"] == [1.0, 1.0, 1.0]          # the batch holding row 5, every epoch
    assert np.isfinite(net.params).all()
    assert h["loss"][-1] < h["loss"][0]


def test_stop_policy_ends_training_with_the_last_good_state():
    X, y = _data(poison_row=100)
    net = _net()
    tr = vg.trainer.Trainer(net, X, y, optimizer=vg.optim.SGD(net, lr=0.05), epochs=3,
                            batch_size=32, shuffle=False, on_nonfinite="stop", verbose=0)
    tr.run()
    assert tr.step == 3                               # batches 0-2, then the poisoned one
    assert "forward pass produced NaN or Inf at layer" in tr.nonfinite_message
    assert np.isfinite(net.params).all()


def test_float32_gradients_underflowing_in_a_deep_sigmoid_network_read_as_vanishing():
    X, y = vg.datasets.gaussian_mixture(64, 32, 4, seed=0)
    net = vg.MLP([32] + [32] * 60 + [4], activation="sigmoid", init="standard", seed=0)
    net.train_step(X, y, "cross_entropy")
    flow = net.gradient_flow()
    assert flow.grad_norm[0] == 0.0                   # underflowed, not NaN
    assert np.isfinite(flow.grad_norm).all() and flow.nonfinite_backward_layer is None
    findings = vg.diagnose(net)
    assert findings[0].kind == "vanishing" and findings[0].severity == "error"


def test_bad_policy_is_rejected_by_name():
    X, y = _data(32)
    with pytest.raises(ValueError, match="on_nonfinite"):
        vg.fit(_net(), X, y, on_nonfinite="ignore", verbose=0)
