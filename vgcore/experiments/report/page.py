"""Self-contained HTML pages: one file with inline CSS and the PNG plots embedded as base64
``data:`` URIs, no external links, scripts or fonts, so a report can be mailed or archived as
it is.  Needs nothing beyond the standard library.

Every page reads on a desktop and on a 390 px phone: a viewport tag, figures that shrink to
the screen, and tables that turn into one card per row on narrow screens (and scroll inside
their own box in between).  The pieces: :func:`html_document` (the page), :func:`html_verdict`
(the one-line verdict it opens with), :func:`html_toc` and :func:`html_section` (a table of
contents whose links resolve to the sections), :func:`html_table` (optionally sortable by a
click on a column header, with a few lines of inline script), :func:`html_figure`,
:func:`html_figures` and :func:`html_files` (links to the files beside the page).
"""
from __future__ import annotations

import base64
import html
import os
import struct

from vgcore.core._files import atomic_write

__all__ = ["CSS", "SORT_SCRIPT", "cards_css", "Raw", "png_data_uri", "png_size", "html_table",
           "html_figure", "html_figures", "html_document", "html_verdict", "html_toc",
           "html_section", "html_files", "write_text_atomic"]

CSS = """
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 auto;
       max-width: 1180px; padding: 1.2em 1.2em 3em; color: #222; line-height: 1.5;
       -webkit-text-size-adjust: 100%; text-size-adjust: 100%; }
h1 { font-size: 1.55em; line-height: 1.25; margin: 0.4em 0 0.3em; overflow-wrap: anywhere; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ddd;
     padding-bottom: 0.2em; scroll-margin-top: 0.5em; }
h3 { font-size: 1.05em; margin-bottom: 0.3em; }
a { color: #1a56a8; }
.verdict { font-size: 1.12em; font-weight: 600; border-left: 5px solid #1a56a8;
           background: #eef4fc; padding: 0.6em 0.9em; margin: 1em 0; }
nav.toc { font-size: 0.95em; margin: 0.8em 0; }
nav.toc ol { display: flex; flex-wrap: wrap; gap: 0.2em 1.3em; list-style: none; padding: 0;
             margin: 0.3em 0 0; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.8em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.55em; vertical-align: top; }
th { background: #f3f3f3; text-align: left; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.bad td { background: #fff1f0; } tr.good td { background: #f1f9ee; }
th button { font: inherit; font-weight: 600; color: inherit; background: none; border: 0;
            padding: 0; cursor: pointer; text-align: left; }
th button::after { content: "\\00a0\\2195"; color: #999; }
th[aria-sort="ascending"] button::after { content: "\\00a0\\25B2"; color: #333; }
th[aria-sort="descending"] button::after { content: "\\00a0\\25BC"; color: #333; }
table.sortable { font-size: 0.84em; }
table.sortable th, table.sortable td { padding: 0.25em 0.4em; }
.figs { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 520px), 1fr));
        gap: 1.2em 1.6em; margin: 1em 0; }
figure { margin: 0; min-width: 0; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.88em; color: #444; margin-top: 0.3em; }
figcaption .overlap { display: block; color: #7a4b00; margin-top: 0.2em; }
pre { background: #f6f6f6; padding: 0.7em; font-size: 0.85em; white-space: pre-wrap;
      overflow-wrap: anywhere; }
code { font-size: 0.92em; overflow-wrap: anywhere; }
dl.record { display: grid; grid-template-columns: max-content minmax(0, 1fr);
            gap: 0.15em 1em; font-size: 0.9em; margin: 0.6em 0; }
dl.record dt { font-weight: 600; color: #444; }
dl.record dd { margin: 0; overflow-wrap: anywhere; }
ul.files li { overflow-wrap: anywhere; }
.note { color: #555; font-size: 0.9em; }
.muted { color: #666; }
@media (max-width: 700px) {
  body { padding: 0.6em 0.8em 2em; }
  h1 { font-size: 1.3em; }
  dl.record { grid-template-columns: minmax(0, 1fr); }
  dl.record dd { margin-bottom: 0.35em; }
}
"""


