// jkmon's charts: small SVG drawings with no library, so the page works on a LAN without
// internet. Each chart is drawn at its container's pixel size (text stays 11 px on a phone) and
// drawn again when that size changes (a resize, a rotation).
//  - bars(): one bar per cell on a stated window around the pack's range, lowest and highest
//    marked, the window's millivolts written;
//  - lines(): time series with a min/max band per bucket; time ticks at whole hours or days
//    (with the date where a day begins), at least four value ticks with the unit, a zero line
//    where values change sign, a crosshair with the values under the pointer or finger, and a
//    legend whose entries hide and show their series.
"use strict";
window.jkCharts = (function () {
  var NS = "http://www.w3.org/2000/svg";
  var COLORS = ["#58a6ff", "#3fb950", "#f0883e", "#d2a8ff", "#ff7b72", "#79c0ff", "#e3b341", "#56d4dd"];
  var MIN = 60000, HOUR = 3600000, DAY = 86400000;

  // Up to 8 series: the fixed colours; more (24 cells): hues a golden angle apart, in two
  // lightnesses, so neighbours never look alike.
  function color(k, n) {
    if (n <= COLORS.length) return COLORS[k % COLORS.length];
    return "hsl(" + Math.round((k * 137.508) % 360) + ", 75%, " + (k % 2 ? 68 : 52) + "%)";
  }

  function el(name, attrs, parent) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function canvas(container) {
    var w = Math.max(200, Math.round(container.clientWidth || 400)), h = Math.max(80, Math.round(container.clientHeight || 150));
    return { svg: el("svg", { viewBox: "0 0 " + w + " " + h, width: w, height: h, role: "img" }), w: w, h: h };
  }
  function clear(container) {
    while (container.firstChild) container.removeChild(container.firstChild);
  }
  function text(parent, x, y, s, anchor, cls) {
    var t = el("text", { x: x, y: y, "text-anchor": anchor || "start" }, parent);
    if (cls) t.setAttribute("class", cls);
    t.textContent = s;
    return t;
  }

  // Redraw on resize: each drawn container keeps its last draw; one observer for all.
  var observer = typeof ResizeObserver === "function" ? new ResizeObserver(function (entries) {
    entries.forEach(function (e) {
      var c = e.target, d = c._jkDraw;
      if (d && Math.round(c.clientWidth) !== d.width) d.again();
    });
  }) : null;
  function remember(container, again) {
    var first = !container._jkDraw;
    container._jkDraw = { width: Math.round(container.clientWidth), again: again };
    if (first && observer) observer.observe(container);
    container.dataset.draws = String(Number(container.dataset.draws || 0) + 1);
  }

  // values: numbers; opts: {unit, digits, minIndex, maxIndex (0-based), window (the least
  // span shown, in the values' unit), zero (the scale starts at 0)}
  function bars(container, values, opts) {
    opts = opts || {};
    var c = canvas(container), s = c.svg, n = values.length;
    clear(container);
    container.appendChild(s);
    remember(container, function () { bars(container, values, opts); });
    if (!n) return;
    var lo = Math.min.apply(null, values), hi = Math.max.apply(null, values);
    var digits = opts.digits === undefined ? 3 : opts.digits, unit = opts.unit || "";
    var y0, y1;
    if (opts.zero) {
      y0 = 0;
      y1 = niceCeil(hi * 1.15 || 1);
    } else {
      // a fixed window around the pack's range: a 4 mV spread looks like 4 mV of 50
      var step = Math.pow(10, -digits + 1) * 5;
      var span = Math.max(opts.window || 0.05, (hi - lo) * 1.3);
      span = Math.ceil(span / step) * step;
      y0 = Math.floor(((hi + lo) / 2 - span / 2) / step) * step;
      y1 = y0 + span + (hi > y0 + span ? step : 0);
    }
    var left = 52, top = 8, bottom = 18, right = 2;
    var Y = function (v) { return top + (y1 - v) / (y1 - y0) * (c.h - top - bottom); };
    [y0, (y0 + y1) / 2, y1].forEach(function (v) {
      el("line", { x1: left, y1: Y(v), x2: c.w - right, y2: Y(v), "class": "gridline" }, s);
      text(s, left - 4, Y(v) + 4, v.toFixed(digits) + (unit ? " " + unit : ""), "end", "tick");
    });
    var bw = (c.w - left - right) / n;
    values.forEach(function (v, i) {
      var y = Math.min(Y(v), c.h - bottom - 2);
      var cls = "bar" + (i === opts.minIndex ? " min" : i === opts.maxIndex ? " max" : "");
      var r = el("rect", { x: left + i * bw + bw * 0.12, y: y, width: bw * 0.76, height: c.h - bottom - y,
        "class": cls, "data-cell": i + 1 }, s);
      el("title", {}, r).textContent = "cell " + (i + 1) + ": " + v.toFixed(digits) + " " + unit;
      if (bw >= 16 || (i + 1) % Math.ceil(16 / bw) === 0 || i === 0) text(s, left + i * bw + bw / 2, c.h - 4, String(i + 1), "middle", "tick");
    });
    s.dataset.window = y0.toFixed(digits) + "–" + y1.toFixed(digits);
  }
  function niceCeil(v) {
    var p = Math.pow(10, Math.floor(Math.log10(v))), m = v / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  }

  // Value ticks: a 1-2-2.5-5 step giving 4 to 8 labels over [lo, hi], widened to whole steps.
  function valueTicks(lo, hi) {
    var span = hi - lo, step = niceCeil(span / 5);
    if (span / step < 3) step /= 2;
    var a = Math.floor(lo / step) * step, b = Math.ceil(hi / step) * step, ticks = [];
    for (var v = a, i = 0; v <= b + step / 1e6 && i < 20; v += step, i++) ticks.push(Math.abs(v) < step / 1e6 ? 0 : v);
    var digits = Math.max(0, Math.ceil(-Math.log10(step) - 1e-9));
    var scaled = step * Math.pow(10, digits);
    if (Math.abs(scaled - Math.round(scaled)) > 1e-6) digits += 1;
    return { ticks: ticks, lo: a, hi: b, digits: digits };
  }

  // Time ticks at whole local minutes, hours, days or months, as many as their labels have room for.
  var STEPS = [15 * MIN, 30 * MIN, HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY];
  function timeTicks(x0, x1, width) {
    // the smallest step whose labels have room: a time ("16:30", "04:30 PM") needs about
    // 70 px, a date ("27 Nov") about 50
    var span = x1 - x0, step = STEPS[STEPS.length - 1];
    for (var i = 0; i < STEPS.length; i++) {
      if (width * STEPS[i] / span >= (STEPS[i] < DAY ? 70 : 50)) { step = STEPS[i]; break; }
    }
    var t = new Date(x0), ticks = [];
    t.setSeconds(0, 0);
    if (step >= 30 * DAY) { t.setDate(1); t.setHours(0, 0, 0, 0); }
    else if (step >= DAY) t.setHours(0, 0, 0, 0);
    else t.setMinutes(0);
    for (var k = 0; k < 500 && t.getTime() <= x1; k++) {
      if (t.getTime() >= x0) ticks.push(new Date(t.getTime()));
      if (step >= 30 * DAY) t.setMonth(t.getMonth() + 1);
      else if (step >= DAY) t.setDate(t.getDate() + step / DAY);
      else t.setTime(t.getTime() + step);
      // whole days stay at local midnight across a change of summer time
      if (step >= DAY && step < 30 * DAY) t.setHours(0, 0, 0, 0);
    }
    return ticks.map(function (d) {
      var midnight = d.getHours() === 0 && d.getMinutes() === 0;
      var label = step >= 30 * DAY ? d.toLocaleDateString([], { month: "short", year: "numeric" })
        : midnight ? d.toLocaleDateString([], { day: "numeric", month: "short" })
        : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      return { t: d.getTime(), label: label, day: midnight };
    });
  }
  function when(t, span) {
    var d = new Date(t);
    return d.toLocaleDateString([], { weekday: "short", day: "numeric", month: "short" }) +
      (span <= 40 * DAY ? " " + d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "");
  }

  // series: [{name, points: [{t (ms), avg, min, max}]}]; opts: {from, to (ms), digits, unit}
  function lines(container, series, opts) {
    opts = opts || {};
    var hidden = container._jkHidden || {};
    container._jkHidden = hidden;
    clear(container);
    var plot = document.createElement("div");
    plot.className = "plot";
    container.appendChild(plot);
    var c = canvas(plot), s = c.svg, left = 54, right = 8, top = 10, bottom = 20;
    plot.appendChild(s);
    remember(container, function () { lines(container, series, opts); });
    var unit = opts.unit || "", n = series.length;
    var shown = series.filter(function (se) { return !hidden[se.name]; });
    var all = [];
    shown.forEach(function (se) { se.points.forEach(function (p) {
      if (p.avg !== null && p.avg !== undefined) all.push(p.min !== undefined ? p.min : p.avg, p.max !== undefined ? p.max : p.avg);
    }); });
    legend(container, series, hidden, function () { lines(container, series, opts); });
    if (!all.length) {
      text(s, c.w / 2, c.h / 2, series.length ? "no data in this range" : "no data", "middle", "tick");
      return;
    }
    var lo = Math.min.apply(null, all), hi = Math.max.apply(null, all);
    if (hi - lo < 1e-9) { hi += Math.abs(hi) * 0.01 || 1; lo -= Math.abs(lo) * 0.01 || 1; }
    var vt = valueTicks(lo, hi);
    lo = vt.lo; hi = vt.hi;
    var x0 = opts.from, x1 = opts.to;
    var X = function (t) { return left + (t - x0) / (x1 - x0) * (c.w - left - right); };
    var Y = function (v) { return top + (hi - v) / (hi - lo) * (c.h - top - bottom); };
    vt.ticks.forEach(function (v) {
      el("line", { x1: left, y1: Y(v), x2: c.w - right, y2: Y(v), "class": "gridline" }, s);
      text(s, left - 4, Y(v) + 4, v.toFixed(vt.digits) + (unit ? " " + unit : ""), "end", "tick y");
    });
    if (lo < 0 && hi > 0) el("line", { x1: left, y1: Y(0), x2: c.w - right, y2: Y(0), "class": "zero" }, s);
    var tt = timeTicks(x0, x1, c.w - left - right);
    tt.forEach(function (k, i) {
      el("line", { x1: X(k.t), y1: top, x2: X(k.t), y2: c.h - bottom, "class": k.day ? "gridline day" : "gridline" }, s);
      var anchor = X(k.t) < left + 30 ? "start" : X(k.t) > c.w - right - 30 ? "end" : "middle";
      text(s, X(k.t), c.h - 5, k.label, anchor, "tick x" + (k.day ? " day" : ""));
    });
    el("line", { x1: left, y1: c.h - bottom, x2: c.w - right, y2: c.h - bottom, "class": "axis" }, s);
    series.forEach(function (se, k) {
      se.color = se.color || color(k, n);
      if (hidden[se.name]) return;
      // a gap in the data is a gap in the line, never a straight jump across it
      var runs = [], run = [];
      se.points.forEach(function (p) {
        if (p.avg === null || p.avg === undefined) { if (run.length) runs.push(run); run = []; }
        else run.push(p);
      });
      if (run.length) runs.push(run);
      runs.forEach(function (pts) {
        if (pts[0].min !== undefined && n <= 4) {
          var up = pts.map(function (p) { return X(p.t) + "," + Y(p.max); });
          var down = pts.slice().reverse().map(function (p) { return X(p.t) + "," + Y(p.min); });
          el("polygon", { points: up.concat(down).join(" "), "class": "band", fill: se.color }, s);
        }
        el("polyline", { points: pts.map(function (p) { return X(p.t) + "," + Y(p.avg); }).join(" "),
          "class": "series", stroke: se.color }, s);
        if (pts.length < 3) pts.forEach(function (p) { el("circle", { cx: X(p.t), cy: Y(p.avg), r: 2.5, fill: se.color }, s); });
      });
    });
    crosshair(plot, s, { series: shown, X: X, Y: Y, x0: x0, x1: x1, left: left, right: right, top: top, bottom: bottom,
      w: c.w, h: c.h, unit: unit, digits: opts.digits === undefined ? vt.digits : opts.digits });
  }

  function legend(container, series, hidden, redraw) {
    var box = document.createElement("div");
    box.className = "legend";
    series.forEach(function (se, k) {
      var b = document.createElement("button");
      b.type = "button";
      b.setAttribute("aria-pressed", String(!hidden[se.name]));
      b.title = (hidden[se.name] ? "show " : "hide ") + se.name;
      var sw = document.createElement("i");
      sw.style.background = se.color || color(k, series.length);
      b.appendChild(sw);
      b.appendChild(document.createTextNode(se.name));
      b.addEventListener("click", function () {
        if (hidden[se.name]) delete hidden[se.name]; else hidden[se.name] = true;
        redraw();
      });
      box.appendChild(b);
    });
    container.appendChild(box);
  }

  // The values at the time under the pointer (or finger): a line, a dot per series, and a box
  // with the time and each value.
  function crosshair(plot, s, g) {
    var line = el("line", { y1: g.top, y2: g.h - g.bottom, "class": "cross", visibility: "hidden" }, s);
    var dots = g.series.map(function (se) { return el("circle", { r: 3.5, fill: se.color, visibility: "hidden" }, s); });
    var tip = document.createElement("div");
    tip.className = "tip";
    tip.hidden = true;
    plot.appendChild(tip);
    var hit = el("rect", { x: g.left, y: g.top, width: g.w - g.left - g.right, height: g.h - g.top - g.bottom,
      "class": "hit" }, s);
    function nearest(points, t) {
      var best = null;
      points.forEach(function (p) {
        if (p.avg === null || p.avg === undefined) return;
        if (!best || Math.abs(p.t - t) < Math.abs(best.t - t)) best = p;
      });
      return best;
    }
    function show(clientX) {
      var box = s.getBoundingClientRect();
      var x = (clientX - box.left) * (g.w / box.width);
      var t = g.x0 + (x - g.left) / (g.w - g.left - g.right) * (g.x1 - g.x0);
      var at = null, rows = [];
      g.series.forEach(function (se, i) {
        var p = nearest(se.points, t);
        if (!p) { dots[i].setAttribute("visibility", "hidden"); return; }
        at = at === null || Math.abs(p.t - t) < Math.abs(at - t) ? p.t : at;
        dots[i].setAttribute("cx", g.X(p.t));
        dots[i].setAttribute("cy", g.Y(p.avg));
        dots[i].setAttribute("visibility", "visible");
        rows.push([se, p.avg]);
      });
      if (at === null) return;
      line.setAttribute("x1", g.X(at));
      line.setAttribute("x2", g.X(at));
      line.setAttribute("visibility", "visible");
      while (tip.firstChild) tip.removeChild(tip.firstChild);
      var head = document.createElement("b");
      head.textContent = when(at, g.x1 - g.x0);
      tip.appendChild(head);
      rows.slice(0, 24).forEach(function (r) {
        var row = document.createElement("span");
        var sw = document.createElement("i");
        sw.style.background = r[0].color;
        row.appendChild(sw);
        row.appendChild(document.createTextNode(r[0].name + " " + r[1].toFixed(g.digits) + (g.unit ? " " + g.unit : "")));
        tip.appendChild(row);
      });
      tip.hidden = false;
      var px = g.X(at) * (box.width / g.w);
      tip.style.left = (px > box.width / 2 ? Math.max(0, px - tip.offsetWidth - 8) : px + 8) + "px";
    }
    function hide() {
      line.setAttribute("visibility", "hidden");
      dots.forEach(function (d) { d.setAttribute("visibility", "hidden"); });
      tip.hidden = true;
    }
    hit.addEventListener("pointermove", function (e) { show(e.clientX); });
    hit.addEventListener("pointerdown", function (e) { show(e.clientX); });
    hit.addEventListener("pointerleave", hide);
  }

  // el: an SVG element with these attributes, appended to parent (the dashboard's flow uses it)
  return { bars: bars, lines: lines, el: el };
})();
