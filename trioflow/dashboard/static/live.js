/* The live pages: one EventSource on /api/feed, deltas merged here, drawn
   with TrioflowCharts.  The scheduler sends numbers, the browser draws. */
(function () {
  "use strict";
  var C = window.TrioflowCharts;
  var WINDOW = 20, KEEP = 10000;
  var state = {rows: [], tasks: [], transfers: [], last: null, skew: 0};

  function merge(m) {
    if (m.reset) { state.tasks = []; state.transfers = []; }
    if (m.rows) state.rows = m.rows;
    state.tasks = state.tasks.concat(m.tasks || []);
    state.transfers = state.transfers.concat(m.transfers || []);
    if (state.tasks.length > KEEP) state.tasks = state.tasks.slice(-KEEP);
    if (state.transfers.length > KEEP) state.transfers = state.transfers.slice(-KEEP);
    state.skew = Date.now() / 1000 - m.now;  // draw in the scheduler's clock
    state.last = m;
  }

  function byId(id) { return document.getElementById(id); }

  function drawStatus() {
    var m = state.last; if (!m) return;
    var now = Date.now() / 1000 - state.skew;
    var stream = byId("task-stream");
    if (stream) C.drawTaskStream(stream, state.rows, state.tasks, state.transfers,
                                 [now - WINDOW, now], byId("task-stream-legend"));
    if (byId("progress")) C.drawProgress(byId("progress"), m.progress);
    if (byId("memory")) C.memoryBars(byId("memory"), m.workers);
    if (byId("processing")) C.processingBars(byId("processing"), m.workers);
    var s = m.summary, summary = byId("summary");
    if (summary) summary.textContent = s.workers + " workers · " + s.threads + " threads · " +
      s.tasks + " tasks held · " + s.forgotten + " forgotten · " + s.clients + " clients";
  }

  function cell(row, text, cls) {
    var td = C.el("td", cls, text); row.appendChild(td); return td;
  }

  function drawWorkers() {
    var m = state.last, body = byId("workers-body"); if (!m || !body) return;
    body.textContent = "";
    m.workers.forEach(function (w) {
      var tr = C.el("tr"); tr.setAttribute("data-address", w.address);
      cell(tr, w.address, "text address"); cell(tr, w.name, "text");
      cell(tr, w.nthreads); cell(tr, (w.cpu || 0).toFixed(0) + " %");
      cell(tr, C.bytes(w.memory)); cell(tr, C.bytes(w.managed)); cell(tr, C.bytes(w.spilled || 0));
      cell(tr, w.memory_limit ? C.bytes(w.memory_limit) : "none");
      cell(tr, w.executing); cell(tr, w.ready); cell(tr, w.processing); cell(tr, w.in_memory);
      cell(tr, w.last_seen === null ? "-" : w.last_seen.toFixed(1) + " s ago");
      body.appendChild(tr);
    });
    var count = byId("worker-count"); if (count) count.textContent = m.workers.length + " workers";
  }

  var updates = 0;
  function connect() {
    var source = new EventSource("api/feed");
    source.onmessage = function (e) {
      merge(JSON.parse(e.data));
      updates++;
      document.body.setAttribute("data-updates", updates);
      if (document.body.dataset.page === "workers") drawWorkers(); else drawStatus();
    };
  }
  // the task stream slides between messages too (only the canvas: cheap for the browser)
  setInterval(function () {
    if (document.body.dataset.page !== "status" || !state.last) return;
    var now = Date.now() / 1000 - state.skew;
    C.drawTaskStream(byId("task-stream"), state.rows, state.tasks, state.transfers,
                     [now - WINDOW, now], null);
  }, 500);
  connect();
})();
