"""How vgcore runs the BLAS's threads (vg_blas_threads.h, vg.blas_policy): small products in
one thread, larger ones in one thread when that has been faster.  The BLAS's thread count is 1
while a pass multiplies small matrices, is what it was after every pass (also with several
networks in several threads), and results do not change.  Where the BLAS's bits depend on its
thread count (probed at import), vgcore leaves the count alone unless told otherwise; the tests
of the mechanism itself act as if the probe had found the BLAS thread-count-safe."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import threadpoolctl

import vgcore as vg
from vgcore import _engine
from _vgtest import num_threads

DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]


def _vgcore_blas():
    """threadpoolctl's entry for the OpenBLAS that computes vgcore's products (NumPy's or
    SciPy's, see vg.use_blas), or None."""
    for info in vg.blas_info():
        if info["vgcore"] and info["internal_api"] == "openblas":
            return info
    return None


@pytest.fixture
def policy_applies():
    """The policy as on a BLAS whose bits do not depend on its thread count."""
    found = vg.blas_policy()["threads_change_bits"]
    _engine.set_blas_bits_vary(False)
    yield
    _engine.set_blas_bits_vary(found)


def _blas_threads():
    return sorted((i["filepath"], i["num_threads"]) for i in vg.blas_info())


def _mixed_net(dtype, seed=0):
    # 256 x 256 at batch 128 is 8.4 million multiply-adds (many BLAS threads); 24 x 24 is small
    return vg.MLP([256, 256, 256, 24, 24, 24, 10], activation="tanh", init="glorot_uniform",
                  dtype=dtype, seed=seed)


def _steps(net, n, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((128, 256)).astype(net.dtype)
    y = rng.integers(0, 10, 128)
    opt = vg.optim.SGD(net, lr=0.05)
    for _ in range(n):
        net.train_step(X, y, "cross_entropy", opt)
        net.forward(X)
    return X, y


def test_the_openblas_of_vgcores_products_is_reached():
    info = vg.blas_policy()
    if _vgcore_blas() is None:
        pytest.skip("the BLAS of vgcore's products is not an OpenBLAS threadpoolctl sees here")
    assert info["bound"] is True
    assert "set_num_threads" in info["symbol"]
    assert info["max_mnk"] == info["default_max_mnk"] == 4194304
    assert info["adapt"] is True and info["probe_every"] == 32


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_blas_thread_count_is_as_before_after_every_pass(dtype, threads):
    with num_threads(threads):
        before = _blas_threads()
        net = _mixed_net(dtype)
        _steps(net, 5)
        assert _blas_threads() == before
        assert _engine.blas_one_thread_info()["holders"] == 0


def test_a_limit_the_user_set_with_threadpoolctl_is_kept():
    net = _mixed_net(np.float32)
    with num_threads(2):
        with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
            _steps(net, 3)
            assert all(i["num_threads"] == 1 for i in vg.blas_info())
        assert all(i["num_threads"] == 2 for i in vg.blas_info())


def _holds_seen_during_passes(net, X, passes=300, enough=None):
    """(holders, vgcore's BLAS count) seen by a watcher thread while `net` runs forward passes,
    every product through BLAS (vgcore's own kernel would take these narrow ones); stops early
    once enough(seen) is true."""
    blas = _vgcore_blas()
    ctl = threadpoolctl.ThreadpoolController().select(filepath=blas["filepath"]) \
        if blas else None
    seen, done = [], threading.Event()

    def watch():
        while not done.is_set():
            seen.append((_engine.blas_one_thread_info()["holders"],
                         ctl.info()[0]["num_threads"] if ctl is not None else None))

    _engine.set_gemm_isa("none")
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(passes):
            net.forward(X)
            if enough is not None and enough(seen):
                break
    finally:
        done.set()
        watcher.join(timeout=30)
        _engine.set_gemm_isa("best")
    return seen


def test_a_pass_of_small_products_holds_the_count_at_one_while_it_runs(policy_applies):
    if not vg.blas_policy()["bound"]:
        pytest.skip("the BLAS's thread count cannot be reached here")
    net = vg.MLP([32] * 400 + [10], activation="tanh", init="glorot_uniform", seed=0)
    X = np.random.default_rng(0).standard_normal((256, 32), dtype=np.float32)
    with num_threads(2):
        seen = _holds_seen_during_passes(
            net, X, enough=lambda seen: len(seen) > 50 and any(h == 1 for h, _ in seen))
        held = [(h, c) for h, c in seen if h == 1]
        assert held, "no pass was seen holding the BLAS at one thread"
        # while held, vgcore's OpenBLAS runs one thread; the count comes back after the pass
        assert any(c == 1 for _, c in held)
        assert all(i["num_threads"] == 2 for i in vg.blas_info())


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_results_do_not_depend_on_the_policy(dtype, threads):
    # on a BLAS that rounds the same at any thread count the policy acts and must not change a
    # bit; on one that does not (threads_change_bits), vgcore leaves the count alone and the
    # policy must not change a bit either
    grads = []
    with num_threads(threads):
        for limit, adapt in ((0, False), (None, False), (1e12, False), (0, True), (None, True)):
            vg.set_blas_policy(max_mnk=limit, adapt=adapt)
            try:
                net = _mixed_net(dtype, seed=3)
                _steps(net, 40)     # with adapt, both modes run (the other every 32nd pass)
                grads.append((net.params.copy(), net.grads.copy()))
            finally:
                vg.set_blas_policy(max_mnk=None, adapt=True)
    for p, g in grads[1:]:
        np.testing.assert_array_equal(p, grads[0][0])
        np.testing.assert_array_equal(g, grads[0][1])


def test_networks_in_several_threads_give_the_count_back(policy_applies):
    errors = []
    barrier = threading.Barrier(3)

    def work(seed, dtype):
        try:
            barrier.wait(timeout=60)
            _steps(_mixed_net(dtype, seed), 6, seed)
        except Exception as exc:  # reported below
            errors.append(exc)

    with num_threads(2):
        before = _blas_threads()
        workers = [threading.Thread(target=work, args=(k, (np.float32, np.float64)[k % 2]))
                   for k in range(3)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=120)
        assert not any(w.is_alive() for w in workers)
        assert not errors
        assert _blas_threads() == before
        assert _engine.blas_one_thread_info()["holders"] == 0


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "big", True, [1]])
def test_a_bad_limit_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match="max_mnk: expected a finite number"):
        vg.set_blas_policy(max_mnk=bad)
    assert vg.blas_policy()["max_mnk"] == vg.blas_policy()["default_max_mnk"]


