"""Self-contained HTML pages: one file with inline CSS and the PNG plots embedded as base64
``data:`` URIs, no scripts and no external links, so a report can be mailed or archived as it
is.  Needs nothing beyond the standard library."""
from __future__ import annotations

import base64
import html
import os

from vgcore.core._files import atomic_write

__all__ = ["CSS", "png_data_uri", "html_table", "html_figure", "html_document",
           "write_text_atomic"]

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1180px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.25em; margin-top: 1.6em;
     border-bottom: 1px solid #ddd; padding-bottom: 0.2em; } h3 { font-size: 1.05em; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.8em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; }
th { background: #f3f3f3; } td.num { text-align: right; font-family: monospace; }
tr.bad td { background: #fff1f0; } tr.good td { background: #f3fbf1; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; }
pre { background: #f7f7f7; padding: 0.7em; overflow-x: auto; font-size: 0.85em;
      white-space: pre-wrap; } .note { color: #555; font-size: 0.9em; }
.muted { color: #777; }
"""


def png_data_uri(path) -> str:
    """The PNG file at ``path`` as a ``data:image/png;base64,...`` URI."""
    with open(path, "rb") as f:
        return "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")


def html_table(header, rows, *, numeric=None, row_classes=None) -> str:
    """An HTML table; every cell is escaped.  ``numeric``: the column indices to right-align;
    ``row_classes``: a CSS class per row (or None)."""
    numeric = set(numeric or ())
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
           + "</tr>"]
    for i, row in enumerate(rows):
        cls = row_classes[i] if row_classes else None
        attr = f' class="{html.escape(cls)}"' if cls else ""
        cells = "".join(
            f'<td class="num">{html.escape(str(c))}</td>' if j in numeric
            else f"<td>{html.escape(str(c))}</td>" for j, c in enumerate(row))
        out.append(f"<tr{attr}>{cells}</tr>")
    out.append("</table>")
    return "\n".join(out)


def html_figure(path, caption) -> str:
    """A ``<figure>`` embedding the PNG at ``path`` as a data URI."""
    alt = html.escape(os.path.basename(path))
    return (f'<figure><img alt="{alt}" src="{png_data_uri(path)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def html_document(title, body) -> str:
    """A complete, self-contained HTML page: inline CSS, ``body`` (HTML) as given."""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f"{body}\n</body>\n</html>\n")


def write_text_atomic(path, text) -> None:
    """Write ``text`` (UTF-8, ``\n`` line ends) atomically
    (:func:`vgcore.core._files.atomic_write`)."""
    atomic_write(path, "x", lambda f: f.write(text), encoding="utf-8", newline="\n")
