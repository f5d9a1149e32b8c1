"""Plots and self-contained HTML reports of gradient-flow runs (used by ``vgcore compare``).

:mod:`~vgcore.experiments.report.figures` draws the comparison's plots (matplotlib optional:
without it nothing is drawn and the plots are listed as skipped, with the reason);
:mod:`~vgcore.experiments.report.page` builds the HTML page (inline CSS, the plots embedded, no
scripts or external links) and writes files atomically.  The names below are both modules'.
"""
from vgcore.core._ui import MATPLOTLIB_MISSING, load_matplotlib
from vgcore.experiments.report.figures import PLOTS, PlotResult, RunSeries, make_plots
from vgcore.experiments.report.page import (CSS, html_document, html_figure, html_table,
                                            png_data_uri, write_text_atomic)

__all__ = ["RunSeries", "PLOTS", "load_matplotlib", "make_plots", "PlotResult", "png_data_uri",
           "html_table", "html_figure", "html_document", "write_text_atomic",
           "MATPLOTLIB_MISSING", "CSS"]
