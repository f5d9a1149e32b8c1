"""Which compiled code runs a narrow network: vgcore's own matrix product, batch chunks, and
how float32 tanh and sigmoid are computed.

- **vgcore's matrix product** (``src/vg_gemm.h``): products of at most ``max_mnk``
  multiply-adds (float64 counts twice) with at least 16 output columns (8 in float64), the
  products of narrow layers, skip BLAS: register tiles of the operands where they lie, compiled
  for AVX-512 and for AVX2 with FMA and picked when vgcore loads.  BLAS spends much of such a
  product on the call and on packing both operands; the transposed product of the backward pass
  (``dX = delta W^T``) takes a transposed copy of ``W`` instead of BLAS's slower transposed
  path.  Larger products go to BLAS.  AVX-512 and AVX2 give the same bits.
- **Batch chunks** (``src/_engine_chunks.pxi``): a plain network (no normalisation, residual or
  dropout) whose products all fit the kernel runs each pass as two halves of the batch, each
  through every layer, one per thread, with one parallel region per pass instead of one per
  product; the second half's gradients and measurements are added to the first's when the pass
  ends.  Only when each half has at least ``min_rows`` rows and ``min_mnk`` multiply-adds of
  work (waking a thread costs tens of microseconds).  One thread runs both halves layer by
  layer (``src/_engine_chunks_one.pxi``: the forward and input-gradient products once over the
  whole batch, the sums over the batch per half) and gets the same bits: results do not depend
  on the thread count.

- **tanh and sigmoid with fused multiply-adds** (``src/vg_math.h``): in float32 the forward
  kernels compute them with one rounding per multiply-add and a shorter chain of dependent
  operations, about 20% faster on a Zen 3 core (tanh 1.67 -> 1.36 ns a value with the
  measurements), where the CPU has FMA (AVX2 machines; arm64).  Elsewhere they use the
  separately rounded form.  Both stay within the same error bounds (tanh 2.3 ulp, and exactly
  1 where the correctly rounded tanh is); their last bits differ in about 0.15% of the values,
  so two kinds of machine can differ in the last bits, while one machine gives the same bits
  at any thread count.

Results agree with BLAS's and with the unchunked pass within rounding (the order of the sums
differs); the tests hold every path against :mod:`vgcore.reference` and finite differences.
"""
from __future__ import annotations

from vgcore import _engine

__all__ = ["kernel_info", "set_kernels", "kernels_line"]

_GEMM = ("best", "avx512", "avx2", "blas")
_ACTIVATIONS = ("best", "fma", "plain")
_UNCHANGED = object()


def kernel_info() -> dict:
    """``{"gemm": {"isa", "best", "max_mnk"}, "batch_chunks": {"on", "chunks", "min_rows",
    "min_mnk"}, "activations": {"kind", "best"}}``: ``isa`` is the instruction set vgcore's
    matrix product runs with now ("avx512", "avx2", or "none": BLAS computes every product),
    ``best`` what this CPU supports; ``activations["kind"]`` is how float32 tanh and sigmoid
    are computed now, "fma" or "plain"."""
    g = _engine.gemm_kernel_info()
    c = _engine.batch_chunks_info()
    a = _engine.act_kernel_info()
    return {"gemm": {"isa": g["isa"], "best": g["best"], "max_mnk": int(g["max_mnk"])},
            "batch_chunks": {"on": c["on"], "chunks": c["chunks"], "min_rows": c["min_rows"],
                             "min_mnk": int(c["min_mnk"])},
            "activations": {"kind": a["kind"], "best": a["best"]}}


def set_kernels(gemm=_UNCHANGED, batch_chunks=_UNCHANGED, activations=_UNCHANGED) -> None:
    """Choose the compiled code, process-wide (to compare; the defaults are the fastest
    measured).

    ``gemm``: ``"best"`` (the default: AVX-512 or AVX2, what the CPU supports), ``"avx512"``,
    ``"avx2"``, or ``"blas"`` (BLAS computes every product).  ``batch_chunks``: True (the
    default) or False.  ``activations``: ``"best"`` (the default: ``"fma"`` where the CPU
    has fused multiply-adds), ``"fma"`` or ``"plain"``, for float32 tanh and sigmoid; "fma"
    on a CPU without the instruction gives the same values through the C library's exact
    ``fmaf``, many times slower (to compare).  Refuses an instruction set the CPU lacks for
    ``gemm``, naming what it has.  Nothing changes unless every argument is valid.
    """
    if activations is not _UNCHANGED:
        if not isinstance(activations, str) or activations not in _ACTIVATIONS:
            raise ValueError(f"activations: expected one of "
                             f"{', '.join(map(repr, _ACTIVATIONS))}, got {activations!r}")
    if gemm is not _UNCHANGED:
        if gemm not in _GEMM:
            raise ValueError(f"gemm: expected one of {', '.join(map(repr, _GEMM))}, got "
                             f"{gemm!r}")
        best = _engine.gemm_kernel_info()["best"]
        if gemm != "blas" and gemm != "best" and \
                ("avx512", "avx2").index(gemm) < ("avx512", "avx2", "none").index(best):
            raise ValueError(f"gemm: this CPU does not support {gemm!r}; it supports "
                             f"{best!r}" if best != "none" else
                             f"gemm: this CPU has neither AVX-512 nor AVX2; only 'blas' and "
                             f"'best' (which is BLAS here) are available, got {gemm!r}")
    if batch_chunks is not _UNCHANGED and not isinstance(batch_chunks, bool):
        raise TypeError(f"batch_chunks: expected True or False, got {batch_chunks!r}")
    if gemm is not _UNCHANGED:
        _engine.set_gemm_isa("none" if gemm == "blas" else gemm)
    if isinstance(batch_chunks, bool):
        _engine.set_batch_chunks(batch_chunks)
    if activations is not _UNCHANGED:
        _engine.set_act_fma(activations)


def kernels_line(info=None) -> str:
    """What :func:`kernel_info` says, in one line (for reports and benchmarks)."""
    k = kernel_info() if info is None else info
    g, c = k["gemm"], k["batch_chunks"]
    gemm = ("BLAS for every product" if g["isa"] == "none" else
            f"vgcore's matrix product ({g['isa']}) for products <= {g['max_mnk']:,} "
            f"multiply-adds, BLAS above")
    chunks = (f"batch chunks on (2 halves, >= {c['min_mnk']:,} multiply-adds each)"
              if c["on"] else "batch chunks off")
    act = k.get("activations")          # absent from records made before it was added
    if act is None:
        return f"{gemm}; {chunks}"
    how = "with fused multiply-adds" if act["kind"] == "fma" else "without fused multiply-adds"
    return f"{gemm}; {chunks}; float32 tanh and sigmoid {how}"
