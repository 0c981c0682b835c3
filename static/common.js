// Shared helpers of jkmon's pages. Values are always set with textContent, never as HTML.
"use strict";
window.jk = (function () {
  // a value the hardware did not report is "no data": never a 0, never the last value
  var NO_DATA = "no data";
  function fmt(v, digits, unit) {
    if (v === null || v === undefined || v === "" || v === "N/A" || Number.isNaN(Number(v))) return NO_DATA;
    return Number(v).toFixed(digits) + (unit ? "\u202f" + unit : "");
  }
  function set(root, field, text, cls) {
    root.querySelectorAll('[data-f="' + field + '"]').forEach(function (el) {
      el.textContent = text;
      if (cls !== undefined) el.className = el.className.split(" ").filter(function (c) {
        return c === "pill" || c === "value" || c === "badge" || c === "big" || c === "sub" || c === "small";
      }).concat(cls ? [cls] : []).join(" ");
    });
  }
  function age(seconds) {
    if (seconds === null || seconds === undefined) return "never seen";
    if (seconds < 90) return Math.round(seconds) + " s ago";
    if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
    if (seconds < 172800) return Math.round(seconds / 3600) + " h ago";
    return Math.round(seconds / 86400) + " days ago";
  }
  function connection(state, text) {
    var el = document.getElementById("connection");
    if (!el) return;
    el.textContent = text;
    el.className = "pill " + ({ live: "good", lost: "bad", stale: "warn" }[state] || "muted");
  }
  return { fmt: fmt, set: set, age: age, connection: connection, NO_DATA: NO_DATA };
})();
