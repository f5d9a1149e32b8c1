"""The ``vgcore`` command.

``vgcore demo`` (the default) trains deep networks on a synthetic task and prints the gradient
norm reaching each layer, so the vanishing gradient can be seen: with sigmoid units and the
standard initialisation the lower layers get almost nothing, with ReLU and He initialisation
the gradient arrives intact.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from vgcore.datasets import gaussian_mixture  # noqa: F401  (kept importable from here)


def _demo(args):
    import vgcore as vg

    if args.threads is not None:
        vg.set_num_threads(args.threads)
    X, y = gaussian_mixture(4096, args.width, 10, seed=args.seed)
    configs = [
        ("sigmoid", "standard", "sigmoid, standard init"),
        ("tanh", "standard", "tanh, standard init"),
        ("tanh", "orthogonal", "tanh, orthogonal init"),
        ("relu", "he_normal", "relu, He init"),
    ]
    sizes = [args.width] + [args.width] * args.depth + [10]
    print(f"vgcore demo: {args.depth} hidden layers of {args.width}, 10-class Gaussian mixture, "
          f"SGD lr={args.lr}, batch {args.batch}, {args.steps} steps "
          f"({vg.get_num_threads()} threads, OpenMP {'on' if vg.openmp_enabled() else 'off'})")
    rows = []
    for act, init, label in configs:
        net = vg.MLP(sizes, activation=act, init=init, seed=args.seed)
        opt = vg.optim.SGD(net, lr=args.lr)
        rng = np.random.default_rng(args.seed)
        first = None
        t0 = time.perf_counter()
        for step in range(args.steps):
            idx = rng.integers(0, X.shape[0], args.batch)
            loss = net.train_step(X[idx], y[idx], "cross_entropy", opt)
            if first is None:
                first = net.gradient_flow().grad_norm      # measured inside the step
                first_loss = loss
        elapsed = time.perf_counter() - t0
        norms = net.gradient_flow().grad_norm
        acc = float(np.mean(np.argmax(net.forward(X), axis=1) == y))
        rows.append((label, first, norms, first_loss, loss, acc, elapsed))

    print()
    print("gradient norm ||dL/dW_l|| per layer at the first step (layer 1 = input side)")
    header = "layer  " + "".join(f"{label:>26s}" for label, *_ in rows)
    print(header)
    L = len(sizes) - 1
    shown = sorted({0, 1, 2, L // 4, L // 2, 3 * L // 4, L - 3, L - 2, L - 1} & set(range(L)))
    for l in shown:
        print(f"{l + 1:5d}  " + "".join(f"{r[1][l]:26.3e}" for r in rows))
    print(f"{'first/last':>10s} " + "".join(f"{r[1][0] / max(r[1][-1], 1e-300):26.3e}"
                                            for r in rows)[1:])
    print()
    print(f"{'configuration':26s} {'loss start':>11s} {'loss end':>9s} {'accuracy':>9s} "
          f"{'time':>8s}")
    for label, first, norms, l0, l1, acc, el in rows:
        print(f"{label:26s} {l0:11.4f} {l1:9.4f} {acc:9.1%} {el:7.2f}s")
    print()
    print("Chance accuracy is 10%; ln 10 = 2.303 is the loss of a network that has learnt "
          "nothing.")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="vgcore",
        description="See, measure and fix vanishing and exploding gradients in deep MLPs.",
        epilog="example: vgcore demo --depth 30 --width 64 --steps 300")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="train deep networks and print per-layer gradient norms")
    demo.add_argument("--depth", type=int, default=20, help="hidden layers (default 20)")
    demo.add_argument("--width", type=int, default=64, help="hidden width (default 64)")
    demo.add_argument("--steps", type=int, default=300, help="SGD steps (default 300)")
    demo.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    demo.add_argument("--lr", type=float, default=0.05, help="learning rate (default 0.05)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.command in (None, "demo"):
        if args.command is None:
            args = parser.parse_args(["demo"] + (argv or []))
        for name in ("depth", "width", "steps", "batch"):
            if getattr(args, name) < 1:
                parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
        if not args.lr > 0:
            parser.error(f"--lr must be > 0, got {args.lr}")
        if args.threads is not None and args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        return _demo(args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
