"""The Pioneer view as one server-rendered HTML page: tables, an inline SVG chart, no CDN, no framework.

Every value is HTML-escaped. Links into the Airflow UI (a task's log, a run) leave the UI's iframe
for the UI itself: Airflow 3.3 sandboxes plugin iframes with ``allow-scripts allow-same-origin
allow-forms allow-downloads``, so neither ``target="_top"`` (no ``allow-top-navigation``) nor
``target="_blank"`` (no ``allow-popups``) works; the page's script follows such a link through an
anchor in the (same-origin) parent document instead, and without the parent (the page opened on
its own) it is a plain link. Times are ISO 8601 with their offset, shown in the UI's timezone (the
one the user picked in the UI, which it keeps in ``localStorage["timezone"]``, else the browser's).
The page follows the Airflow UI's theme when it is shown inside the UI
(the UI marks its ``<html>`` with the class ``dark`` or ``light``), else the browser's
``prefers-color-scheme``.
"""

from __future__ import annotations

from html import escape
from urllib.parse import urlencode

from airflow_provider_pioneer.ui.records import DailyTotal, InferenceRow, RotationStatus, ViewData

__all__ = ["render_page"]

_CSS = """
:root { color-scheme: light dark; --bg:#ffffff; --fg:#1a202c; --muted:#4a5568; --line:#e2e8f0;
  --head:#f7fafc; --warn-bg:#fffaf0; --warn-fg:#9c4221; --warn-line:#ed8936; --texts:#3182ce;
  --tokens:#38a169; --ok:#2f855a; --bad:#c53030; --link:#2b6cb0; }
@media (prefers-color-scheme: dark) { :root:not(.light) { --bg:#1a202c; --fg:#e2e8f0; --muted:#a0aec0;
  --line:#2d3748; --head:#232b3a; --warn-bg:#3b2a1a; --warn-fg:#fbd38d; --warn-line:#dd6b20;
  --texts:#63b3ed; --tokens:#68d391; --ok:#68d391; --bad:#fc8181; --link:#90cdf4; } }
:root.dark { --bg:#1a202c; --fg:#e2e8f0; --muted:#a0aec0; --line:#2d3748; --head:#232b3a;
  --warn-bg:#3b2a1a; --warn-fg:#fbd38d; --warn-line:#dd6b20; --texts:#63b3ed; --tokens:#68d391;
  --ok:#68d391; --bad:#fc8181; --link:#90cdf4; }
:root.light { color-scheme: light; } :root.dark { color-scheme: dark; }
body { margin:0; padding:16px 20px; background:var(--bg); color:var(--fg);
  font:14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
h1 { font-size:20px; margin:0 0 4px; } h2 { font-size:16px; margin:24px 0 8px; }
p.sub { color:var(--muted); margin:0 0 12px; }
a { color:var(--link); }
table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; }
th, td { border-bottom:1px solid var(--line); padding:5px 8px; text-align:left; vertical-align:top; }
th { background:var(--head); font-weight:600; white-space:nowrap; }
td.n, th.n { text-align:right; }
.state { font-weight:600; } .state-success { color:var(--ok); }
.state-failed, .state-upstream_failed { color:var(--bad); }
.warn { background:var(--warn-bg); color:var(--warn-fg); border-left:4px solid var(--warn-line);
  padding:8px 12px; margin:8px 0; }
.path { font-family:ui-monospace, monospace; font-size:12px; word-break:break-all; }
.pager { margin:8px 0; color:var(--muted); } .pager a { margin-right:12px; }
svg text { fill:var(--muted); font-size:10px; }
.legend span { display:inline-block; margin-right:16px; }
.hidden { color:var(--muted); font-style:italic; }
.sw { display:inline-block; width:10px; height:10px; margin-right:4px; vertical-align:middle; }
"""

# Inside the Airflow UI (same origin, in its iframe) copy the UI's theme class and follow its changes.
_THEME_JS = """
(function () {
  function apply() {
    try {
      var ui = window.parent && window.parent !== window ? window.parent.document.documentElement : null;
      var mode = ui && ui.classList.contains('dark') ? 'dark' : ui && ui.classList.contains('light') ? 'light' : null;
      if (!mode) { var saved = window.localStorage.getItem('theme'); if (saved === 'dark' || saved === 'light') mode = saved; }
      var root = document.documentElement;
      root.classList.remove('dark', 'light');
      if (mode) root.classList.add(mode);
      return ui;
    } catch (e) { return null; }
  }
  var ui = apply();
  if (ui && window.MutationObserver) {
    new MutationObserver(apply).observe(ui, { attributes: true, attributeFilter: ['class'] });
  }
})();
"""