@pytest.mark.parametrize("bad", [1, "yes", None])
def test_a_bad_adapt_is_refused_naming_it(bad):
    with pytest.raises(TypeError, match="adapt: expected True or False"):
        vg.set_blas_policy(adapt=bad)
    assert vg.blas_policy()["adapt"] is True


def test_setting_the_policy_takes_effect_and_none_restores_the_limit():
    try:
        vg.set_blas_policy(max_mnk=0)
        assert vg.blas_policy()["max_mnk"] == 0
        vg.set_blas_policy(max_mnk=1000, adapt=False)
        assert vg.blas_policy()["max_mnk"] == 1000 and vg.blas_policy()["adapt"] is False
        vg.set_blas_policy()                    # nothing given: nothing changes
        assert vg.blas_policy()["max_mnk"] == 1000 and vg.blas_policy()["adapt"] is False
    finally:
        vg.set_blas_policy(max_mnk=None, adapt=True)
    assert vg.blas_policy()["max_mnk"] == 4194304 and vg.blas_policy()["adapt"] is True


# ------------------------------------------------------------------ adapting to the load

def test_a_network_measures_both_modes_and_tries_the_other_every_32nd_pass(
        policy_applies):
    if not vg.blas_policy()["bound"]:
        pytest.skip("the BLAS's thread count cannot be reached here")
    net = _mixed_net(np.float32)
    fresh = net.blas_choice()
    assert fresh["forward"] == {"passes": 0, "one_thread": False,
                                "seconds_per_mnk": (None, None)}
    _engine.set_batch_chunks(False)             # batch chunks would run it without BLAS
    try:
        with num_threads(2):
            _steps(net, 40)                     # 80 forward passes, 40 backward
    finally:
        _engine.set_batch_chunks(True)
    choice = net.blas_choice()
    assert choice["forward"]["passes"] == 80 and choice["backward"]["passes"] == 40
    for d in ("forward", "backward"):
        many, one = choice[d]["seconds_per_mnk"]
        assert many > 0 and one > 0
        assert choice[d]["one_thread"] == (one < many)


