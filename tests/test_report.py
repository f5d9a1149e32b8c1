"""vgcore.experiments.report: the HTML pieces every report page is made of, the run record, and
the compare figures' promises (every curve visible, axes scaled to the data, readable ticks,
the theory's prediction or the reason there is none)."""
from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest

import vgcore as vg
from vgcore.experiments import report
from vgcore.experiments.report import figures


# ------------------------------------------------------------------------------ page pieces
def test_tables_escape_label_every_cell_and_carry_sort_keys():
    html = report.html_table(["name", "ratio"], [["<b>x</b>", "1.5e-05"],
                                                 [report.Raw("<i>y</i>"), ""]],
                             numeric=[1], sortable=True, sort_values=[[None, 1.5e-05],
                                                                      [None, None]])
    assert html.startswith('<div class="scroll"><table class="cards sortable">')
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<i>y</i>" in html       # Raw is not escaped
    assert html.count('data-label="ratio" class="num" data-v="1.5e-05"') == 1
    assert html.count('data-v=""') == 3             # no sort value: sorted last
    assert html.count('<button type="button">') == 2
    plain = report.html_table(["a"], [["1"]], cards=False)
    assert "<table>" in plain and "data-v" not in plain and "<button" not in plain


def test_documents_have_a_viewport_and_a_script_only_for_sortable_tables():
    page = report.html_document("t", report.html_table(["a"], [["1"]]))
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "<script" not in page
    page = report.html_document("t", report.html_table(["a"], [["1"]], sortable=True))
    assert page.count("<script>") == 1 and "<script src" not in page
    assert "@media (max-width: 700px)" in page


def test_toc_links_point_at_sections():
    toc = report.html_toc([("a", "First"), ("b", "Second")])
    body = toc + report.html_section("a", "First", "x") + report.html_section("b", "Second", "y")
    ids = set(re.findall(r'id="([^"]+)"', body))
    assert [h[1:] for h in re.findall(r'href="([^"]+)"', toc)] == ["a", "b"]
    assert {"a", "b"} <= ids


# ------------------------------------------------------------------------------ run record
def test_run_record_has_what_reproduces_the_run_and_a_place_for_the_data_file(tmp_path):
    cfg = tmp_path / "runs.toml"
    cfg.write_text("depth = 3\n")
    rec = report.run_record(command=report.command_line(["compare", "--out", "my dir"]),
                            config=cfg, threads=2, theory=["mean field for a; b"])
    assert rec["vgcore"] == vg.__version__ and rec["date"][:2] == "20"
    assert rec["command"] == "vgcore compare --out 'my dir'"
    assert rec["config"]["sha256"] == hashlib.sha256(b"depth = 3\n").hexdigest()
    assert rec["config"]["text"] == "depth = 3\n"
    assert rec["data"] is None                       # the slot for a data file's path + hash
    assert rec["threads"] == {"vgcore": 2, "openmp": vg.openmp_enabled()}
    assert rec["cpu"]["model"] and rec["platform"]["numpy"] == np.__version__
    assert [b["library"] for b in rec["blas"]] == [b["internal_api"] for b in vg.blas_info()]
    html = report.record_html(rec)
    for text in ("vgcore", rec["date"], "vgcore compare --out &#x27;my dir&#x27;", "CPU",
                 "BLAS", "threads", rec["config"]["sha256"], "mean field for a; b",
                 "<details><summary>runs.toml"):
        assert text in html, text
    assert "data file" not in html
    data = tmp_path / "x.npz"
    data.write_bytes(b"\x00\x01")
    rec["data"] = report.file_entry(data, text=False)
    html = report.record_html(rec)
    assert "data file" in html and hashlib.sha256(b"\x00\x01").hexdigest() in html


# ------------------------------------------------------------------------------ figures
def test_coinciding_curves_are_found_exact_or_within_half_a_percent():
    a = np.logspace(-16, 0, 21)
    same = figures.coinciding([a, a * (1 + 1e-8), a * 1.001, a * 10, np.full(21, 0.5)],
                              log=True)
    assert same == {1: (0, True), 2: (0, False)}
    assert figures.coinciding([np.zeros(5), np.zeros(5), np.full(5, 0.1)], log=False) \
        == {1: (0, True)}


def _series(name, sat, saturating=True, theory=None, L=6, T=5):
    rng = np.random.default_rng(len(name))
    g = np.exp(rng.standard_normal((T, L)))
    return figures.RunSeries(name=name, steps=np.arange(T) * 10, grad_norm=g, delta_norm=g,
                             saturated_fraction=np.full((T, L), sat),
                             dead_fraction=np.zeros((T, L)), loss=np.linspace(2, 1, 50),
                             saturating=saturating, theory=theory)


