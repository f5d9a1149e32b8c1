"""vgcore.checkpoint: format, atomic writes, exact round trips, all-or-nothing loading."""
from __future__ import annotations

import json
import os
import struct
import zipfile

import numpy as np
import pytest

import vgcore as vg
from vgcore.train import checkpoint as ckpt


def _net(seed=0, dtype="float32", sizes=(5, 7, 6, 3), **kw):
    kw.setdefault("activation", "tanh")
    return vg.MLP(list(sizes), dtype=dtype, seed=seed, **kw)


def _data(seed=0, n=24, d=5, k=3, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(dtype), rng.integers(0, k, n)


def _train(net, opt, steps, seed=0):
    X, y = _data(seed, d=net.sizes[0], k=net.sizes[-1], dtype=net.dtype)
    for _ in range(steps):
        net.train_step(X, y, "cross_entropy", opt)


def _saved(tmp_path, name="c.npz", **kw):
    net = _net()
    opt = vg.optim.Adam(net, lr=0.01)
    _train(net, opt, 2)
    path = tmp_path / name
    ckpt.save(path, net, opt, **kw)
    return path, net, opt


def _others_in(folder, keep):
    return sorted(p for p in os.listdir(folder) if p not in keep)


# ---------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_load_rebuilds_architecture_and_bit_identical_params(tmp_path, dtype):
    net = vg.MLP([4, 9, 8, 2], activation=[vg.Activation("leaky_relu", slope=0.3),
                                           vg.Activation("elu", alpha=0.7)],
                 init="normal", sigma_w=1.3, sigma_b=0.2, dtype=dtype, seed=5, measure=False)
    net.params[:] += np.linspace(-1, 1, net.n_params, dtype=dtype) * np.float32(1e-3)
    ckpt.save(tmp_path / "a.npz", net)
    c = ckpt.load(tmp_path / "a.npz")
    assert c.net.sizes == net.sizes
    assert c.net.activations == net.activations
    assert (c.net.init, c.net.sigma_w, c.net.sigma_b) == ("normal", 1.3, 0.2)
    assert c.net.dtype == net.dtype and c.net.measure is False and c.net.seed == 5
    assert c.net.params.dtype == net.params.dtype
    assert c.net.params.tobytes() == net.params.tobytes()
    assert c.optimizer_state is None and c.history is None and c.extra is None


@pytest.mark.parametrize("make_opt", [
    lambda n: vg.optim.Adam(n, lr=0.01),
    lambda n: vg.optim.AdamW(n, lr=0.01, weight_decay=0.1),
    lambda n: vg.optim.SGD(n, lr=0.05, momentum=0.9, nesterov=True),
    lambda n: vg.optim.RMSprop(n, lr=0.01, clip_norm=0.5),
    lambda n: vg.optim.Adagrad(n, lr=0.05),
], ids=["adam", "adamw", "sgd_nesterov", "rmsprop_clip", "adagrad"])
def test_load_into_continues_training_bit_identically(tmp_path, make_opt):
    net = _net(seed=1)
    opt = make_opt(net)
    _train(net, opt, 3)
    ckpt.save(tmp_path / "c.npz", net, opt)

    net2 = _net(seed=99)            # different initial parameters, fresh optimiser
    opt2 = make_opt(net2)
    ckpt.load_into(tmp_path / "c.npz", net2, opt2)
    assert np.array_equal(net2.params, net.params)
    assert opt2.step_count == opt.step_count == 3

    _train(net, opt, 3, seed=1)
    _train(net2, opt2, 3, seed=1)
    assert net2.params.tobytes() == net.params.tobytes()


def test_make_optimizer_rebuilds_adam_with_state_and_continues_identically(tmp_path):
    net = _net(seed=2, dtype="float64")
    opt = vg.optim.Adam(net, lr=0.02, betas=(0.8, 0.99), eps=1e-7, clip_value=3.0)
    _train(net, opt, 3)
    ckpt.save(tmp_path / "c.npz", net, opt)
    c = ckpt.load(tmp_path / "c.npz")
    opt2 = c.make_optimizer()
    assert type(opt2) is vg.optim.Adam
    assert (opt2.beta1, opt2.beta2, opt2.eps, opt2.clip_value, opt2.lr) == (0.8, 0.99, 1e-7,
                                                                            3.0, 0.02)
    _train(net, opt, 3, seed=4)
    _train(c.net, opt2, 3, seed=4)
    assert c.net.params.tobytes() == net.params.tobytes()


def test_history_and_extra_round_trip_with_nan_as_nan(tmp_path):
    hist = {"loss": [1.5, np.float32(0.5), float("nan")], "lr": [0.1, 0.1, 0.05]}
    extra = {"epoch": np.int64(3), "note": "x", "w": np.arange(3.0), "ok": True}
    path, _, _ = _saved(tmp_path, history=hist, extra=extra)
    c = ckpt.load(path)
    assert c.history["lr"] == [0.1, 0.1, 0.05]
    assert c.history["loss"][:2] == [1.5, 0.5] and np.isnan(c.history["loss"][2])
    assert c.extra == {"epoch": 3, "note": "x", "w": [0.0, 1.0, 2.0], "ok": True}
    net, opt_state, history, extra = c                    # unpacks like a 4-tuple
    assert net is c.net and opt_state["type"] == "Adam" and extra is c.extra


def test_schedule_lr_is_not_stored_and_load_into_keeps_the_optimizers_schedule(tmp_path):
    net = _net()
    sched = lambda step: 0.1 / (1 + step)                                   # noqa: E731
    opt = vg.optim.SGD(net, lr=sched, momentum=0.5)
    _train(net, opt, 2)
    ckpt.save(tmp_path / "c.npz", net, opt)
    c = ckpt.load(tmp_path / "c.npz")
    assert c.optimizer_state["lr"] is None and "lambda" in c.optimizer_state["lr_schedule"]
    with pytest.raises(ValueError, match="lr: the saved optimiser used a schedule"):
        c.make_optimizer()
    assert c.make_optimizer(lr=sched).step_count == 2
    net2 = _net()
    opt2 = vg.optim.SGD(net2, lr=sched, momentum=0.5)
    ckpt.load_into(tmp_path / "c.npz", net2, opt2)
    assert opt2.lr is sched and opt2.step_count == 2


def test_load_into_warns_when_hyperparameters_differ_but_loads(tmp_path):
    path, net, _ = _saved(tmp_path)
    net2 = _net(seed=3)
    opt2 = vg.optim.Adam(net2, lr=0.01, betas=(0.5, 0.9))
    with pytest.warns(UserWarning, match="betas"):
        ckpt.load_into(path, net2, opt2)
    assert np.array_equal(net2.params, net.params) and opt2.beta1 == 0.5


# ---------------------------------------------------------------------------- the format
def test_file_is_a_documented_npz_readable_without_pickle(tmp_path):
    path, net, opt = _saved(tmp_path, history={"loss": [1.0]}, extra={"epoch": 1})
    with np.load(path, allow_pickle=False) as z:
        assert set(z.files) == {"format", "version", "metadata", "params", "running_mean",
                                "running_var", "state_0", "state_1"}
        assert z["format"].item() == "vgcore.checkpoint" and z["version"].item() == 1
        meta = json.loads(z["metadata"].item())
        assert np.array_equal(z["params"], net.params)
        assert np.array_equal(z["state_1"], opt.state_dict()["states"][1])
    assert meta["network"]["sizes"] == [5, 7, 6, 3]
    assert meta["network"]["activations"][-1] == {"name": "identity", "param": 0.0}
    assert meta["network"]["dtype"] == "float32" and meta["network"]["init"] == "standard"
    assert meta["optimizer"]["type"] == "Adam" and meta["optimizer"]["step_count"] == 2
    assert meta["optimizer"]["hyperparameters"]["betas"] == [0.9, 0.999]
    assert meta["history"] == {"loss": [1.0]} and meta["extra"] == {"epoch": 1}


def test_compressed_checkpoint_loads_the_same(tmp_path):
    net = _net()
    ckpt.save(tmp_path / "z.npz", net, compress=True)
    with zipfile.ZipFile(tmp_path / "z.npz") as zf:
        assert zf.getinfo("params.npy").compress_type == zipfile.ZIP_DEFLATED
    assert np.array_equal(ckpt.load(tmp_path / "z.npz").net.params, net.params)


def test_path_is_used_as_given_without_adding_a_suffix(tmp_path):
    net = _net()
    ckpt.save(tmp_path / "run.ckpt", net)
    assert os.listdir(tmp_path) == ["run.ckpt"]
    assert np.array_equal(ckpt.load(str(tmp_path / "run.ckpt")).net.params, net.params)


# ---------------------------------------------------------------------------- atomic writes
@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_save_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch, exc):
    path, net, _ = _saved(tmp_path)
    good = path.read_bytes()

    def broken_savez(file, **arrays):
        file.write(b"PK\x03\x04 partial zip bytes")      # a partial write, then the crash
        raise exc

    monkeypatch.setattr(np, "savez", broken_savez)
    net.params[:] = 0
    with pytest.raises(type(exc)):
        ckpt.save(path, net)
    assert path.read_bytes() == good
    assert _others_in(tmp_path, {path.name}) == []
    assert not np.array_equal(ckpt.load(path).net.params, net.params)


