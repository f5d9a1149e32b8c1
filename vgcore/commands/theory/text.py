"""``vgcore theory``'s text output: the tables of the result dict as aligned columns (the
JSON output is the dict itself, ``print_json``)."""
from __future__ import annotations

import math

from vgcore.commands._common import shown_rows


def _f(x, spec=".4g", width=10):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        s = "-"
    elif isinstance(x, float) and math.isinf(x):
        s = "inf" if x > 0 else "-inf"
    else:
        s = format(x, spec)
    return f"{s:>{width}s}"


def _what(r):
    parts = [r["activation"]]
    if r["norm"] == "batch":
        parts.append(f"batch norm (B = {r['batch']:g})")
    elif r["norm"] == "layer":
        parts.append("layer norm")
    if r["residual"] is not None:
        parts.append(f"residual {r['residual']}" + (" (zero-initialised branches)"
                                                   if r["residual_init"] else ""))
    if r["dropout"]:
        parts.append(f"dropout {r['dropout']:g}")
    return " + ".join(parts)


def _print(args, r):
    print(f"vgcore theory: {_what(r)}, q0 = {r['q0']:g} (mean field: infinite width, "
          f"training mode at initialisation)")
    if "batch_norm" in r:
        _print_batch_norm(args, r)
    elif "residual_stream" in r:
        _print_residual(args, r)
    else:
        _print_plain(args, r)
    _print_profiles(args, r)
    if "spectrum" in r:
        _print_spectrum(r)
    if r.get("plots"):
        for path in r["plots"]["written"]:
            print(f"wrote {path}")
    if not args.quiet:
        for n in r["notes"]:
            print(f"note: {n}")


def _print_plain(args, r):
    sb, crit = r["sigma_b2"], r["critical_sigma_w2"]
    layer = r["norm"] == "layer"
    print(f"edge of chaos at sigma_b2 = {sb:g}: sigma_w2* = "
          f"{'none' if crit is None else format(crit, '.4f')}")
    if "dropout_effect" in r:
        e = r["dropout_effect"]
        a, b = e["without"], e["with_dropout"]
        print(f"dropout {e['p']:g} at sigma_w2 = {e['sigma_w2']:.4g}: q* {a['q_star']:.4g} -> "
              f"{b['q_star']:.4g}, chi_1 {a['chi_1']:.4g} -> {b['chi_1']:.4g}, c* "
              f"{a['c_star']:.4g} -> {b['c_star']:.4g}, xi_c {_f(a['xi_c'], '.3g', 0)} -> "
              f"{_f(b['xi_c'], '.3g', 0)}; sigma_w2* {e['critical_sigma_w2_without']:.4g} -> "
              f"{e['critical_sigma_w2_with']:.4g}")
    print()
    if layer:
        print(f"layer norm: chi_1 at sigma_b2 = {sb:g} (q_hat = q / (q + eps) is what the "
              f"activation sees; xi_grad > 0: gradients vanish towards the input, < 0: explode)")
        print(f"{'sigma_w2':>10s} {'q*':>10s} {'q_hat*':>10s} {'chi_1':>10s} "
              f"{'xi_grad':>10s}  phase")
        for t in r["table"]:
            print(f"{t['sigma_w2']:10.4g} {_f(t['q_star'])} {_f(t['q_hat'], '.6f')} "
                  f"{_f(t['chi_1'], '.5f')} {_f(t['xi_grad'], '.3g')}  {t['phase']}")
    else:
        print(f"chi_1 and depth scales at sigma_b2 = {sb:g} (xi in layers; xi_grad > 0: "
              f"gradients vanish towards the input, < 0: explode)")
        print(f"{'sigma_w2':>10s} {'q*':>10s} {'chi_1':>10s} {'c*':>10s} {'chi_c':>10s} "
              f"{'xi_c':>10s} {'xi_grad':>10s}  phase")
        for t in r["table"]:
            print(f"{t['sigma_w2']:10.4g} {_f(t['q_star'])} {_f(t['chi_1'], '.5f')} "
                  f"{_f(t['c_star'])} {_f(t['chi_c'], '.5f')} {_f(t['xi_c'], '.3g')} "
                  f"{_f(t['xi_grad'], '.3g')}  {t['phase']}")
    print()
    g = r["grid"]
    print("chi_1 over (sigma_w2, sigma_b2)")
    corner = "sw2 \\ sb2"
    print(f"{corner:>10s} " + " ".join(f"{b:>9.3g}" for b in g["sigma_b2"]))
    for sw, row in zip(g["sigma_w2"], g["chi_1"]):
        print(f"{sw:10.4g} " + " ".join(f"{x:9.4f}" for x in row))
    print()
    print("critical line (edge of chaos, chi_1 = 1)")
    print(f"{'sigma_b2':>10s} {'sigma_w2*':>10s}")
    for c in r["critical_line"]:
        print(f"{c['sigma_b2']:10.4g} {_f(c['sigma_w2'], '.4f')}")
    print()