# Links into the UI: through an anchor in the parent's document, which the iframe's sandbox does
# not restrict (a same-origin parent); a plain link when the page is not in a frame.
_LINK_JS = """
document.addEventListener('click', function (ev) {
  var a = ev.target && ev.target.closest ? ev.target.closest('a[data-ui-link]') : null;
  if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  if (!window.parent || window.parent === window) return;
  try {
    var doc = window.parent.document;
    var link = doc.createElement('a');
    link.href = a.href;
    doc.body.appendChild(link);
    ev.preventDefault();
    link.click();
    link.remove();
  } catch (e) { /* another origin: the link opens inside the frame */ }
});
"""

# Times: <time datetime="ISO"> rendered in the UI's timezone (the UI's own localStorage choice).
_TIME_JS = """
(function () {
  var zone = null;
  try { var saved = window.localStorage.getItem('timezone'); if (saved) zone = JSON.parse(saved); } catch (e) {}
  if (typeof zone !== 'string' || !zone) zone = null;
  var format;
  try {
    format = new Intl.DateTimeFormat('sv-SE', { timeZone: zone || undefined, year: 'numeric', month: '2-digit',
      day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'short' });
  } catch (e) {  // not a zone this browser knows: the browser's own
    zone = null;
    format = new Intl.DateTimeFormat('sv-SE', { year: 'numeric', month: '2-digit', day: '2-digit',
      hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'short' });
  }
  // The zone as the user picked it (ICU may resolve an alias: Asia/Kolkata is Asia/Calcutta).
  var zoneName = zone || format.resolvedOptions().timeZone;
  document.querySelectorAll('time[datetime]').forEach(function (t) {
    var when = new Date(t.getAttribute('datetime'));
    if (isNaN(when.getTime())) return;
    t.textContent = format.format(when);
    t.title = t.getAttribute('datetime');
  });
  document.querySelectorAll('[data-timezone]').forEach(function (el) { el.textContent = zoneName; });
})();
"""


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def _num(value: int | float | None, digits: int = 0) -> str:
    if value is None:
        return "&ndash;"
    return f"{value:,.{digits}f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "&ndash;"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def _time(value: str | None) -> str:
    """An ISO time (with its offset) the browser shows in the UI's timezone; the ISO text without script."""
    if not value:
        return "&ndash;"
    return f"<time datetime='{_e(value)}'>{_e(value)}</time>"


def _ui_link(href: str, text: str, kind: str) -> str:
    return f"<a href='{_e(href)}' data-ui-link='{kind}'>{text}</a>"


_HIDDEN = (
    "<span class='hidden' title='the auth manager does not let you read this'>hidden: no permission</span>"
)


def _task_cell(row: InferenceRow) -> str:
    if row.map_index < 0:
        return _e(row.task_id)
    label = row.label or f"shard {row.map_index}"
    return f"{_e(row.task_id)} <span title='map index {row.map_index}'>[{_e(label)}]</span>"


