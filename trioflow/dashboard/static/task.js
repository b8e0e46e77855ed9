/* The task page: polls /api/task/<key> once a second. */
(function () {
  "use strict";
  var C = window.TrioflowCharts, key = document.body.dataset.key;
  function byId(id) { return document.getElementById(id); }
  function list(id, items, render) {
    var ul = byId(id); ul.textContent = "";
    (items || []).forEach(function (it) { ul.appendChild(render(it)); });
    if (!items || !items.length) ul.appendChild(C.el("li", "", "none"));
  }
  function taskLink(t) {
    var li = C.el("li"), a = C.el("a", "", t.key + "  (" + t.state + ")");
    a.href = "../task/" + encodeURIComponent(t.key); li.appendChild(a); return li;
  }
  function render(info) {
    byId("task-state").textContent = info.found ? info.state : "not known to the scheduler";
    var facts = byId("task-facts"); facts.textContent = "";
    Object.keys(info.facts || {}).forEach(function (k) {
      var tr = C.el("tr"); tr.appendChild(C.el("th", "", k));
      tr.appendChild(C.el("td", "text", String(info.facts[k]))); facts.appendChild(tr);
    });
    list("task-deps", info.dependencies, taskLink);
    list("task-dependents", info.dependents, taskLink);
    list("task-who-has", info.who_has, function (w) { return C.el("li", "", w); });
    var story = byId("task-story");
    story.textContent = info.story ? info.story.map(function (r) { return r.join("  "); })
      .join("\n") : "no story recorded (the scheduler keeps none)";
  }
  function poll() {
    fetch("../api/task/" + encodeURIComponent(key)).then(function (r) { return r.json(); })
      .then(render).catch(function () {});
  }
  poll(); setInterval(poll, 1000);
})();
