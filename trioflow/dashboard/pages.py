"""The dashboard's HTML: small shells; the scripts draw the data."""
from __future__ import annotations

import html

NAV = (("status", "Status"), ("workers", "Workers"), ("info", "Info"))


def page(name: str, title: str, body: str, scripts=("live.js",), data: dict | None = None,
         root: str = "") -> str:
    links = "".join(f'<a href="{root}{path}">{label}</a>' for path, label in NAV)
    attrs = "".join(f' data-{k}="{html.escape(str(v))}"' for k, v in (data or {}).items())
    tags = "".join(f'<script src="{root}static/{s}"></script>' for s in ("charts.js", *scripts))
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>trioflow: {title}'
            f'</title><link rel="stylesheet" href="{root}static/charts.css"></head>'
            f'<body data-page="{name}"{attrs}><nav><span class="brand">trioflow</span> '
            f'{links}</nav><main>{body}</main>{tags}</body></html>')


STATUS = """
<div id="summary" class="summary">waiting for the first update…</div>
<h2>Task stream</h2>
<canvas id="task-stream"></canvas>
<div id="task-stream-legend"></div>
<h2>Progress per task prefix</h2>
<div id="progress"></div>
<div class="grid">
  <div><h2>Worker memory</h2><div id="memory"></div></div>
  <div><h2>Tasks processing per worker</h2><div id="processing"></div></div>
</div>
"""

WORKERS = """
<h2 id="worker-count">Workers</h2>
<table id="workers"><thead><tr><th>address</th><th>name</th><th>threads</th><th>CPU</th>
<th>memory</th><th>managed</th><th>spilled</th><th>limit</th><th>executing</th><th>ready</th>
<th>processing</th><th>in memory</th><th>last seen</th></tr></thead>
<tbody id="workers-body"></tbody></table>
"""

TASK = """
<h2>Task <code id="task-key">{key}</code>: <span id="task-state">…</span></h2>
<table id="task-facts"></table>
<div class="grid">
 <div><h2>Dependencies</h2><ul id="task-deps"></ul>
      <h2>Dependents</h2><ul id="task-dependents"></ul></div>
 <div><h2>Who has it</h2><ul id="task-who-has"></ul></div>
</div>
<h2>Story</h2><pre id="task-story"></pre>
"""


def info_body(identity: dict, worker_links: dict) -> str:
    rows = "".join(
        f"<tr><td class='text'>{html.escape(a)}</td><td class='text'>"
        f"{html.escape(str(w.get('name')))}</td><td>{w.get('nthreads')}</td>"
        f"<td class='text'>{_link(worker_links.get(a))}</td></tr>"
        for a, w in identity["workers"].items())
    return (f"<h2>Scheduler</h2><table id='scheduler-info'>"
            f"<tr><th>address</th><td class='text'>"
            f"{html.escape(str(identity['address']))}</td></tr>"
            f"<tr><th>id</th><td class='text'>{html.escape(identity['id'])}</td></tr>"
            f"<tr><th>workers</th><td>{len(identity['workers'])}</td></tr>"
            f"<tr><th>tasks</th><td>{identity['n_tasks']}</td></tr>"
            f"<tr><th>clients</th><td>{identity['clients']}</td></tr></table>"
            f"<h2>Workers</h2><table><tr><th>address</th><th>name</th><th>threads</th>"
            f"<th>dashboard</th></tr>{rows}</table>"
            f"<h2>Machine-readable</h2><ul><li><a href='metrics'>/metrics</a> (Prometheus)</li>"
            f"<li><a href='health'>/health</a></li><li><a href='sitemap.json'>/sitemap.json</a>"
            f"</li><li><a href='api/info'>/api/info</a></li></ul>")


def _link(url):
    if not url:
        return "-"
    return f"<a href='{html.escape(url)}'>{html.escape(url)}</a>"
