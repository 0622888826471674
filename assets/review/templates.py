"""Jinja2 rendering of the review pages from `assets/templates/` (autoescaped: text from inputs is escaped)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"


@lru_cache(maxsize=1)
def environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda v, digits=1: "–" if v is None else f"{100 * v:.{digits}f}%"
    env.filters["dec"] = lambda v, digits=2: "–" if v is None else f"{v:.{digits}f}"
    env.filters["num"] = lambda v: "–" if v is None else (f"{v:,}" if isinstance(v, int) else str(v))
    env.filters["label"] = lambda v: str(v).replace("_", " ")
    return env


def render(name: str, **context) -> str:
    from assets.html import CSS

    return environment().get_template(name).render(css=CSS, **context)
