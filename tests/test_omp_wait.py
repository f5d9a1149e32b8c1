"""vgcore on a shared machine: OpenMP's idle threads spin briefly, then sleep, unless the user
chose, the environment is left as it was, and results do not depend on the thread count where
they did not before (the elementwise kernels, and matrix products small enough for one BLAS
thread)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import vgcore as vg
from _vgtest import num_threads

CODE = ("import ctypes, json, os, sys\n"
        "if sys.argv[1] == 'preload':\n"
        "    ctypes.CDLL('libgomp.so.1')\n"
        "import vgcore\n"
        "from vgcore.core._threads import wait_policy\n"
        "print(json.dumps([wait_policy(), os.environ.get('OMP_WAIT_POLICY'),\n"
        "                  os.environ.get('GOMP_SPINCOUNT')]))\n")


def _state(preload=False, **env):
    full = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    full.update(env)
    # run from / so that the installed vgcore is imported, not the source folder
    out = subprocess.run([sys.executable, "-c", CODE, "preload" if preload else "-"], env=full,
                         cwd="/", capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


def test_openmp_spins_briefly_and_the_environment_is_restored():
    state, policy, spin = _state()
    if vg.openmp_enabled():
        assert state == {"policy": "spin then sleep", "spincount": "10000", "set_by": "vgcore"}
    else:                                       # no OpenMP runtime: nothing to set
        assert state == {"policy": "default", "spincount": None, "set_by": "not libgomp"}
    assert policy is None and spin is None       # children inherit the user's environment


@pytest.mark.parametrize("env, expected", [
    ({"OMP_WAIT_POLICY": "ACTIVE"}, {"policy": "active", "spincount": None, "set_by": "user"}),
    ({"OMP_WAIT_POLICY": "PASSIVE"}, {"policy": "passive", "spincount": None,
                                      "set_by": "user"}),
    ({"GOMP_SPINCOUNT": "1000"}, {"policy": "default", "spincount": "1000", "set_by": "user"}),
])
def test_a_wait_policy_the_user_set_is_kept(env, expected):
    state, policy, spin = _state(**env)
    assert state == expected
    assert (policy, spin) == (env.get("OMP_WAIT_POLICY"), env.get("GOMP_SPINCOUNT"))


def test_openmp_loaded_before_vgcore_keeps_its_settings():
    if not vg.openmp_enabled():
        pytest.skip("vgcore was built without OpenMP")
    try:
        state, policy, _ = _state(preload=True)
    except subprocess.CalledProcessError as e:      # no libgomp.so.1 to preload
        pytest.skip(f"libgomp.so.1 cannot be loaded here: {e.stderr.strip()[-200:]}")
    assert state == {"policy": "default", "spincount": None, "set_by": "another library"}
    assert policy is None


def _train(sizes, batch, act, threads, steps=3):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], batch)
    with num_threads(threads):
        net = vg.MLP(sizes, activation=act, init="glorot_uniform", seed=0)
        opt = vg.optim.SGD(net, lr=0.01)
        losses = [net.train_step(X, y, "cross_entropy", opt) for _ in range(steps)]
        flow = net.gradient_flow()
    return np.array(losses), net.params.copy(), flow.grad_norm, flow.per_sample_grad_norm


@pytest.mark.parametrize("sizes, batch, act", [
    ([64] + [64] * 20 + [10], 64, "tanh"),         # deep-narrow's shapes, shorter
    ([32] * 30 + [10], 32, "sigmoid"),             # deep-narrow-2's
])
def test_results_are_identical_across_thread_counts_with_small_matrix_products(sizes, batch,
                                                                               act):
    one, two = _train(sizes, batch, act, 1), _train(sizes, batch, act, 2)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_elementwise_work_split_over_threads_gives_the_one_thread_values():
    """8192 x 64 tanh entries: above the size at which the activation is split over vgcore's
    threads (in the unmeasured pass), with the workers waiting between the parallel regions.  BLAS
    stays on one thread (its products round differently on two)."""
    from threadpoolctl import threadpool_limits
    X = np.random.default_rng(1).standard_normal((8192, 8)).astype(np.float32)
    outs = []
    for threads in (1, 2):
        with num_threads(threads), threadpool_limits(1, user_api="blas"):
            assert vg.get_num_threads() == threads
            net = vg.MLP([8, 64, 10], activation="tanh", seed=0, measure=False)
            outs.append([net.forward(X).copy() for _ in range(2)])
    np.testing.assert_array_equal(outs[0], outs[1])