def cards_css(selector="table.cards", below=700) -> str:
    """CSS that shows the tables matching ``selector`` as one card per row (the column names
    as labels; a sortable table's cells three abreast) on screens narrower than ``below``
    pixels."""
    t = selector
    return f"""
@media (max-width: {int(below)}px) {{
  {t}, {t} tbody, {t} tr, {t} td {{ display: block; }}
  {t} {{ border: 0; width: 100%; }}
  {t} thead {{ display: none; }}
  {t}.sortable thead {{ display: block; }}
  {t}.sortable thead tr {{ display: flex; flex-wrap: wrap; gap: 0.3em; }}
  {t}.sortable thead th {{ border-radius: 4px; font-size: 0.85em; }}
  {t} tbody tr {{ border: 1px solid #ccc; border-radius: 6px; margin: 0 0 0.7em;
                 overflow: hidden; }}
  {t} td {{ border: 0; border-bottom: 1px solid #eee; display: flex; gap: 1em;
           justify-content: space-between; text-align: right; white-space: normal;
           overflow-wrap: anywhere; }}
  {t} td:last-child {{ border-bottom: 0; }}
  {t} td::before {{ content: attr(data-label); font-weight: 600; color: #444;
                   text-align: left; flex: 0 1 45%; }}
  {t} td:first-child {{ background: #f3f3f3; font-weight: 600; }}
  {t}.sortable {{ font-size: 0.95em; }}
  {t}.sortable tbody tr {{ display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); }}
  {t}.sortable td {{ display: block; text-align: left; border-bottom: 0;
                    border-top: 1px solid #eee; }}
  {t}.sortable td::before {{ display: block; font-size: 0.78em; font-weight: 400;
                            color: #666; }}
  {t}.sortable td:first-child {{ grid-column: 1 / -1; border-top: 0; }}
}}
"""


CSS += cards_css()


SORT_SCRIPT = """
(function () {
  function key(cell) {
    var v = cell.getAttribute("data-v");
    return v === null ? cell.textContent.trim() : v;
  }
  function compare(a, b) {
    if (a === "" || b === "") { return a === "" ? (b === "" ? 0 : 1) : -1; }
    var x = Number(a), y = Number(b);
    if (!isNaN(x) && !isNaN(y)) { return x - y; }
    return a.localeCompare(b, undefined, {numeric: true});
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    var body = table.tBodies[0], heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      var button = th.querySelector("button");
      if (!button) { return; }
      button.addEventListener("click", function () {
        var up = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", up ? "ascending" : "descending");
        var rows = Array.prototype.slice.call(body.rows).map(function (r, i) {
          return {row: r, key: key(r.cells[col]), i: i};
        });
        rows.sort(function (a, b) {
          var c = compare(a.key, b.key);
          if (c !== 0 && a.key !== "" && b.key !== "") { c = up ? c : -c; }
          return c !== 0 ? c : a.i - b.i;
        });
        rows.forEach(function (r) { body.appendChild(r.row); });
      });
    });
  });
})();
"""
"""The inline script that sorts a ``table.sortable`` by the column whose header is clicked
(numbers by value, text naturally; empty cells last in both directions)."""


class Raw(str):
    """Text that is already HTML: :func:`html_table` puts it in a cell without escaping."""


def _cell(value) -> str:
    return value if isinstance(value, Raw) else html.escape(str(value))


def png_data_uri(path) -> str:
    """The PNG file at ``path`` as a ``data:image/png;base64,...`` URI."""
    with open(path, "rb") as f:
        return "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")


def png_size(path):
    """``(width, height)`` in pixels of the PNG at ``path`` (from its header), or None."""
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", head[16:24])


