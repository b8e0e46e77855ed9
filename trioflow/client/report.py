"""Self-contained HTML plots and reports: the task stream, progress per
prefix and the profile, drawn by the dashboard's own charts.js inlined into
the file, so it opens anywhere without a network or a server."""
from __future__ import annotations

import html
import json
import time
from importlib import resources

from trioflow.core.keys import key_prefix


def _static(name: str) -> str:
    return resources.files("trioflow.client").joinpath("static", name).read_text()


def task_stream_data(records) -> dict:
    """Records of ``get_task_stream`` -> the rows/bars charts.js draws."""
    rows: dict = {}
    bars = []
    for r in records:
        thread = "async" if r.get("async") else str(r.get("thread") or 0)
        row = rows.setdefault((r["worker"], thread), len(rows))
        bars.append([row, r["start"], r["stop"], key_prefix(r["key"]),
                     1 if r.get("status") == "ok" else 0])
    span = ([min(b[1] for b in bars), max(b[2] for b in bars)] if bars else [0, 1])
    return {"rows": [[w, t, i] for (w, t), i in rows.items()], "bars": bars, "span": span}


def prefix_totals(records) -> dict:
    """``{prefix: [0, 0, finished, erred]}``: the progress rows of a report."""
    totals: dict = {}
    for r in records:
        row = totals.setdefault(key_prefix(r["key"]), [0, 0, 0, 0])
        row[2 if r.get("status") == "ok" else 3] += 1
    return totals


_SECTIONS = {
    "stream": ("Task stream", '<canvas id="task-stream"></canvas><div id="task-stream-legend">'
                              '</div>',
               "C.drawTaskStream(byId('task-stream'), D.stream.rows, D.stream.bars, [], "
               "D.stream.span, byId('task-stream-legend'));"),
    "progress": ("Tasks per prefix (finished, erred)", '<div id="progress"></div>',
                 "C.drawProgress(byId('progress'), D.progress);"),
    "profile": ("Worker profile (sampled call stacks of the tasks)",
                '<canvas id="profile"></canvas><div id="profile-info" class="summary"></div>',
                "C.drawProfile(byId('profile'), D.profile, byId('profile-info'));"),
}


def render(title: str, sections: list[str], data: dict, summary: str = "") -> str:
    """One HTML document with ``sections`` (of stream/progress/profile)."""
    body = "".join(f"<h2>{_SECTIONS[s][0]}</h2>{_SECTIONS[s][1]}" for s in sections)
    draw = "".join(_SECTIONS[s][2] for s in sections)
    # "</" cannot end the script early once escaped
    payload = json.dumps(data, default=str, separators=(",", ":")).replace("</", "<\\/")
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}'
            f'</title><style>{_static("charts.css")}</style></head><body data-report="1">'
            f'<nav><span class="brand">trioflow</span> <span style="color:#fff">'
            f'{html.escape(title)}</span></nav><main><div class="summary">'
            f'{html.escape(summary)}</div>{body}</main>'
            f'<script>{_static("charts.js")}</script>'
            f'<script id="report-data" type="application/json">{payload}</script>'
            f'<script>(function(){{var C=window.TrioflowCharts;'
            f'function byId(i){{return document.getElementById(i);}}'
            f'var D=JSON.parse(byId("report-data").textContent);{draw}}})();</script>'
            f'</body></html>')


def task_stream_html(records) -> str:
    return render("task stream", ["stream", "progress"],
                  {"stream": task_stream_data(records), "progress": prefix_totals(records)},
                  f"{len(records)} task runs")


def profile_html(tree: dict) -> str:
    return render("profile", ["profile"], {"profile": tree},
                  f"{tree.get('count', 0)} samples")


def performance_report_html(records, tree: dict, started: float, stopped: float,
                            code: str = "") -> str:
    data = {"stream": task_stream_data(records), "progress": prefix_totals(records),
            "profile": tree}
    summary = (f"{len(records)} task runs in {stopped - started:.2f} s, "
               f"from {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}")
    document = render("performance report", ["stream", "progress", "profile"], data, summary)
    if code:
        document = document.replace("</main>", f"<h2>Code</h2><pre>{html.escape(code)}</pre>"
                                    "</main>", 1)
    return document


def write(path: str, document: str) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write(document)
    return path
