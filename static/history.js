// The history page: asks /api/v1/history for a range (aggregated on the server) and draws it.
"use strict";
(function () {
  var days = 1, loadedAt = 0;
  var select = document.getElementById("battery");
  select.hidden = select.options.length === 0;
  function ranges(points, key, scale) {
    return points.map(function (p) {
      var r = p[key];
      return r ? { t: Date.parse(p.t), avg: r.avg * (scale || 1), min: r.min * (scale || 1), max: r.max * (scale || 1) }
        : { t: Date.parse(p.t), avg: null };
    });
  }
  function draw(data) {
    var from = Date.parse(data.from), to = Date.parse(data.to);
    var opts = function (unit, digits) { return { from: from, to: to, unit: unit, digits: digits }; };
    var b = data.batteries[0] || { points: [], name: "" };
    var pts = b.points;
    jkCharts.lines(document.getElementById("c-voltage"), [{ name: b.name, points: ranges(pts, "voltage_v") }], opts("V", 2));
    jkCharts.lines(document.getElementById("c-current"), [{ name: b.name, points: ranges(pts, "current_a") }], opts("A", 1));
    jkCharts.lines(document.getElementById("c-power"), [{ name: b.name, points: ranges(pts, "power_w") }], opts("W", 0));
    jkCharts.lines(document.getElementById("c-soc"), [{ name: b.name, points: ranges(pts, "soc_pct") }], opts("%", 0));
    jkCharts.lines(document.getElementById("c-delta"), [{ name: b.name, points: ranges(pts, "cell_delta_v", 1000) }], opts("mV", 0));
    var names = {};
    pts.forEach(function (p) { Object.keys(p.temperatures_c || {}).forEach(function (k) { names[k] = true; }); });
    jkCharts.lines(document.getElementById("c-temps"), Object.keys(names).map(function (k) {
      return { name: k === "mos" ? "MOS" : k.toUpperCase(), points: pts.map(function (p) {
        var v = (p.temperatures_c || {})[k];
        return { t: Date.parse(p.t), avg: v === undefined ? null : v };
      }) };
    }), opts("°C", 1));
    var n = pts.reduce(function (m, p) { return Math.max(m, (p.cells_v || []).length); }, 0);
    var cells = [];
    for (var i = 0; i < n; i++) {
      cells.push({ name: "cell " + (i + 1), points: pts.map(function (p) {
        var v = (p.cells_v || [])[i];
        return { t: Date.parse(p.t), avg: v === undefined ? null : v };
      }) });
    }
    jkCharts.lines(document.getElementById("c-cells"), cells, opts("V", 3));
    jkCharts.lines(document.getElementById("c-inverter"), [
      { name: "grid", points: ranges(data.inverter, "grid_power_w") },
      { name: "load", points: ranges(data.inverter, "load_power_w") },
      { name: "PV", points: ranges(data.inverter, "pv_power_w") }], opts("W", 0));
    document.getElementById("range-note").textContent = pts.length + (pts.length === 1 ? " point" : " points") + " of " + data.bucket_s + " s";
    document.body.dataset.historyLoaded = String(++loadedAt);
    document.dispatchEvent(new CustomEvent("jkmon:history", { detail: loadedAt }));
  }
  function load() {
    var to = new Date(), from = new Date(to.getTime() - days * 86400000);
    // a file with the inverter's rows only (no battery yet): the inverter's chart alone
    var battery = select.value ? "battery=" + encodeURIComponent(select.value) + "&" : "";
    var url = "/api/v1/history?" + battery +
      "from=" + encodeURIComponent(from.toISOString()) + "&to=" + encodeURIComponent(to.toISOString());
    jk.connection("", "loading…");
    fetch(url, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    }).then(function (data) { jk.connection("live", "up to date"); draw(data); })
      .catch(function (e) { jk.connection("lost", "cannot reach jkmon (" + e.message + ")"); });
  }
  document.querySelectorAll("[data-days]").forEach(function (b) {
    b.addEventListener("click", function () {
      days = Number(b.dataset.days);
      document.querySelectorAll("[data-days]").forEach(function (o) { o.setAttribute("aria-pressed", String(o === b)); });
      load();
    });
  });
  select.addEventListener("change", load);
  load();
})();
