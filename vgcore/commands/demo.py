"""``vgcore demo``: train deep networks on a synthetic task and print the gradient norm reaching
each layer, so the vanishing gradient can be seen: with sigmoid units and the standard
initialisation the lower layers get almost nothing; with ReLU and He initialisation the
gradient arrives intact.

JSON (--json) keys: settings (depth, width, steps, batch, lr, seed, threads, openmp) and runs,
one per configuration: activation, init, label, first_grad_norm (||dL/dW_l|| per layer at the
first step, layer 1 = input side), last_grad_norm (at the last step), loss_start, loss_end,
accuracy (on the whole data set) and seconds."""
from __future__ import annotations

import time

import numpy as np

from vgcore.commands._common import positive_float, positive_int, print_json
from vgcore.train.datasets import gaussian_mixture

HELP = "train deep networks and print per-layer gradient norms (a short demo)"
EXAMPLES = """examples:
  vgcore demo
  vgcore demo --depth 30 --width 64 --steps 300
  vgcore demo --steps 100 --json > demo.json"""


def register(sub):
    p = sub.add_parser("demo", help=HELP, description=__doc__, epilog=EXAMPLES)
    p.add_argument("--depth", type=positive_int, default=20, help="hidden layers (default 20)")
    p.add_argument("--width", type=positive_int, default=64, help="hidden width (default 64)")
    p.add_argument("--steps", type=positive_int, default=300, help="SGD steps (default 300)")
    p.add_argument("--batch", type=positive_int, default=64, help="batch size (default 64)")
    p.add_argument("--lr", type=positive_float, default=0.05,
                   help="learning rate (default 0.05)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--json", action="store_true", help="print every number as JSON")
    p.add_argument("--quiet", action="store_true",
                   help="no header line (demo prints no progress or notes)")
    p.set_defaults(func=run)
    return p


def run(args):
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
    if not (args.json or args.quiet):
        print(f"vgcore demo: {args.depth} hidden layers of {args.width}, "
              f"10-class Gaussian mixture, "
              f"SGD lr={args.lr}, batch {args.batch}, {args.steps} steps "
              f"({vg.get_num_threads()} threads, "
              f"OpenMP {'on' if vg.openmp_enabled() else 'off'})")
    rows = []
    for act, init, label in configs:
        net = vg.MLP(sizes, activation=act, init=init, seed=args.seed)
        opt = vg.optim.SGD(net, lr=args.lr)
        rng = np.random.default_rng(args.seed)
        first = None
        t0 = time.perf_counter()
        for _ in range(args.steps):
            idx = rng.integers(0, X.shape[0], args.batch)
            loss = net.train_step(X[idx], y[idx], "cross_entropy", opt)
            if first is None:
                first = net.gradient_flow().grad_norm      # measured inside the step
                first_loss = loss
        elapsed = time.perf_counter() - t0
        norms = net.gradient_flow().grad_norm
        acc = float(np.mean(np.argmax(net.forward(X), axis=1) == y))
        rows.append((label, first, norms, first_loss, loss, acc, elapsed))

    if args.json:
        print_json({
            "settings": {"depth": args.depth, "width": args.width, "steps": args.steps,
                         "batch": args.batch, "lr": args.lr, "seed": args.seed,
                         "threads": vg.get_num_threads(), "openmp": vg.openmp_enabled()},
            "runs": [{"activation": act, "init": init, "label": label,
                      "first_grad_norm": r[1], "last_grad_norm": r[2], "loss_start": r[3],
                      "loss_end": r[4], "accuracy": r[5], "seconds": r[6]}
                     for (act, init, label), r in zip(configs, rows)]})
        return 0
    if not args.quiet:
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
    for label, _, _, l0, l1, acc, el in rows:
        print(f"{label:26s} {l0:11.4f} {l1:9.4f} {acc:9.1%} {el:7.2f}s")
    if not args.quiet:
        print()
        print("Chance accuracy is 10%; ln 10 = 2.303 is the loss of a network that has learnt "
              "nothing.")
    return 0