@pytest.fixture
def drawn(monkeypatch):
    """The figures make_plots draws, by file name (save_png still writes them)."""
    pytest.importorskip("matplotlib")
    figs = {}
    save = figures._save

    def keep(mpl, fig, path):
        figs[path.rsplit("/", 1)[-1]] = fig
        save(mpl, fig, path)
    monkeypatch.setattr(figures, "_save", keep)
    return figs


def test_plots_scale_axes_to_the_data_and_keep_ticks_readable(tmp_path, drawn):
    theory = figures.TheoryCurve(np.logspace(-3, 0, 5), np.logspace(-3.1, 0, 5),
                                 band=(np.logspace(-4, -0.5, 5), np.logspace(-2, 0.5, 5)))
    series = [_series("a", 0.12, theory=theory), _series("b", 0.12, theory=theory),
              _series("c", 0.0, saturating=False,
                      theory=figures.TheoryCurve(np.ones(5), reason="not covered"))]
    result = report.make_plots(series, tmp_path)
    assert result.written == list(report.PLOTS)
    sat_ax = drawn["saturation_dead.png"].axes[0]
    assert sat_ax.get_ylim()[1] < 0.2                   # 0.12 at most: not a 0-1 axis
    for fig in drawn.values():
        for ax in fig.axes:
            for label in ax.get_xticklabels() + ax.get_yticklabels():
                if label.get_text():
                    assert label.get_fontsize() >= 9.5, (ax.get_title(), label.get_text())
    # identical curves are named in the legend and in the notes
    labels = [t.get_text() for f in drawn["saturation_dead.png"].legends
              for t in f.get_texts()] + [t.get_text() for ax in
                                         drawn["saturation_dead.png"].axes
                                         for lg in [ax.get_legend()] if lg for t in
                                         lg.get_texts()]
    assert "b = a" in labels
    assert any("b equals a" in n for n in result.notes["saturation_dead.png"])
    # the prediction with its band for a and b (one pair: they are the same), the reason
    # for c
    assert result.notes["theory_vs_measured.png"] == ["No prediction for c: not covered."]
    theory_ax = drawn["theory_vs_measured.png"].axes[0]
    assert len(theory_ax.collections) == 1              # the band
    assert {ln.get_label() for ln in theory_ax.get_lines()} == {
        "a = b, measured", "a = b, theory and its band"}


def test_no_prediction_at_all_skips_the_theory_plot_with_the_reasons(tmp_path):
    pytest.importorskip("matplotlib")
    series = [_series("a", 0.1, theory=figures.TheoryCurve(np.ones(5), reason="why not"))]
    result = report.make_plots(series, tmp_path)
    assert "theory_vs_measured.png" in result.skipped
    assert result.reason == "the theory predicts no configuration here (why not)"


def test_a_configuration_keeps_its_colour_line_and_marker_in_every_plot(tmp_path, drawn):
    """A plot that leaves configurations out (relu has no saturated panel, one without a
    prediction has no theory curve) must not shift the others' styles."""
    theory = figures.TheoryCurve(np.logspace(-3, 0, 6), np.logspace(-3.1, 0, 6))
    other = figures.TheoryCurve(np.logspace(-2, 0, 6), np.logspace(-2.1, 0, 6))
    series = [_series("relu", 0.0, saturating=False), _series("tanh", 0.1, theory=theory),
              _series("sigmoid", 0.3, theory=other)]
    series[1].grad_norm[...] *= 3                    # not the same curves
    series[2].grad_norm[...] *= 9
    report.make_plots(series, tmp_path)

    def styles(name, label=lambda lab: lab):
        out = {}
        for ax in drawn[name].axes:
            for ln in ax.get_lines():
                out.setdefault(label(ln.get_label()), (ln.get_color(), ln.get_marker()))
        return out
    grad = styles("gradient_norms.png")
    sat = styles("saturation_dead.png")
    assert sat["tanh"] == grad["tanh"] and sat["sigmoid"] == grad["sigmoid"]
    assert sat["relu"] == grad["relu"]                          # the dead-units panel
    assert len({grad[n] for n in ("relu", "tanh", "sigmoid")}) == 3
    theory = styles("theory_vs_measured.png", lambda lab: lab.split(",")[0])
    assert theory["tanh"][0] == grad["tanh"][0] and theory["sigmoid"][0] == grad["sigmoid"][0]
