"""Profile the gradient flow of an existing PyTorch MLP with vgcore.

A 10-hidden-layer sigmoid network built in PyTorch (its default initialisation) is converted
with ``vg.MLP.from_torch``, trained for a few SGD steps by vgcore, and its per-layer gradient
flow and diagnosis are printed; then the same network with ``nn.BatchNorm1d`` before each
sigmoid, the remedy the diagnosis suggests.  The trained vgcore network goes back to PyTorch
with ``net.to_torch()``.

    pip install "vgcore[torch]"          # install the CPU build of PyTorch first
    python examples/profile_torch_mlp.py
"""
import numpy as np
import torch
from torch import nn

import vgcore as vg


def torch_mlp(depth, width, n_in, n_out, batch_norm):
    layers, fan_in = [], n_in
    for _ in range(depth):
        layers.append(nn.Linear(fan_in, width))
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(nn.Sigmoid())
        fan_in = width
    layers.append(nn.Linear(fan_in, n_out))
    return nn.Sequential(*layers)


def profile(module, X, y, steps=50, batch=64, lr=0.1):
    net = vg.MLP.from_torch(module)          # same weights, same function
    opt = vg.optim.SGD(net, lr=lr)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        idx = rng.integers(0, len(X), batch)
        loss = net.train_step(X[idx], y[idx], "cross_entropy", opt)
    print(f"loss after {steps} steps: {loss:.3f}")
    print(net.gradient_flow())
    print(vg.format_findings(vg.diagnose(net)))
    return net


def main():
    torch.manual_seed(0)
    X, y = vg.datasets.gaussian_mixture(2048, 32, 10, seed=0)
    print("== PyTorch MLP: 10 sigmoid layers of 64, PyTorch's default init ==")
    profile(torch_mlp(10, 64, 32, 10, batch_norm=False), X, y)
    print()
    print("== the same with nn.BatchNorm1d before every sigmoid ==")
    net = profile(torch_mlp(10, 64, 32, 10, batch_norm=True), X, y)
    back = net.to_torch().eval()             # the trained network, back in PyTorch
    with torch.no_grad():
        same = np.allclose(back(torch.from_numpy(X[:8])).numpy(),
                           net.eval_mode().predict(X[:8]), rtol=1e-4, atol=1e-5)
    print(f"\nnet.to_torch() computes the same outputs: {same}")


if __name__ == "__main__":
    main()
