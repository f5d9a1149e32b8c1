"""The optional dependencies of vgcore.interop: vgcore imports without them, and calling a
function that needs one raises ImportError saying what to install."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import vgcore as vg


@pytest.fixture
def without(monkeypatch):
    def hide(*names):
        for name in names:
            for mod in list(sys.modules):
                if mod == name or mod.startswith(name + "."):
                    monkeypatch.delitem(sys.modules, mod)
            monkeypatch.setitem(sys.modules, name, None)     # import raises ImportError
    return hide


def test_the_torch_bridge_without_pytorch_says_what_to_install(without):
    without("torch")
    with pytest.raises(ImportError, match=r"needs PyTorch.*vgcore\[torch\]"):
        vg.MLP.from_torch(object())
    with pytest.raises(ImportError, match=r"needs PyTorch"):
        vg.MLP([2, 3, 2], seed=0).to_torch()


def test_tensorboard_without_tensorboardx_says_what_to_install(without, tmp_path):
    without("tensorboardX")
    with pytest.raises(ImportError, match=r"needs tensorboardX.*vgcore\[tensorboard\]"):
        vg.Recorder(tensorboard=tmp_path)
    X, y = vg.datasets.gaussian_mixture(32, 4, 2)
    with pytest.raises(ImportError, match=r"needs tensorboardX"):
        vg.fit(vg.MLP([4, 4, 2], seed=0), X, y, epochs=1, verbose=0,
               callbacks=[vg.TensorBoard(tmp_path)])


def test_parquet_without_pyarrow_says_what_to_install(without, tmp_path):
    path = tmp_path / "d.parquet"
    path.write_bytes(b"PAR1 not really")
    without("pyarrow")
    with pytest.raises(ImportError, match=r"needs pyarrow.*vgcore\[parquet\]"):
        vg.datasets.load(path, label=0)
    np.savez(tmp_path / "d.npz", X=np.zeros((2, 2)), y=np.zeros(2, int))
    assert vg.datasets.load(tmp_path / "d.npz").X.shape == (2, 2)     # the rest still works