def test_save_replaces_an_existing_checkpoint(tmp_path):
    path, net, _ = _saved(tmp_path)
    net.params[:] = 1
    ckpt.save(path, net)
    assert np.all(ckpt.load(path).net.params == 1)
    assert _others_in(tmp_path, {path.name}) == []


# ---------------------------------------------------------------------------- bad files
def _check_rejected(path, match, net=None):
    """load and load_into both raise a ValueError naming the file; net is untouched."""
    with pytest.raises(ValueError, match=match) as e:
        ckpt.load(path)
    assert str(path) in str(e.value)
    net = net or _net(seed=7)
    before = net.params.copy()
    with pytest.raises(ValueError, match=match):
        ckpt.load_into(path, net)
    assert np.array_equal(net.params, before)


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.999])
def test_truncated_file_is_rejected(tmp_path, cut):
    path, _, _ = _saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * cut)])
    _check_rejected(path, "truncated or corrupt")


def test_flipped_byte_in_params_is_rejected(tmp_path):
    path, _, _ = _saved(tmp_path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("params.npy")
    h = info.header_offset
    name_len, extra_len = struct.unpack("<HH", data[h + 26:h + 30])     # local file header
    start = h + 30 + name_len + extra_len
    assert data[start:start + 6] == b"\x93NUMPY"
    data[start + info.compress_size - 3] ^= 0x55                        # in the last value
    path.write_bytes(bytes(data))
    _check_rejected(path, "Bad CRC-32 for file 'params.npy'")


def test_params_changed_behind_the_metadata_fail_the_checksum(tmp_path):
    path, net, _ = _saved(tmp_path)
    _rewrite(path, params=net.params + np.float32(1))      # a valid zip, inconsistent content
    _check_rejected(path, "'params': checksum mismatch")


def test_non_checkpoint_files_are_rejected(tmp_path):
    text = tmp_path / "t.npz"
    text.write_text("hello")
    _check_rejected(text, "not a readable vgcore checkpoint")
    other = tmp_path / "o.npz"
    np.savez(other, a=np.arange(3))
    _check_rejected(other, "no 'format' entry")
    single = tmp_path / "s.npy"
    np.save(single, np.arange(3))
    _check_rejected(single, "single .npy array")


def _rewrite(path, **changes):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    np.savez(path, **arrays)


def test_wrong_format_or_version_is_rejected(tmp_path):
    path, _, _ = _saved(tmp_path)
    _rewrite(path, format=np.array("something.else"))
    _check_rejected(path, "expected format 'vgcore.checkpoint', got 'something.else'")
    path, _, _ = _saved(tmp_path, "v.npz")
    _rewrite(path, version=np.array(2))
    _check_rejected(path, "unsupported checkpoint version 2")


def test_bad_metadata_or_params_shape_is_rejected(tmp_path):
    path, _, _ = _saved(tmp_path)
    _rewrite(path, metadata=np.array("{not json"))
    _check_rejected(path, "not valid JSON")
    path, net, _ = _saved(tmp_path, "p.npz")
    _rewrite(path, params=net.params[:-1])
    _check_rejected(path, f"'params': expected {net.n_params} values of dtype float32")


class _Boom:
    executed = False

    def __reduce__(self):
        return (_Boom._run, ())

    @staticmethod
    def _run():
        _Boom.executed = True
        return "boom"


def test_pickled_content_is_rejected_without_running_it(tmp_path):
    path, _, _ = _saved(tmp_path)
    _rewrite(path, metadata=np.array([_Boom()], dtype=object))
    _Boom.executed = False
    _check_rejected(path, "truncated or corrupt")
    assert _Boom.executed is False


# ---------------------------------------------------------------------------- load_into checks
@pytest.mark.parametrize("other", [
    dict(sizes=(5, 8, 6, 3)), dict(dtype="float64"), dict(activation="relu"),
    dict(activation=vg.Activation("leaky_relu", slope=0.1))], ids=str)
def test_load_into_rejects_another_architecture_and_leaves_net_untouched(tmp_path, other):
    path, _, _ = _saved(tmp_path)
    net = _net(seed=4, **other)
    if "activation" in other and other["activation"] != "relu":
        ckpt.save(path, _net(activation=vg.Activation("leaky_relu", slope=0.2)))
    before = net.params.copy()
    with pytest.raises(ValueError, match="architecture mismatch") as e:
        ckpt.load_into(path, net)
    assert str(path) in str(e.value)
    assert np.array_equal(net.params, before)


def test_load_into_initialiser_settings_need_not_match(tmp_path):
    path, net, _ = _saved(tmp_path)
    net2 = _net(init="orthogonal", sigma_w=2.0, seed=8)
    ckpt.load_into(path, net2)
    assert np.array_equal(net2.params, net.params)


@pytest.mark.parametrize("case", ["no_state", "other_type", "no_momentum"])
def test_load_into_rejects_a_mismatched_optimizer_and_touches_nothing(tmp_path, case):
    net = _net()
    if case == "no_state":
        ckpt.save(tmp_path / "c.npz", net)
        match, make = "holds no optimiser state", lambda n: vg.optim.Adam(n)
    elif case == "other_type":
        ckpt.save(tmp_path / "c.npz", net, vg.optim.Adam(net))
        match, make = "holds a Adam state, got a RMSprop", lambda n: vg.optim.RMSprop(n)
    else:
        ckpt.save(tmp_path / "c.npz", net, vg.optim.SGD(net, momentum=0.9))
        match, make = "1 state buffers, the SGD has 0", lambda n: vg.optim.SGD(n)
    net2 = _net(seed=6)
    opt2 = make(net2)
    _train(net2, opt2, 1)
    before, state = net2.params.copy(), opt2.state_dict()
    with pytest.raises(ValueError, match=match):
        ckpt.load_into(tmp_path / "c.npz", net2, opt2)
    assert np.array_equal(net2.params, before)
    assert opt2.step_count == state["step_count"] == 1
    for a, b in zip(opt2.state_dict()["states"], state["states"]):
        assert np.array_equal(a, b)


# ---------------------------------------------------------------------------- bad arguments
def test_save_rejects_bad_arguments_naming_them(tmp_path):
    net = _net()
    with pytest.raises(TypeError, match="path: expected a file path"):
        ckpt.save(3, net)
    with pytest.raises(TypeError, match="net: expected a vgcore.MLP, got dict"):
        ckpt.save(tmp_path / "a.npz", {})
    with pytest.raises(ValueError, match="optimizer: expected an optimiser of `net`"):
        ckpt.save(tmp_path / "a.npz", net, vg.optim.SGD(_net()))
    with pytest.raises(TypeError, match=r"extra\['f'\]: expected JSON-able values"):
        ckpt.save(tmp_path / "a.npz", net, extra={"f": object()})
    with pytest.raises(ValueError, match="extra: expected finite numbers"):
        ckpt.save(tmp_path / "a.npz", net, extra=float("inf"))
    with pytest.raises(TypeError, match=r"history\['loss'\]\[1\]: expected a number"):
        ckpt.save(tmp_path / "a.npz", net, history={"loss": [1.0, "x"]})
    assert os.listdir(tmp_path) == []


def test_load_of_a_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        ckpt.load(tmp_path / "nope.npz")


def test_layer_options_running_averages_mode_and_dropout_counter_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    net = vg.MLP([5, 7, 7, 7, 3], activation="relu", norm=["batch", "layer", None],
                 residual=[None, 0.5, 0.25], dropout=[0.1, 0.0, 0.3], residual_init="zero",
                 dropout_seed=9, norm_momentum=0.2, norm_eps=1e-4, seed=1)
    opt = vg.optim.SGD(net, lr=0.1, momentum=0.9)
    X = rng.standard_normal((16, 5)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    for _ in range(3):
        net.train_step(X, y, "cross_entropy", opt)
    net.eval_mode()
    ckpt.save(tmp_path / "c.npz", net, opt)
    c = ckpt.load(tmp_path / "c.npz")
    for attr in ("norms", "residuals", "dropouts", "dropout_seed", "norm_momentum", "norm_eps",
                 "training", "dropout_counter", "residual_init"):
        assert getattr(c.net, attr) == getattr(net, attr), attr
    np.testing.assert_array_equal(c.net._run_mean, net._run_mean)
    np.testing.assert_array_equal(c.net._run_var, net._run_var)
    np.testing.assert_array_equal(c.net.forward(X), net.forward(X))
    other = vg.MLP([5, 7, 7, 7, 3], activation="relu", seed=1)
    with pytest.raises(ValueError, match="architecture mismatch"):
        ckpt.load_into(tmp_path / "c.npz", other)


def test_metadata_n_params_inconsistent_with_sizes_is_rejected(tmp_path):
    path, _, _ = _saved(tmp_path)
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(z["metadata"].item())
    meta["network"]["n_params"] += 1
    _rewrite(path, metadata=np.array(json.dumps(meta)))
    _check_rejected(path, "n_params .* does not match sizes")
