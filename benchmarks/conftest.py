"""pytest-benchmark setup for vgcore: shared helpers on sys.path, the machine (CPU model, BLAS
kernels, threads) in the header and in the saved machine_info, and a summary at the end: per
configuration, each system's median, GFLOP/s and its ratio against tuned NumPy measured in one
interleaved pool.

Set VGCORE_BENCH_THREADS=N to run everything (vgcore's OpenMP, every BLAS, PyTorch) on N
threads.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _bench_common as bc  # noqa: E402

bc.apply_thread_env()


def pytest_report_header(config):
    bc.get_torch()                   # so that the header names PyTorch's threads and BLAS
    return ["vgcore benchmarks: " + bc.blas_summary()]


def pytest_benchmark_update_machine_info(config, machine_info):
    bc.get_torch()
    machine_info["vgcore"] = bc.machine_info()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not bc.RESULTS:
        return
    tr = terminalreporter
    tr.section("vgcore: train step per system (pytest-benchmark median; interleaved pool "
               "median and tuned NumPy / system)")
    tr.write_line(bc.blas_summary())
    by_cfg = {}
    for r in bc.RESULTS:
        by_cfg.setdefault(r["config"], {})[r["impl"]] = r
    tr.write_line(f"{'config':<15} {'system':<12} {'median ms':>10} {'GFLOP/s':>8} "
                  f"{'pool ms':>9} {'numpy/this':>11} {'% of sgemm-only':>16}")
    for cfg, rows in by_cfg.items():
        base = rows.get("gemm-vgcore")
        for impl, r in rows.items():
            pct = f"{100 * r['gflops'] / base['gflops']:.0f}%" if base else "-"
            pool = f"{r['interleaved_ms']:.3f}" if "interleaved_ms" in r else "-"
            vs = f"{r['vs_numpy']:.2f}" if "vs_numpy" in r else "-"
            tr.write_line(f"{cfg:<15} {impl:<12} {r['median_ms']:>10.3f} {r['gflops']:>8.1f} "
                          f"{pool:>9} {vs:>11} {pct:>16}")