def _print_batch_norm(args, r):
    bn = r["batch_norm"]
    B = r["batch"]
    print(f"per-layer growth of E||dL/dz||^2 towards the input, deep in a batch-normalised "
          f"stack: lambda({B:g}) = {bn['factor']:.5g}, at every sigma_w2 and sigma_b2 "
          f"(Yang et al. 2019)")
    if r["dropout"]:
        print(f"with dropout {r['dropout']:g}: {bn['factor_with_dropout']:.5g} per layer")
    print()
    print(f"lambda(B) for {r['activation']}")
    print(f"{'B':>8s} {'lambda':>10s} {'over ' + str(args.depth - 1) + ' layers':>16s}")
    for row in bn["by_batch"]:
        b = row["batch"]
        print(f"{'inf' if math.isinf(b) else int(b):>8} {row['factor']:10.5f} "
              f"{row['over_depth']:16.4g}")
    lim = bn["limits"]
    ident = "" if lim["identity"] is None else f"identity at B = {B:g}: (B-2)/(B-3) = " \
        f"{lim['identity']:.5f}; "
    print(f"(limits: {ident}relu as B -> inf: pi/(pi-1) = {lim['relu_large_batch']:.5f})")
    print()
    s = bn["stats"]
    print(f"batch norm's output at B = {B:g} (z uniform on the sphere of radius sqrt(B) "
          f"orthogonal to (1,...,1)):")
    print(f"  E[phi(z1)] = {s['mean']:.5g}, E[phi(z1)^2] = {s['second_moment']:.5g}, "
          f"E[phi(z1) phi(z2)] = {s['cross_moment']:.5g}, E[phi'(z1)^2] = {s['mu1']:.5g}, "
          f"kappa_1 = {s['kappa1']:.5g}, kappa_2 = {s['kappa2']:.5g}")
    print()


def _print_residual(args, r):
    st = r["residual_stream"]
    print(f"residual stream x_l = x_(l-1) + alpha phi(...), alpha = {st['alpha']:.4g}, "
          f"sigma_w2 = {st['sigma_w2']:.4g}, sigma_b2 = {r['sigma_b2']:g}")
    print("(Q: mean square of the stream's entries, M: their mean; 'no mean' drops the "
          "2 alpha M m term, which is what L ln(1 + alpha^2) assumes)")
    print(f"{'layer':>5s} {'q (branch)':>12s} {'Q':>12s} {'Q (no mean)':>12s} {'M':>10s}")
    layers = st["layers"]
    for i in shown_rows(len(layers), args.rows):
        x = layers[i]
        print(f"{x['layer']:5d} {x['q']:12.5g} {x['second_moment']:12.5g} "
              f"{x['second_moment_without_mean']:12.5g} {x['mean']:10.4g}")
    print(f"critical sigma_w2: none ({r['critical_reason']})")
    print()


def _print_profiles(args, r):
    prof = r["profiles"]
    what = "dL/dz_l" if r["norm"] else "dL/dh_l"
    print(f"predicted gradient profile, {r['depth']} hidden layers, sigma_b2 = "
          f"{r['sigma_b2']:g}: E||{what}||^2 / E||{what[:-1]}{r['depth']}||^2 (layer 1 = "
          f"input side)" + ("; [2-sigma band of one example at width "
                            f"{r['width']}]" if any(p["band_low"] is not None for p in prof)
                            else ""))
    print(f"{'layer':>5s} " + " ".join(f"{'sw2=' + format(p['sigma_w2'], '.4g'):>14s}"
                                       for p in prof))
    for i in shown_rows(r["depth"], args.rows):
        cells = []
        for p in prof:
            c = f"{p['delta_sq'][i]:14.4e}"
            if p["band_low"] is not None:
                c += f" [{p['band_low'][i]:.3g}, {p['band_high'][i]:.3g}]"
            cells.append(c)
        print(f"{i + 1:5d} " + " ".join(cells))


def _print_spectrum(r):
    sp = r["spectrum"]
    meas = sp["width"] is not None
    print()
    print(f"input-output Jacobian at initialisation, {r['depth']} hidden layers: its squared "
          f"singular values predicted by free probability (Pennington et al. 2017)"
          + (f" and measured on networks of width {sp['width']} ({sp['inputs']} inputs, "
             f"seed 0, float64)" if meas else ""))
    print(f"{'sigma_w2':>10s} {'weights':>10s} {'mean':>10s} "
          + (f"{'measured':>10s} " if meas else "")
          + f"{'rel. var':>10s} " + (f"{'measured':>10s} " if meas else "")
          + " dynamical isometry")
    for x in sp["rows"]:
        print(f"{x['sigma_w2']:10.4g} {x['weights']:>10s} {_f(x['predicted_mean'], '.4g')} "
              + (f"{_f(x['measured_mean'], '.4g')} " if meas else "")
              + f"{_f(x['predicted_relative_variance'], '.4g')} "
              + (f"{_f(x['measured_relative_variance'], '.4g')} " if meas else "")
              + (" yes" if x["isometric"] else " no"))
    iso = [x for x in sp["rows"] if x["isometric"]]
    print("dynamical isometry (mean within 0.1 of 1, relative spread below 0.3): "
          + ("; ".join(f"{x['weights']} weights at sigma_w2 = {x['sigma_w2']:.4g}" for x in iso)
             if iso else "none of these"))