def test_after_a_switch_the_mode_left_is_tried_again_soon():
    # the chooser (vg_blas_threads.h), fed costs per pass: two threads cost 1, one thread 1.8;
    # a burst of 6 passes makes two threads cost 3 (another library's BLAS threads spinning)
    quiet, burst = (1.0, 1.8), (3.0, 1.8)
    modes, choice = _engine.choice_trace([quiet] * 20 + [burst] * 6 + [quiet] * 80)
    assert modes[0] == 1 and modes[1:20] == [0] * 19      # each measured, then the faster
    assert 1 in modes[20:26]                               # the burst moves it to one thread
    back = next(i for i in range(26, len(modes)) if modes[i:i + 3] == [0, 0, 0])
    assert back <= 26 + 12                                 # within 12 passes of the burst's end
    assert modes[26:back].count(0) >= 1                    # brought back by probes of two
    # then probes back off: four probes of one thread (2, 4, 8, 16 passes after the switch
    # back), each two passes, a warm-up and the one that counts
    assert sum(modes[back:]) <= 8 and modes[-25:] == [0] * 25
    assert choice["one_thread"] is False and choice["passes"] == 106
    # a load that stays: one thread, with two tried only now and then
    modes, choice = _engine.choice_trace([quiet] * 20 + [burst] * 300)
    assert choice["one_thread"] is True
    assert modes[-200:].count(0) <= 6                     # every 128th pass once it settles
    assert modes[20:60].count(0) <= 16                    # the quick probes after the switch
    runs = "".join(map(str, modes[60:])).split("1")
    assert {len(r) for r in runs if r} == {2}             # each probe: two passes of two threads
    # when that load ends, the next probe finds two threads faster and confirms it 2 passes
    # later (not a probe period later): back within a probe period and a few passes
    modes, choice = _engine.choice_trace([quiet] * 20 + [burst] * 300 + [quiet] * 300)
    back = next(i for i in range(320, len(modes)) if modes[i:i + 10] == [0] * 10)
    assert back - 320 <= 128 + 20 and choice["one_thread"] is False
    # quiet throughout: one thread (1.8x slower) tried no more often than every 32nd pass
    modes, _ = _engine.choice_trace([quiet] * 200)
    assert sum(modes[2:]) <= 2 * (200 // 32 + 1)


def test_a_lucky_probe_gets_one_confirming_probe_not_a_run_of_them():
    # two threads cost 1.0, one thread 1.2, except one lucky counted probe of one thread (0.9)
    # after pass 100: it is confirmed 2 passes later (1.2: no switch), and the next probe
    # comes a probe period later, not 4, 8 and 16 passes later
    costs, lucky_at = [], None
    for i in range(300):
        modes, _ = _engine.choice_trace(costs + [(1.0, 1.2)])
        counted = i > 100 and modes[-1] == 1 and modes[-2] == 1
        if counted and lucky_at is None:
            lucky_at = i
        costs.append((1.0, 0.9 if i == lucky_at else 1.2))
    modes, choice = _engine.choice_trace(costs)
    assert lucky_at is not None and choice["one_thread"] is False
    starts = [i for i in range(lucky_at + 1, len(modes)) if modes[i] == 1 and modes[i - 1] == 0]
    assert starts[0] - lucky_at <= 4                      # the confirming probe
    assert starts[1] - starts[0] >= 30                    # then the period again


def test_noisy_costs_cost_little_whichever_mode_runs():
    # costs that vary by +-10% from pass to pass
    rng = np.random.default_rng(7)
    costs = [(rng.uniform(0.9, 1.1), 1.3 * rng.uniform(0.9, 1.1)) for _ in range(1000)]
    modes, choice = _engine.choice_trace(costs)
    assert choice["one_thread"] is False
    assert sum(modes[10:]) <= 70             # two-pass probes every 32nd pass
    # two modes 5% apart: whichever runs, the cost stays within 2% of the faster one's
    costs = [(rng.uniform(0.9, 1.1), 1.05 * rng.uniform(0.9, 1.1)) for _ in range(1000)]
    modes, _ = _engine.choice_trace(costs)
    ran = np.mean([c[m] for c, m in zip(costs, modes)])
    assert ran <= 1.02 * np.mean([c[0] for c in costs])


def test_a_probe_counts_its_second_pass_only():
    # two threads cost 1 when warm, but 5 on the first pass after one-thread passes (a worker
    # that slept, cold caches); a 20-pass load (two threads cost 4) moves the chooser to one
    # thread (1.8).  Probes of one pass would see only cold passes (5) and keep one thread for
    # good; a probe's first pass is a warm-up, so two threads come back and stay
    costs = []
    for i in range(300):
        modes, _ = _engine.choice_trace(costs + [(1.0, 1.8)])
        cold = i > 0 and modes[-1] == 0 and modes[-2] == 1
        costs.append((4.0 if 20 <= i < 40 else 5.0 if cold else 1.0, 1.8))
    modes, choice = _engine.choice_trace(costs)
    assert 1 in modes[20:40]                                 # the load moved it
    assert choice["one_thread"] is False
    assert modes[-100:].count(1) <= 4                        # back on two threads


def test_a_network_of_small_products_has_nothing_to_choose():
    net = vg.MLP([32] * 6 + [10], seed=0)
    X = np.zeros((64, 32), np.float32)
    for _ in range(5):
        net.forward(X)
    assert net.blas_choice()["forward"]["passes"] == 0


def test_without_adapt_nothing_is_measured():
    try:
        vg.set_blas_policy(adapt=False)
        net = _mixed_net(np.float32)
        _steps(net, 3)
        assert net.blas_choice()["forward"]["passes"] == 0
    finally:
        vg.set_blas_policy(adapt=True)


# ------------------------------------------------- a BLAS that rounds differently per thread count

def test_the_probe_is_repeatable_and_puts_the_count_back():
    before = _blas_threads()
    with num_threads(2):
        inside = _blas_threads()
        first = _engine.blas_threads_change_bits()
        assert _blas_threads() == inside
        assert _engine.blas_threads_change_bits() == first
    assert _blas_threads() == before
    assert vg.blas_policy()["threads_change_bits"] == first


def test_hands_off_when_the_blas_changes_bits_with_threads():
    if not vg.blas_policy()["bound"]:
        pytest.skip("the BLAS's thread count cannot be reached here")
    found = vg.blas_policy()["threads_change_bits"]
    net = _mixed_net(np.float32)
    small = vg.MLP([32] * 400 + [10], activation="tanh", init="glorot_uniform", seed=0)
    X = np.random.default_rng(0).standard_normal((256, 32), dtype=np.float32)
    _engine.set_blas_bits_vary(True)
    _engine.set_batch_chunks(False)
    try:
        assert vg.blas_policy()["hands_off"] is True
        with num_threads(2):
            # while passes of small products run, nothing holds the count at one
            seen = _holds_seen_during_passes(small, X)
            assert len(seen) > 10 and all(h == 0 for h, _ in seen)
            assert all(c in (None, 2) for _, c in seen)
            _steps(net, 40)
            # nothing adapted: every product ran at the count the user set
            assert net.blas_choice()["forward"]["passes"] == 0
            assert net.blas_choice()["backward"]["passes"] == 0
            assert all(i["num_threads"] == 2 for i in vg.blas_info())
        vg.set_blas_policy(reproducible=False)          # speed under load over the bits
        assert vg.blas_policy()["hands_off"] is False
        with num_threads(2):
            _steps(net, 2)
            assert any(h == 1 for h, _ in _holds_seen_during_passes(small, X))
        assert net.blas_choice()["forward"]["passes"] == 4
    finally:
        vg.set_blas_policy(reproducible=True)
        _engine.set_batch_chunks(True)
        _engine.set_blas_bits_vary(found)
    assert vg.blas_policy()["reproducible"] is True


@pytest.mark.parametrize("bad", [1, "yes", None])
def test_a_bad_reproducible_is_refused_naming_it(bad):
    with pytest.raises(TypeError, match="reproducible: expected True or False"):
        vg.set_blas_policy(reproducible=bad)
    assert vg.blas_policy()["reproducible"] is True
