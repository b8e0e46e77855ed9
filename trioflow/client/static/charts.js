/* trioflow's charts: plain canvas and DOM drawing, no library, no network.
   Used by the live dashboard and by the self-contained HTML reports.
   Everything is exported on window.TrioflowCharts. */
(function () {
  "use strict";

  function hue(text) {
    var h = 2166136261;  // FNV-1a, then golden-angle steps: near names get far hues
    for (var i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619) >>> 0;
    return (h % 1000) * 137.508 % 360;
  }
  function prefixColor(prefix, light) {
    return "hsl(" + hue(prefix) + ",62%," + (light ? "78%" : "52%") + ")";
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function bytes(n) {
    if (!n) return "0 B";
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  }

  /* Task stream: rows = [[worker, thread, row]], bars = [[row, start, stop,
     prefix, ok]], transfers = [[row, start, stop, nbytes]]; times in epoch
     seconds; span = [t0, t1]. */
  function drawTaskStream(canvas, rows, bars, transfers, span, legend) {
    var n = Math.max(1, rows.length);
    var width = canvas.clientWidth || 800;
    var rowHeight = Math.max(3, Math.min(18, Math.floor(360 / n)));
    var height = n * rowHeight + 16;
    var ratio = window.devicePixelRatio || 1;
    if (canvas.width !== width * ratio || canvas.height !== height * ratio) {
      canvas.width = width * ratio; canvas.height = height * ratio;
      canvas.style.height = height + "px";
    }
    var ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, width, height);
    var t0 = span[0], t1 = Math.max(span[1], span[0] + 1e-3);
    var scale = width / (t1 - t0);
    var order = {};
    rows.slice().sort(function (a, b) {
      return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0);
    }).forEach(function (r, i) { order[r[2]] = i; });
    ctx.fillStyle = "#f3f3f3";
    for (var i = 0; i < n; i += 2) ctx.fillRect(0, i * rowHeight, width, rowHeight);
    var seen = {};
    bars.forEach(function (b) {
      if (b[2] < t0 || b[1] > t1 || !(b[0] in order)) return;  // a departed worker's
      var y = order[b[0]] * rowHeight;
      var x = (b[1] - t0) * scale, w = Math.max(1, (b[2] - b[1]) * scale);
      ctx.fillStyle = b[4] ? prefixColor(b[3]) : "#000";
      ctx.fillRect(x, y + 1, w, rowHeight - 2);
      seen[b[3]] = (seen[b[3]] || 0) + 1;
    });
    ctx.fillStyle = "rgba(214,39,40,0.75)";
    transfers.forEach(function (t) {
      if (t[2] < t0 || t[1] > t1 || !(t[0] in order)) return;
      var y = order[t[0]] * rowHeight;
      ctx.fillRect((t[1] - t0) * scale, y + 1, Math.max(1, (t[2] - t[1]) * scale),
                   rowHeight - 2);
    });
    ctx.fillStyle = "#555"; ctx.font = "11px sans-serif";
    ctx.fillText((t1 - t0).toFixed(1) + " s shown; one row per worker thread, red: transfers",
                 4, height - 3);
    if (legend) {
      legend.textContent = "";
      Object.keys(seen).sort().forEach(function (p) {
        var item = el("span", "legend-item");
        item.setAttribute("data-prefix", p);
        var swatch = el("span", "swatch"); swatch.style.background = prefixColor(p);
        item.appendChild(swatch); item.appendChild(document.createTextNode(p + " (" + seen[p] + ")"));
        legend.appendChild(item);
      });
    }
  }

  /* Progress: rows = {prefix: [waiting, processing, memory, erred]} */
  function drawProgress(container, rows) {
    container.textContent = "";
    Object.keys(rows).sort().forEach(function (p) {
      var c = rows[p], total = c[0] + c[1] + c[2] + c[3] || 1;
      var line = el("div", "progress-row"); line.setAttribute("data-prefix", p);
      line.appendChild(el("span", "progress-name", p));
      var bar = el("span", "progress-bar");
      [[c[2], prefixColor(p)], [c[1], prefixColor(p, true)], [c[0], "#ddd"], [c[3], "#222"]]
        .forEach(function (s) {
          var seg = el("span", "seg"); seg.style.width = (100 * s[0] / total) + "%";
          seg.style.background = s[1]; bar.appendChild(seg);
        });
      line.appendChild(bar);
      line.appendChild(el("span", "progress-text", "waiting " + c[0] + " · processing " + c[1] +
                          " · memory " + c[2] + " · erred " + c[3]));
      container.appendChild(line);
    });
  }

  /* Per-worker horizontal bars: items = [[label, [[value, colour], ...], total, text]] */
  function drawBars(container, items) {
    container.textContent = "";
    items.forEach(function (it) {
      var line = el("div", "bar-row");
      line.appendChild(el("span", "bar-name", it[0]));
      var bar = el("span", "progress-bar");
      it[1].forEach(function (s) {
        var seg = el("span", "seg");
        seg.style.width = Math.min(100, 100 * s[0] / (it[2] || 1)) + "%";
        seg.style.background = s[1]; bar.appendChild(seg);
      });
      line.appendChild(bar);
      line.appendChild(el("span", "progress-text", it[3]));
      container.appendChild(line);
    });
  }

  function memoryBars(container, workers) {
    var top = Math.max.apply(null, workers.map(function (w) {
      return Math.max(w.memory_limit || Math.max(w.memory, w.managed),
                      w.memory + (w.spilled || 0)); }).concat([1]));
    drawBars(container, workers.map(function (w) {
      var unmanaged = Math.max(0, w.memory - w.managed), spilled = w.spilled || 0;
      return [w.name + "  " + w.address,
              [[w.managed, "#1f77b4"], [unmanaged, "#aec7e8"], [spilled, "#bbbbbb"]], top,
              "managed " + bytes(w.managed) + " · unmanaged " + bytes(unmanaged) +
              (spilled ? " · spilled " + bytes(spilled) : "") +
              (w.memory_limit ? " · limit " + bytes(w.memory_limit) : "") +
              (w.paused ? " · paused" : "")];
    }));
  }

  function processingBars(container, workers) {
    var top = Math.max.apply(null, workers.map(function (w) {
      return Math.max(w.processing, w.nthreads); }).concat([1]));
    drawBars(container, workers.map(function (w) {
      return [w.name + "  " + w.address, [[w.processing, "#2ca02c"]], top,
              w.processing + " processing on " + w.nthreads + " thread(s)"];
    }));
  }

  /* Profile: an icicle of dask's profile tree, root at the top. */
  function drawProfile(canvas, tree, info) {
    var width = canvas.clientWidth || 800, rowHeight = 16, depth = 0, boxes = [];
    function walk(node, x, w, level) {
      depth = Math.max(depth, level + 1);
      boxes.push([x, w, level, node]);
      var offset = x, children = node.children || {};
      Object.keys(children).forEach(function (k) {
        var child = children[k], cw = w * child.count / (node.count || 1);
        walk(child, offset, cw, level + 1); offset += cw;
      });
    }
    walk(tree, 0, width, 0);
    canvas.width = width; canvas.height = Math.min(depth, 60) * rowHeight;
    var ctx = canvas.getContext("2d");
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.font = "10px sans-serif";
    boxes.forEach(function (b) {
      if (b[1] < 1 || b[2] >= 60) return;
      var d = b[3].description, name = typeof d === "string" ? d : (d.name + " " + d.filename);
      ctx.fillStyle = prefixColor(typeof d === "string" ? d : d.name);
      ctx.fillRect(b[0], b[2] * rowHeight, b[1] - 1, rowHeight - 1);
      if (b[1] > 40) {
        ctx.fillStyle = "#000";
        ctx.fillText(name.slice(0, Math.floor(b[1] / 6)), b[0] + 2, b[2] * rowHeight + 11);
      }
    });
    if (info) info.textContent = (tree.count || 0) + " samples";
  }

  window.TrioflowCharts = {
    prefixColor: prefixColor, bytes: bytes, el: el, drawTaskStream: drawTaskStream,
    drawProgress: drawProgress, memoryBars: memoryBars, processingBars: processingBars,
    drawProfile: drawProfile
  };
})();