def html_table(header, rows, *, numeric=None, row_classes=None, sortable=False,
               sort_values=None, cards=True, caption=None) -> str:
    """An HTML table in a box that scrolls sideways on its own when it is too wide; every
    cell is escaped (except :class:`Raw` ones).

    Parameters
    ----------
    header : list of str
    rows : list of lists
    numeric : iterable of int, optional
        The column indices to right-align.
    row_classes : list of str or None, optional
        A CSS class per row ("good", "bad" or None).
    sortable : bool
        A click on a column header sorts the rows by it (:data:`SORT_SCRIPT`, which the page
        must include: :func:`html_document` does when it sees a sortable table).
    sort_values : list of lists, optional
        Per cell, the value to sort by (a number, or None for "no value": sorted last), when it
        differs from the text shown.
    cards : bool
        On narrow screens, show one card per row with the column names as labels.
    caption : str, optional
    """
    numeric = set(numeric or ())
    classes = [c for c, on in (("cards", cards), ("sortable", sortable)) if on]
    attr = f' class="{" ".join(classes)}"' if classes else ""
    out = [f'<div class="scroll"><table{attr}>']
    if caption:
        out.append(f"<caption>{html.escape(caption)}</caption>")
    heads = "".join(f'<th scope="col"><button type="button">{html.escape(str(h))}</button></th>'
                    if sortable else f'<th scope="col">{html.escape(str(h))}</th>'
                    for h in header)
    out.append(f"<thead><tr>{heads}</tr></thead><tbody>")
    for i, row in enumerate(rows):
        cls = row_classes[i] if row_classes else None
        rattr = f' class="{html.escape(cls)}"' if cls else ""
        cells = []
        for j, c in enumerate(row):
            a = f' data-label="{html.escape(str(header[j]))}"' if j < len(header) else ""
            if j in numeric:
                a += ' class="num"'
            if sort_values is not None:
                v = sort_values[i][j]
                if v is not None or sortable:
                    a += f' data-v="{html.escape(_sort_text(v))}"'
            cells.append(f"<td{a}>{_cell(c)}</td>")
        out.append(f"<tr{rattr}>{''.join(cells)}</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


def _sort_text(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if v != v else repr(v)
    return str(v)


def html_figure(path, caption, *, notes=()) -> str:
    """A ``<figure>`` embedding the PNG at ``path`` as a data URI, with its pixel size (so the
    page does not jump while it loads), the caption and ``notes`` (e.g. which curves
    coincide) under it."""
    alt = html.escape(os.path.basename(path))
    size = png_size(path)
    dims = f' width="{size[0]}" height="{size[1]}"' if size else ""
    extra = "".join(f'<span class="overlap">{html.escape(n)}</span>' for n in notes)
    return (f'<figure><img alt="{alt}"{dims} src="{png_data_uri(path)}">'
            f"<figcaption>{html.escape(caption)}{extra}</figcaption></figure>")


def html_figures(figures) -> str:
    """Figures (HTML from :func:`html_figure`) side by side on wide screens, one under the
    other on narrow ones."""
    return '<div class="figs">' + "\n".join(figures) + "</div>"


def html_verdict(text) -> str:
    """The one-line verdict a page opens with."""
    return f'<p class="verdict" id="verdict">{html.escape(text)}</p>'


def html_toc(sections) -> str:
    """A table of contents: ``sections`` is a list of ``(id, title)``; each link points at
    the section of that id (:func:`html_section`)."""
    items = "".join(f'<li><a href="#{html.escape(i)}">{html.escape(t)}</a></li>'
                    for i, t in sections)
    return f'<nav class="toc" aria-label="Contents"><strong>Contents</strong><ol>{items}</ol></nav>'


def html_section(ident, title, body) -> str:
    """``<section id=ident>`` with its ``<h2>`` title and ``body`` (HTML)."""
    return (f'<section id="{html.escape(ident)}"><h2>{html.escape(title)}</h2>\n{body}\n'
            f"</section>")


def html_files(files) -> str:
    """Links to the files beside the page: ``files`` is a list of ``(name, what)``; the links
    are relative, so they work wherever the folder is moved."""
    items = "".join(f'<li><a href="{html.escape(name)}">{html.escape(name)}</a>: '
                    f"{html.escape(what)}</li>" for name, what in files)
    return f'<ul class="files">{items}</ul>'


def html_document(title, body, *, css="") -> str:
    """A complete, self-contained HTML page: viewport tag, inline CSS (:data:`CSS` and ``css``),
    ``body`` (HTML) as given, and :data:`SORT_SCRIPT` inline when the body has a sortable
    table."""
    script = f"<script>{SORT_SCRIPT}</script>\n" if 'table class="cards sortable"' in body \
        or 'table class="sortable"' in body else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{CSS}{css}</style>\n</head>\n<body>\n"
            f"{body}\n{script}</body>\n</html>\n")


def write_text_atomic(path, text) -> None:
    """Write ``text`` (UTF-8, ``\n`` line ends) atomically
    (:func:`vgcore.core._files.atomic_write`)."""
    atomic_write(path, "x", lambda f: f.write(text), encoding="utf-8", newline="\n")
