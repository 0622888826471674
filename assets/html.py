"""Shared pieces of the self-contained HTML pages: the stylesheet, table and number helpers, and the Jinja2
environment of the screen templates (`assets/templates/`)."""

from __future__ import annotations

import html
from functools import lru_cache
from pathlib import Path

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2933;background:#f5f7fa}
header{background:#0b3c5d;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;opacity:.85;font-size:14px}
main{padding:24px 32px;max-width:1100px}
section{background:#fff;border-radius:8px;padding:16px 20px;margin-bottom:20px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{font-size:17px;margin:0 0 12px}
.tiles{display:flex;gap:16px;flex-wrap:wrap;margin-bottom:20px}
.tile{flex:1;min-width:170px;background:#fff;border-radius:8px;padding:14px 18px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
.tile .n{font-size:28px;font-weight:600} .tile .l{font-size:13px;color:#52606d}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #e4e7eb} th{color:#52606d;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.note{font-size:13px;color:#52606d} .warn{color:#9a3412}
.filters{display:flex;flex-wrap:wrap;gap:8px 18px;margin:4px 0 8px;font-size:14px}
.filters label{color:#52606d} .filters select{margin-left:4px;font-size:14px;padding:2px 4px}
@media print{
 @page{size:A4;margin:14mm}
 body{background:#fff;font-size:11pt}
 header{background:none;color:#000;padding:0 0 6pt;border-bottom:2px solid #0b3c5d}
 header p{opacity:1}
 main{padding:0;max-width:none}
 nav,.modebar,.modebar-container,.no-print{display:none!important}
 section,.tile{box-shadow:none;border:1px solid #d9e2ec;break-inside:avoid;page-break-inside:avoid}
 .figure,.plotly-graph-div,tr,.tiles{break-inside:avoid;page-break-inside:avoid}
 h2{break-after:avoid;page-break-after:avoid}
 thead{display:table-header-group}
 a{color:inherit;text-decoration:none}
}
"""


def num(n) -> str:
    return f"{n:,}" if isinstance(n, int) else html.escape(str(n))


def table(headers: list[str], rows: list[tuple], numeric: set[int] = frozenset()) -> str:
    head = "".join(f'<th class="{"num" if i in numeric else ""}">{html.escape(h)}</th>' for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(
            f'<td class="{"num" if i in numeric else ""}">{num(v) if v is not None else "–"}</td>'
            for i, v in enumerate(r)
        ) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


TEMPLATES = Path(__file__).resolve().parent / "templates"


@lru_cache(maxsize=1)
def environment():
    """The Jinja2 environment of every screen page (`assets/templates/`, one base layout); autoescaped, so text
    from inputs is escaped wherever it is shown."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda v, digits=1: "–" if v is None else f"{100 * v:.{digits}f}%"
    env.filters["dec"] = lambda v, digits=2: "–" if v is None else f"{v:.{digits}f}"
    env.filters["num"] = lambda v: "–" if v is None else (f"{v:,}" if isinstance(v, int) else str(v))
    env.filters["label"] = lambda v: str(v).replace("_", " ")
    return env


def render(name: str, **context) -> str:
    return environment().get_template(name).render(css=CSS, **context)


def page(title: str, subtitle: str, body: str) -> str:
    """A whole page in the base layout: header band, then the body sections (already escaped HTML)."""
    return render("base.html.j2", title=title, subtitle=subtitle, body=body)
