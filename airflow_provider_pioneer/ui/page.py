"""The Pioneer view as one server-rendered HTML page: tables, an inline SVG chart, no CDN, no framework.

Rendered from ``templates/view.html`` with Jinja2 (which Airflow ships) and autoescape on: every
value is escaped by the template engine, none by hand. The stylesheet and the scripts are static
files beside it, inlined as they are. Links into the Airflow UI (a task's log, a run) leave the
UI's iframe for the UI itself: Airflow 3.3 sandboxes plugin iframes with ``allow-scripts
allow-same-origin allow-forms allow-downloads``, so neither ``target="_top"`` (no
``allow-top-navigation``) nor ``target="_blank"`` (no ``allow-popups``) works; the page's script
follows such a link through an anchor in the (same-origin) parent document instead, and without the
parent (the page opened on its own) it is a plain link. Times are ISO 8601 with their offset, shown
in the UI's timezone (the one the user picked in the UI, which it keeps in
``localStorage["timezone"]``, else the browser's). The page follows the Airflow UI's theme when it
is shown inside the UI (the UI marks its ``<html>`` with the class ``dark`` or ``light``), else the
browser's ``prefers-color-scheme``.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any
from urllib.parse import urlencode

from markupsafe import Markup

from airflow_provider_pioneer.ui.records import DailyTotal, ViewData

__all__ = ["render_page"]

_DASH = Markup("&ndash;")


def _num(value: int | float | None, digits: int = 0) -> str:
    return _DASH if value is None else f"{value:,.{digits}f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return _DASH
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


@cache
def _static(name: str) -> Markup:
    """A static file beside the template (our own CSS or script), inlined as it is."""
    return Markup(files("airflow_provider_pioneer.ui").joinpath("templates", name).read_text("utf-8"))


@cache
def _template() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("airflow_provider_pioneer.ui", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
    )
    env.globals.update(num=_num, duration=_duration)
    return env.get_template("view.html")


def _chart(daily: list[DailyTotal]) -> dict[str, Any]:
    """Two bars per day (texts left axis, tokens right axis), both scaled to their own maximum."""
    width, height, left, right, top, bottom = 760, 200, 56, 64, 10, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    max_texts = max((d.texts for d in daily), default=0) or 1
    max_tokens = max((d.tokens for d in daily), default=0) or 1
    slot = plot_w / max(1, len(daily))
    bar = max(1.0, slot * 0.38)
    # Numbers only (formatted here); the template escapes every one of them anyway.
    axes = [
        Markup(
            f"<line x1='{left}' y1='{top + plot_h}' x2='{left + plot_w}' y2='{top + plot_h}' "
            "stroke='currentColor' stroke-opacity='0.3'/>"
        ),
        Markup(f"<text x='{left - 6}' y='{top + 8}' text-anchor='end'>{max_texts:,}</text>"),
        Markup(f"<text x='{left - 6}' y='{top + plot_h}' text-anchor='end'>0</text>"),
        Markup(f"<text x='{left + plot_w + 6}' y='{top + 8}'>{max_tokens:,}</text>"),
        Markup(f"<text x='{left + plot_w + 6}' y='{top + plot_h}'>0</text>"),
    ]
    bars = []
    for i, d in enumerate(daily):
        x = left + i * slot + slot * 0.1
        h_texts = plot_h * d.texts / max_texts
        h_tokens = plot_h * d.tokens / max_tokens
        bars.append(
            {
                "day": d.day,
                "texts": d.texts,
                "tokens": d.tokens,
                "title": f"{d.day}: {d.texts:,} texts, {d.tokens:,} tokens",
                "x": f"{x:.1f}",
                "x2": f"{x + bar:.1f}",
                "width": f"{bar:.1f}",
                "y_texts": f"{top + plot_h - h_texts:.1f}",
                "h_texts": f"{h_texts:.1f}",
                "y_tokens": f"{top + plot_h - h_tokens:.1f}",
                "h_tokens": f"{h_tokens:.1f}",
                "label": d.day[5:] if i % 5 == 0 or i == len(daily) - 1 else None,
            }
        )
    return {
        "width": width,
        "height": height,
        "axes": axes,
        "bars": bars,
        "sum_texts": sum(d.texts for d in daily),
        "sum_tokens": sum(d.tokens for d in daily),
    }


def _pager(data: ViewData) -> dict[str, Any]:
    pages = max(1, -(-data.total_runs // data.page_size))
    return {
        "pages": pages,
        "newer": urlencode({"page": data.page - 1, "page_size": data.page_size}) if data.page > 1 else None,
        "older": urlencode({"page": data.page + 1, "page_size": data.page_size})
        if data.page < pages
        else None,
    }


def render_page(data: ViewData, *, json_url: str) -> str:
    """The whole HTML document for ``data``."""
    return str(
        _template().render(
            data=data,
            json_url=json_url,
            chart=_chart(data.daily),
            pager=_pager(data),
            css=_static("view.css"),
            theme_js=_static("theme.js"),
            view_js=_static("view.js"),
        )
    )
