"""Shared pieces of the self-contained HTML pages (inline CSS, no scripts, no network)."""

from __future__ import annotations

import html

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


def page(title: str, subtitle: str, body: str) -> str:
    """A whole page: header band, then the body sections."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{html.escape(title)}</title><style>{CSS}
.ok{{color:#1b7f3b;font-weight:600}} .fail{{color:#b42318;font-weight:600}} .warnc{{color:#9a6700;font-weight:600}}
</style></head>
<body><header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header>
<main>{body}</main></body></html>
"""