def _runs_table(rows: list[InferenceRow]) -> str:
    if not rows:
        return "<p class='sub'>No Pioneer inference task instances in the DAGs you may read.</p>"
    head = (
        "<tr><th>DAG</th><th>Run</th><th>Task / shard</th><th>State</th><th class='n'>Texts</th>"
        "<th class='n'>Failed</th><th class='n'>Tokens</th><th class='n'>429s</th><th class='n'>Duration</th>"
        "<th class='n'>Texts/s</th><th>Output</th><th>Log</th></tr>"
    )
    body = []
    for r in rows:
        state = r.state or "none"
        counts = (
            [_num(r.texts), _num(r.failed), _num(r.tokens), _num(r.rate_limited)]
            if not r.summary_hidden
            else [_HIDDEN, "", "", ""]
        )
        out = _HIDDEN if r.summary_hidden else (_e(r.output_path) if r.output_path else "XCom")
        body.append(
            "<tr data-dag-id='{dag}' data-run-id='{run}' data-task-id='{task}' data-map-index='{mi}'>"
            "<td>{dag}</td><td>{run_link}</td><td>{task_cell}</td><td class='state state-{state}'>{state}</td>"
            "<td class='n texts'>{texts}</td><td class='n failed'>{failed}</td><td class='n tokens'>{tokens}</td>"
            "<td class='n'>{limited}</td><td class='n'>{dur}</td><td class='n'>{rate}</td>"
            "<td class='path'>{out}</td><td>{log}</td></tr>".format(
                dag=_e(r.dag_id),
                run=_e(r.run_id),
                task=_e(r.task_id),
                mi=r.map_index,
                task_cell=_task_cell(r),
                state=_e(state),
                run_link=_ui_link(r.run_url, _e(r.run_id), "run") if r.run_url else _e(r.run_id),
                texts=counts[0],
                failed=counts[1],
                tokens=counts[2],
                limited=counts[3],
                dur=_duration(r.duration_s),
                rate="" if r.summary_hidden else _num(r.texts_per_s, 1),
                out=out,
                log=_ui_link(r.log_url, "log", "log"),
            )
        )
    return f"<table id='runs'><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"


