"""pytest-benchmark setup for vgcore: shared helpers on sys.path, BLAS line in the header,
achieved GFLOP/s summary at the end.

Set VGCORE_BENCH_THREADS=N to run everything (vgcore's OpenMP and every BLAS) on N threads.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _bench_common as bc  # noqa: E402

bc.apply_thread_env()


def pytest_report_header(config):
    return ["vgcore benchmarks: " + bc.blas_summary()]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not bc.RESULTS:
        return
    tr = terminalreporter
    tr.section("vgcore: achieved GFLOP/s (3 GEMMs per layer, median time)")
    by_cfg = {}
    for r in bc.RESULTS:
        by_cfg.setdefault(r["config"], {})[r["impl"]] = r
    tr.write_line(f"{'config':<14} {'impl':<12} {'median ms':>10} {'GFLOP/s':>9} "
                  f"{'% of sgemm-only':>16}")
    for cfg, rows in by_cfg.items():
        base = rows.get("gemm-scipy")
        for impl, r in rows.items():
            pct = f"{100 * r['gflops'] / base['gflops']:.0f}%" if base else "-"
            tr.write_line(f"{cfg:<14} {impl:<12} {r['median_ms']:>10.3f} {r['gflops']:>9.1f} "
                          f"{pct:>16}")
