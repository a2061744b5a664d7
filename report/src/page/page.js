(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("data").textContent);
  document.documentElement.classList.add("hasjs");
  // Label and colour of each value of a dump's or a reading's parts (the page's own).
  var PARTS = D.layers.map(function (l) { return l[0]; });
  var COLOURS = D.layers.map(function (l) { return l[1]; });
  var state = { sel: D.selected, base: D.base, zoom: [], search: "" };
  var $ = function (id) { return document.getElementById(id); };

  function hb(v) {
    var a = Math.abs(v), u = ["KiB", "MiB", "GiB", "TiB", "PiB"], i = -1;
    if (a < 1024) return Math.round(v) + " B";
    while (Math.abs(v) >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return v.toFixed(1) + " " + u[i];
  }
  function sg(v) { return (v > 0 ? "+" : "") + hb(v); }
  function pc(v, t) { return t ? (100 * v / t).toFixed(1) + "%" : "-"; }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function stamp(ms) { return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC"); }

  // ---- flame graphs ----
  function tree(vals, baseVals) {
    var root = { v: 0, d: 0, c: new Map() }, both = new Map();
    (vals || []).forEach(function (e) { var x = both.get(e[0]) || [0, 0]; x[0] += e[1]; both.set(e[0], x); });
    (baseVals || []).forEach(function (e) { var x = both.get(e[0]) || [0, 0]; x[1] += e[1]; both.set(e[0], x); });
    both.forEach(function (x, s) {
      var w = baseVals ? Math.max(x[0], x[1]) : x[0], d = baseVals ? x[0] - x[1] : 0;
      if (w <= 0) return;
      var n = root; n.v += w; n.d += d;
      D.stacks[s].forEach(function (id) {
        var c = n.c.get(id);
        if (!c) { c = { v: 0, d: 0, c: new Map() }; n.c.set(id, c); }
        n = c; n.v += w; n.d += d;
      });
    });
    return root;
  }
  function colour(name, n, diff) {
    if (diff) {
      var r = n.v > 0 ? Math.max(-1, Math.min(1, n.d / n.v)) : 0, k = Math.round(255 * (1 - Math.abs(r)));
      return r >= 0 ? "rgb(255," + k + "," + k + ")" : "rgb(" + k + "," + k + ",255)";
    }
    var h = 5381;
    for (var i = 0; i < name.length; i++) h = (Math.imul(h, 33) ^ name.charCodeAt(i)) >>> 0;
    return "rgb(" + (205 + h % 50) + "," + ((h >>> 8) % 180 + 40) + "," + ((h >>> 16) % 55) + ")";
  }
  var W = 1200, FH = 17;
  function drawFlame(el, root, diff, zoomable) {
    var path = zoomable ? state.zoom : [], top = root, chain = [];
    for (var i = 0; i < path.length; i++) {
      var c = top.c.get(path[i]);
      if (!c) { path = []; top = root; chain = []; break; }
      chain.push([path[i], top = c]);
    }
    var hit = matcher(state.search);
    var out = [], frames = [], maxLevel = 0;
    function rect(n, name, x, w, level, fullPath) {
      var label = name === null ? "all" : D.names[name];
      var y = level * FH, idx = frames.length;
      frames.push(fullPath);
      maxLevel = Math.max(maxLevel, level);
      var fits = Math.max(0, Math.floor((w - 6) / 7));
      var text = label.length <= fits ? label : (fits > 2 ? label.slice(0, fits - 2) + ".." : "");
      var detail = diff ? label + " change " + sg(n.d) + " (width " + hb(n.v) + ")"
        : label + ": " + hb(n.v) + " (" + pc(n.v, root.v) + ")";
      var m = hit && name !== null && hit(label);
      out.push('<g class="fr' + (m ? " match" : "") + '" data-i="' + idx + '"><title>' + esc(detail) +
        '</title><rect x="' + x.toFixed(1) + '" y="' + y + '" width="' + w.toFixed(1) + '" height="' + (FH - 1) +
        '" fill="' + colour(label, n, diff) + '"/><text x="' + (x + 3).toFixed(1) + '" y="' + (y + FH - 5) + '">' +
        esc(text) + "</text></g>");
    }
    rect(root, null, 0, W, 0, []);
    for (var j = 0; j < chain.length; j++) rect(chain[j][1], chain[j][0], 0, W, j + 1, path.slice(0, j + 1));
    var scale = W / Math.max(top.v, 1);
    (function walk(n, x, level, p) {
      var cx = x;
      Array.from(n.c.keys()).sort(function (a, b) { return a - b; }).forEach(function (id) {
        var c = n.c.get(id), w = c.v * scale;
        if (w >= 1 && level < 200) {
          var cp = p.concat([id]);
          rect(c, id, cx, w, level, cp);
          walk(c, cx, level + 1, cp);
        }
        cx += w;
      });
    })(top, 0, chain.length + 1, path);
    el.innerHTML = '<svg class="flame" viewBox="0 0 ' + W + " " + ((maxLevel + 1) * FH + 4) +
      '" width="100%" role="img">' + out.join("") + "</svg>";
    if (zoomable) {
      el.querySelectorAll(".fr").forEach(function (g) {
        g.addEventListener("click", function () { state.zoom = frames[+g.getAttribute("data-i")]; render(); });
      });
    }
  }

  // ---- search: matching frames highlighted, their share of the heap ----
  // A plain substring, never a RegExp: the search comes from the link's fragment, and a
  // pattern such as (.*){1,40}(.*){1,40} would freeze the page for whoever opens it.
  function matcher(text) {
    return text ? function (label) { return label.indexOf(text) !== -1; } : null;
  }
  function searchShare(vals) {
    var f = $("found");
    if (!f) return;
    var hit = matcher(state.search);
    if (!hit) { f.textContent = ""; return; }
    var matched = 0, total = 0, names = new Set();
    (vals || []).forEach(function (e) {
      total += e[1];
      var any = false;
      D.stacks[e[0]].forEach(function (id) { if (hit(D.names[id])) { any = true; names.add(D.names[id]); } });
      if (any) matched += e[1];
    });
    f.textContent = names.size ? "matched " + names.size + " function(s): " + Array.from(names).slice(0, 3).join(", ") +
      (names.size > 3 ? ", ..." : "") + " hold " + hb(matched) + " (" + pc(matched, total) + ")" : "no frame matches";
    f.setAttribute("data-share", total ? (matched / total).toFixed(4) : "0");
  }

  // ---- top table ----
  function topRows(vals) {
    var flat = new Map(), cum = new Map();
    (vals || []).forEach(function (e) {
      var s = D.stacks[e[0]], seen = new Set();
      if (s.length) flat.set(s[s.length - 1], (flat.get(s[s.length - 1]) || 0) + e[1]);
      s.forEach(function (id) { if (!seen.has(id)) { seen.add(id); cum.set(id, (cum.get(id) || 0) + e[1]); } });
    });
    var rows = [];
    cum.forEach(function (c, id) { rows.push([id, flat.get(id) || 0, c]); });
    return rows;
  }
  var sortKey = 1, sortDesc = true;
  function drawTop(d) {
    var el = $("toptable");
    if (!el) return;
    if (!d.values) { el.innerHTML = "<p>This dump was summarised: no stacks on this page.</p>"; return; }
    var rows = topRows(d.values);
    rows.sort(function (a, b) {
      var x = sortKey === 0 ? D.names[a[0]].localeCompare(D.names[b[0]]) : (sortKey <= 2 ? a[1] - b[1] : a[2] - b[2]);
      return sortDesc ? -x : x;
    });
    var h = ['<table id="top" class="num sortable"><thead><tr>'];
    ["function", "flat", "flat%", "cum", "cum%"].forEach(function (t, k) {
      h.push('<th data-k="' + k + '">' + t + (k === sortKey ? (sortDesc ? " \u25bc" : " \u25b2") : "") + "</th>");
    });
    h.push("</tr></thead><tbody>");
    rows.slice(0, 200).forEach(function (r) {
      h.push('<tr><td class="fn">' + esc(D.names[r[0]]) + '</td><td data-v="' + r[1] + '">' + hb(r[1]) + "</td><td>" +
        pc(r[1], d.total) + '</td><td data-v="' + r[2] + '">' + hb(r[2]) + "</td><td>" + pc(r[2], d.total) + "</td></tr>");
    });
    h.push("</tbody></table>");
    el.innerHTML = h.join("");
    el.querySelectorAll("th[data-k]").forEach(function (th) {
      th.addEventListener("click", function () {
        var k = +th.getAttribute("data-k");
        if (k === 2 || k === 4) k -= 1;
        sortDesc = k === sortKey ? !sortDesc : k !== 0;
        sortKey = k;
        drawTop(D.dumps[state.sel]);
      });
    });
  }

  function drawBreakdown(d) {
    var el = $("breakdown");
    if (!el) return;
    if (!d.parts || !d.rss) {
      el.innerHTML = '<p class="missing">No memory breakdown for this dump (no sidecar with a memory snapshot).</p>';
      return;
    }
    var h = ["<p>RSS " + hb(d.rss) + ':</p><div class="bar">'];
    d.parts.forEach(function (v, i) {
      if (!v) return;
      h.push('<span style="width:' + (100 * v / d.rss).toFixed(2) + "%;background:" + COLOURS[i] + '" title="' +
        PARTS[i] + ": " + hb(v) + " (" + pc(v, d.rss) + ')">' + (v > 0.08 * d.rss ? PARTS[i] : "") + "</span>");
    });
    h.push('</div><table class="num">');
    d.parts.forEach(function (v, i) {
      h.push('<tr><td><i class="sw" style="background:' + COLOURS[i] + '"></i>' + PARTS[i] + "</td><td>" + hb(v) +
        "</td><td>" + pc(v, d.rss) + "</td></tr>");
    });
    h.push("</table>");
    if (d.advice.length) {
      h.push('<ul class="advice">');
      d.advice.forEach(function (a) { h.push("<li>" + esc(a) + "</li>"); });
      h.push("</ul>");
    }
    el.innerHTML = h.join("");
  }

  function render() {
    var d = D.dumps[state.sel], b = D.dumps[state.base];
    if (!d) return;
    $("dumptitle").textContent = d.name + " taken " + d.when + (d.why ? " (" + d.why + ")" : "") +
      ": heap in use (profile) " + hb(d.total);
    drawBreakdown(d);
    if (d.values) drawFlame($("flame"), tree(d.values, null), false, true);
    else $("flame").innerHTML = "<p>This dump was summarised: no stacks on this page.</p>";
    searchShare(d.values);
    drawTop(d);
    var gt = $("growthtitle");
    if (gt && b) {
      gt.textContent = "From " + b.name + " (" + b.when + ") to " + d.name + " (" + d.when + "): heap in use " +
        hb(b.total) + " \u2192 " + hb(d.total) + " (" + sg(d.total - b.total) + ")";
    }
    var df = $("diffflame");
    if (df) {
      if (d.values && b && b.values && state.base !== state.sel) drawFlame(df, tree(d.values, b.values), true, false);
      else df.innerHTML = "<p>Choose a base dump other than the selected one, with stacks, to compare.</p>";
    }
    document.querySelectorAll("#tl .marker.dump").forEach(function (g) {
      g.classList.toggle("sel", +g.getAttribute("data-dump") === state.sel);
    });
    $("sel").value = String(state.sel);
    var bs = $("basesel");
    if (bs) bs.value = String(state.base);
  }
  function select(i) {
    if (i === state.sel || !D.dumps[i]) return;
    state.sel = i; state.zoom = [];
    render();
  }

  // ---- timeline hover and click ----
  (function () {
    var svg = $("tl"), tip = $("tip");
    if (!svg) return;
    // The plot area as the chart drew it.
    var num = function (k) { return +svg.getAttribute("data-" + k); };
    var t0 = num("t0"), t1 = num("t1"), X0 = num("x0"), X1 = num("x1");
    var pts = D.timeline.points, marks = D.timeline.markers;
    var line = document.createElementNS("http://www.w3.org/2000/svg", "line");
    line.setAttribute("id", "hover"); line.setAttribute("y1", num("y0")); line.setAttribute("y2", num("y1"));
    line.style.display = "none";
    svg.appendChild(line);
    svg.addEventListener("mousemove", function (ev) {
      var p = svg.createSVGPoint(); p.x = ev.clientX; p.y = ev.clientY;
      var q = p.matrixTransform(svg.getScreenCTM().inverse());
      var t = t0 + (q.x - X0) / (X1 - X0) * Math.max(t1 - t0, 1000);
      var best = null;
      pts.forEach(function (s) { if (!best || Math.abs(s.t - t) < Math.abs(best.t - t)) best = s; });
      var near = marks.filter(function (m) { return Math.abs(m.t - t) <= (t1 - t0) / 100; });
      if (!best && !near.length) return;
      var lines = [];
      if (best) {
        lines.push(stamp(best.t), "RSS " + hb(best.rss));
        if (best.parts) best.parts.forEach(function (v, i) { if (v) lines.push(PARTS[i] + " " + hb(v) + " (" + pc(v, best.rss) + ")"); });
        if (best.limit) lines.push("limit " + hb(best.limit));
        var x = X0 + (best.t - t0) / Math.max(t1 - t0, 1000) * (X1 - X0);
        line.setAttribute("x1", x); line.setAttribute("x2", x); line.style.display = "";
      }
      near.forEach(function (m) { lines.push(m.kind + ": " + m.label + (m.why ? " (" + m.why + ")" : "")); });
      tip.textContent = lines.join("\n");
      tip.hidden = false;
      tip.style.left = (ev.clientX + 14) + "px"; tip.style.top = (ev.clientY + 14) + "px";
    });
    svg.addEventListener("mouseleave", function () { tip.hidden = true; line.style.display = "none"; });
    svg.querySelectorAll(".marker.dump").forEach(function (g) {
      g.addEventListener("click", function () { select(+g.getAttribute("data-dump")); });
    });
  })();

  // ---- controls ----
  if ($("sel")) $("sel").addEventListener("change", function () { select(+this.value); });
  var gt = $("growthtitle");
  if (gt) {
    var p = document.createElement("p");
    p.className = "js";
    var h = ['<label>Base: <select id="basesel">'];
    D.dumps.forEach(function (d, i) {
      h.push('<option value="' + i + '">' + esc(d.when + " " + d.name) + (d.values ? "" : " (summarised)") + "</option>");
    });
    p.innerHTML = h.join("") + "</select></label>";
    gt.parentNode.insertBefore(p, gt);
    $("basesel").addEventListener("change", function () { state.base = +this.value; render(); });
  }
  var search = $("search") || document.createElement("input");
  search.addEventListener("input", function () { state.search = search.value; render(); });
  if ($("reset")) $("reset").addEventListener("click", function () { state.zoom = []; render(); });
  // #search=TEXT&dump=N&base=N: a view that can be linked to (and tested without typing).
  // A value that does not decode (a stray %) is empty: a link cannot stop the script.
  function decoded(v) { try { return decodeURIComponent(v); } catch (e) { return ""; } }
  location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
    var i = kv.indexOf("="), k = kv.slice(0, i), v = decoded(kv.slice(i + 1));
    if (k === "search") { state.search = v; search.value = v; }
    if (k === "dump" && D.dumps[+v]) state.sel = +v;
    if (k === "base" && D.dumps[+v]) state.base = +v;
  });
  var form = $("dumpnow");
  if (form) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var st = $("dumpstatus");
      st.textContent = "taking a dump...";
      fetch("/dump", { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: "csrf=" + encodeURIComponent(D.live.csrf) }).then(function (r) {
        return r.text().then(function (t) {
          if (r.ok) { st.textContent = "done: " + t + "; reloading"; location.reload(); }
          else st.textContent = "refused (" + r.status + "): " + t;
        });
      }, function (e) { st.textContent = "failed: " + e; });
    });
  }
  render();
  document.body.setAttribute("data-ready", "1");
})();