def _pager(data: ViewData) -> str:
    pages = max(1, -(-data.total_runs // data.page_size))
    links = []
    if data.page > 1:
        links.append(
            f"<a href='?{urlencode({'page': data.page - 1, 'page_size': data.page_size})}'>← newer</a>"
        )
    if data.page < pages:
        links.append(
            f"<a href='?{urlencode({'page': data.page + 1, 'page_size': data.page_size})}'>older →</a>"
        )
    return (
        f"<div class='pager'>Page {data.page} of {pages} · {data.total_runs:,} task instances "
        f"{''.join(links)}</div>"
    )


def _chart(daily: list[DailyTotal]) -> str:
    """Two bars per day (texts left axis, tokens right axis), both scaled to their own maximum."""
    width, height, left, right, top, bottom = 760, 200, 56, 64, 10, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    max_texts = max((d.texts for d in daily), default=0) or 1
    max_tokens = max((d.tokens for d in daily), default=0) or 1
    slot = plot_w / max(1, len(daily))
    bar = max(1.0, slot * 0.38)
    parts = [
        f"<svg id='daily-chart' role='img' viewBox='0 0 {width} {height}' width='100%' "
        f"style='max-width:{width}px' aria-label='Texts and tokens per day, last {len(daily)} days'>",
        f"<line x1='{left}' y1='{top + plot_h}' x2='{left + plot_w}' y2='{top + plot_h}' stroke='currentColor' "
        "stroke-opacity='0.3'/>",
        f"<text x='{left - 6}' y='{top + 8}' text-anchor='end'>{max_texts:,}</text>",
        f"<text x='{left - 6}' y='{top + plot_h}' text-anchor='end'>0</text>",
        f"<text x='{left + plot_w + 6}' y='{top + 8}'>{max_tokens:,}</text>",
        f"<text x='{left + plot_w + 6}' y='{top + plot_h}'>0</text>",
    ]
    for i, d in enumerate(daily):
        x = left + i * slot + slot * 0.1
        h_texts = plot_h * d.texts / max_texts
        h_tokens = plot_h * d.tokens / max_tokens
        title = f"{d.day}: {d.texts:,} texts, {d.tokens:,} tokens"
        parts.append(
            f"<g data-day='{_e(d.day)}' data-texts='{d.texts}' data-tokens='{d.tokens}'><title>{_e(title)}</title>"
            f"<rect x='{x:.1f}' y='{top + plot_h - h_texts:.1f}' width='{bar:.1f}' height='{h_texts:.1f}' "
            "fill='var(--texts)'/>"
            f"<rect x='{x + bar:.1f}' y='{top + plot_h - h_tokens:.1f}' width='{bar:.1f}' height='{h_tokens:.1f}' "
            "fill='var(--tokens)'/></g>"
        )
        if i % 5 == 0 or i == len(daily) - 1:
            parts.append(
                f"<text x='{x + bar:.1f}' y='{height - 12}' text-anchor='middle'>{_e(d.day[5:])}</text>"
            )
    parts.append("</svg>")
    legend = (
        "<div class='legend'><span><i class='sw' style='background:var(--texts)'></i>texts (left axis)</span>"
        "<span><i class='sw' style='background:var(--tokens)'></i>tokens (right axis)</span>"
        f"<span>{sum(d.texts for d in daily):,} texts, {sum(d.tokens for d in daily):,} tokens in "
        f"{len(daily)} days</span></div>"
    )
    return "".join(parts) + legend


def _hidden_note(dag_ids: list[str], what: str) -> str:
    if not dag_ids:
        return ""
    names = ", ".join(dag_ids)
    return (
        f"<p class='sub hidden-note' data-hidden='{_e(what)}'>{_e(what)} of {len(dag_ids)} DAG(s) "
        f"hidden: no permission ({_e(names)}).</p>"
    )


def _rotation_section(rotations: list[RotationStatus], max_age: int) -> str:
    if not rotations:
        return "<p class='sub'>No Pioneer key rotation task has run in the DAGs you may read.</p>"
    warnings = "".join(
        f"<div class='warn' role='alert'>{_e(r.variable)}: {_e(w)}</div>"
        for r in rotations
        for w in r.warnings
    )
    head = (
        "<tr><th>Variable</th><th>Current key</th><th class='n'>Age</th><th>Pending revokes</th>"
        "<th>Last rotation</th><th>Outcome</th><th>Next scheduled</th></tr>"
    )
    body = []
    for r in rotations:
        if not r.variable_readable:
            key = "<span class='hidden'>hidden: no permission to read this Variable</span>"
        elif r.key_problem is not None:
            key = "<strong class='state-failed key-problem'>no usable key</strong>"
        else:
            key = _e(r.key_name or "unknown") + (
                f"<br><span class='sub'>created {_time(r.key_created_at)}</span>" if r.key_created_at else ""
            )
        age = "&ndash;" if r.key_age_days is None else f"{r.key_age_days:.1f} days"
        nxt = "paused" if r.paused else (_time(r.next_run_after) if r.next_run_after else "not scheduled")
        run = _ui_link(r.last_run_url, _e(r.last_run_id), "run") if r.last_run_url else _e(r.last_run_id)
        log = _ui_link(r.last_log_url, "log", "log") if r.last_log_url else ""
        ended = f" · ended {_time(r.last_end_date)}" if r.last_end_date else ""
        last = f"{run} ({log}){ended}<br><span class='sub'>{_e(r.dag_id)}.{_e(r.task_id)}</span>"
        pending = (_e(", ".join(r.pending_revoke)) or "none") if r.variable_readable else _HIDDEN
        body.append(
            f"<tr data-variable='{_e(r.variable)}'><td>{_e(r.variable)}</td><td>{key}</td><td class='n'>{age}</td>"
            f"<td>{pending}</td><td>{last}</td>"
            f"<td class='state state-{_e(r.last_state)}'>{_e(r.last_state)}</td><td>{nxt}</td></tr>"
        )
    note = f"<p class='sub'>A key older than {max_age} days, or a failed last rotation, is flagged above.</p>"
    return f"{warnings}<table id='rotation'><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>{note}"


def render_page(data: ViewData, *, json_url: str) -> str:
    """The whole HTML document for ``data``."""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<title>Pioneer · Airflow</title>"
        f"<style>{_CSS}</style><script>{_THEME_JS}</script></head><body>"
        "<h1>Pioneer</h1>"
        f"<p class='sub'>Inference runs and key rotation in the DAGs you may read · generated "
        f"{_time(data.generated_at)} · times in <span data-timezone>UTC</span> · "
        f"<a href='{_e(json_url)}' id='json-link'>JSON</a></p>"
        "<h2>Key rotation</h2>"
        f"{_hidden_note(data.hidden_task_instances, 'Task instances')}"
        f"{_rotation_section(data.rotations, data.key_max_age_days)}"
        f"<h2>Texts and tokens per day (last {len(data.daily)} days, UTC)</h2>"
        f"{_hidden_note(data.hidden_xcoms, 'XComs (texts and tokens)')}"
        f"{_chart(data.daily)}"
        "<h2>Inference runs</h2>"
        f"{_hidden_note(data.hidden_task_instances, 'Task instances')}"
        f"{_pager(data)}{_runs_table(data.runs)}"
        f"<script>{_LINK_JS}</script><script>{_TIME_JS}</script>"
        "</body></html>"
    )
