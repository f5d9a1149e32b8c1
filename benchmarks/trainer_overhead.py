#!/usr/bin/env python
"""One epoch through vg.fit against the same train steps called bare, interleaved in one
process: python benchmarks/trainer_overhead.py [--rounds N]"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _bench_common as bc  # noqa: E402
from report import time_interleaved  # noqa: E402
from test_trainer_overhead import CONFIGS, N_SAMPLES, make  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args(argv)
    print("| config | batch | samples | bare epoch ms | vg.fit epoch ms | fit / bare |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in CONFIGS:
        cfg = bc.CONFIGS[name]
        t = time_interleaved({"bare": make(cfg, "bare"), "fit": make(cfg, "trainer")},
                             args.rounds, 0.1, 0.3, lead_in_s=0.05)
        a, b = t["bare"]["median"], t["fit"]["median"]
        print(f"| {name} | {cfg.batch} | {N_SAMPLES} | {a * 1e3:.1f} | {b * 1e3:.1f} | "
              f"{b / a:.3f} |", flush=True)


if __name__ == "__main__":
    main()
