"""Plots and self-contained HTML reports of gradient-flow runs (``vgcore compare`` and
``vgcore sweep``).

:mod:`~vgcore.experiments.report.figures` draws the comparison's plots (should matplotlib fail
to import, nothing is drawn and the plots are listed as skipped, with the reason);
:mod:`~vgcore.experiments.report.page` builds the HTML pieces (inline CSS and script, the plots
embedded, no external links) and writes files atomically;
:mod:`~vgcore.experiments.report.record` makes the run record every page shows.  The names
below are the three modules'.
"""
from vgcore.core._ui import MATPLOTLIB_MISSING, load_matplotlib
from vgcore.experiments.report.figures import (PLOTS, PlotResult, RunSeries, TheoryCurve,
                                               make_plots)
from vgcore.experiments.report.page import (CSS, Raw, cards_css, html_document, html_figure,
                                            html_figures, html_files, html_section, html_table,
                                            html_toc, html_verdict, png_data_uri, write_text_atomic)
from vgcore.experiments.report.record import command_line, file_entry, record_html, run_record

__all__ = ["RunSeries", "TheoryCurve", "PLOTS", "load_matplotlib", "make_plots", "PlotResult",
           "png_data_uri", "html_table", "html_figure", "html_figures", "html_document",
           "html_verdict", "html_toc", "html_section", "html_files", "Raw", "write_text_atomic",
           "MATPLOTLIB_MISSING", "CSS", "cards_css", "run_record", "record_html", "command_line",
           "file_entry"]
