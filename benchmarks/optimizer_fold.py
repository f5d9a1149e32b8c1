#!/usr/bin/env python
"""The optimiser's step folded into net.train_step against a separate optimizer.step(),
interleaved in one process: python benchmarks/optimizer_fold.py [--rounds N] [--threads N]"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _bench_common as bc  # noqa: E402
import vgcore as vg  # noqa: E402
from report import time_interleaved  # noqa: E402
from test_optimizer_fold import CONFIGS, OPTIMIZERS, make  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        vg.set_num_threads(args.threads)
    print(f"threads {vg.get_num_threads()}; medians of {args.rounds} interleaved rounds\n")
    print("| config | optimiser | separate step ms | folded ms | separate / folded |")
    print("|---|---|---:|---:|---:|")
    for name in CONFIGS:
        cfg = bc.CONFIGS[name]
        for opt in OPTIMIZERS:
            t = time_interleaved({"separate": make(cfg, "separate", opt),
                                  "folded": make(cfg, "folded", opt)},
                                 args.rounds, 0.05, 0.2, lead_in_s=0.03)
            a, b = t["separate"]["median"], t["folded"]["median"]
            print(f"| {name} | {opt} | {a * 1e3:.3f} | {b * 1e3:.3f} | {a / b:.3f} |",
                  flush=True)
    print(f"\nCPU: {bc.cpu_model()}")


if __name__ == "__main__":
    main()
