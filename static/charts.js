// jkmon's charts: small SVG drawings with no library, so the page works on a LAN without
// internet. bars(): one bar per cell, the lowest and highest marked. lines(): time series with
// a min/max band per bucket.
"use strict";
window.jkCharts = (function () {
  var NS = "http://www.w3.org/2000/svg";
  var COLORS = ["#58a6ff", "#3fb950", "#f0883e", "#d2a8ff", "#ff7b72", "#79c0ff", "#e3b341", "#56d4dd"];

  function el(name, attrs, parent) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function svg(container) {
    var w = container.clientWidth || 400, h = container.clientHeight || 150;
    var s = el("svg", { viewBox: "0 0 " + w + " " + h, preserveAspectRatio: "none", role: "img" });
    return { svg: s, w: w, h: h };
  }
  function replace(container, node, legend) {
    while (container.firstChild) container.removeChild(container.firstChild);
    container.appendChild(node);
    if (legend) container.appendChild(legend);
  }
  function text(parent, x, y, s, anchor) {
    var t = el("text", { x: x, y: y, "text-anchor": anchor || "start" }, parent);
    t.textContent = s;
    return t;
  }

  // values: numbers; opts: {unit, digits, minIndex, maxIndex (0-based), floor}
  function bars(container, values, opts) {
    opts = opts || {};
    var c = svg(container), s = c.svg, n = values.length;
    if (!n) { replace(container, s); return; }
    var lo = Math.min.apply(null, values), hi = Math.max.apply(null, values);
    var pad = Math.max((hi - lo) * 0.25, opts.floor || 0.005);
    var y0 = lo - pad, y1 = hi + pad / 2, top = 12, bottom = 16, left = 2;
    var bw = (c.w - left) / n;
    values.forEach(function (v, i) {
      var hgt = Math.max(2, (v - y0) / (y1 - y0) * (c.h - top - bottom));
      var cls = "bar" + (i === opts.minIndex ? " min" : i === opts.maxIndex ? " max" : "");
      var r = el("rect", { x: left + i * bw + bw * 0.12, y: c.h - bottom - hgt, width: bw * 0.76, height: hgt,
        "class": cls, "data-cell": i + 1 }, s);
      el("title", {}, r).textContent = "cell " + (i + 1) + ": " + v.toFixed(opts.digits || 3) + " " + (opts.unit || "");
      if (bw >= 14) text(s, left + i * bw + bw / 2, c.h - 4, String(i + 1), "middle");
    });
    text(s, 2, 10, hi.toFixed(opts.digits || 3) + " " + (opts.unit || ""));
    replace(container, s);
  }

  // series: [{name, points: [{t (ms), avg, min, max}]}]; opts: {from, to (ms), digits}
  function lines(container, series, opts) {
    opts = opts || {};
    var c = svg(container), s = c.svg, left = 44, right = 6, top = 8, bottom = 18;
    var all = [];
    series.forEach(function (se) { se.points.forEach(function (p) {
      if (p.avg !== null && p.avg !== undefined) all.push(p.min !== undefined ? p.min : p.avg, p.max !== undefined ? p.max : p.avg);
    }); });
    var legend = document.createElement("div");
    legend.className = "legend";
    if (!all.length) {
      text(s, c.w / 2, c.h / 2, "no data in this range", "middle");
      replace(container, s, legend);
      return;
    }
    var lo = Math.min.apply(null, all), hi = Math.max.apply(null, all);
    if (hi - lo < 1e-9) { hi += 1; lo -= 1; }
    var x0 = opts.from, x1 = opts.to;
    function X(t) { return left + (t - x0) / (x1 - x0) * (c.w - left - right); }
    function Y(v) { return top + (hi - v) / (hi - lo) * (c.h - top - bottom); }
    el("line", { x1: left, y1: c.h - bottom, x2: c.w - right, y2: c.h - bottom, "class": "axis" }, s);
    // enough decimals that the three labels differ
    var digits = opts.digits === undefined ? 1 : opts.digits;
    while (digits < 4 && (hi - lo) / 2 < Math.pow(10, -digits)) digits += 1;
    [lo, (lo + hi) / 2, hi].forEach(function (v) {
      text(s, left - 4, Y(v) + 3, v.toFixed(digits), "end");
    });
    var span = x1 - x0, day = 86400000;
    [0, 0.5, 1].forEach(function (f) {
      var d = new Date(x0 + f * span);
      var label = span <= 2 * day ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
        : d.toLocaleDateString([], { month: "short", day: "numeric" });
      text(s, X(x0 + f * span), c.h - 4, label, f === 0 ? "start" : f === 1 ? "end" : "middle");
    });
    series.forEach(function (se, k) {
      var color = se.color || COLORS[k % COLORS.length];
      var pts = se.points.filter(function (p) { return p.avg !== null && p.avg !== undefined; });
      if (!pts.length) return;
      if (pts[0].min !== undefined && series.length <= 4) {
        var up = pts.map(function (p) { return X(p.t) + "," + Y(p.max); });
        var down = pts.slice().reverse().map(function (p) { return X(p.t) + "," + Y(p.min); });
        el("polygon", { points: up.concat(down).join(" "), "class": "band", fill: color }, s);
      }
      el("polyline", { points: pts.map(function (p) { return X(p.t) + "," + Y(p.avg); }).join(" "),
        "class": "series", stroke: color }, s);
      if (pts.length < 60) pts.forEach(function (p) {  // few points: show each one
        el("circle", { cx: X(p.t), cy: Y(p.avg), r: 2.5, fill: color }, s);
      });
      var item = document.createElement("span");
      var sw = document.createElement("i");
      sw.style.background = color;
      item.appendChild(sw);
      item.appendChild(document.createTextNode(se.name));
      legend.appendChild(item);
    });
    replace(container, s, legend);
  }
  return { bars: bars, lines: lines, COLORS: COLORS };
})();
