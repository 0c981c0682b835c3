// The dashboard: renders the status the page was served with, then every status the server
// pushes on /api/v1/events (server-sent events). Shows when a battery is stale and when the
// connection to jkmon is lost.
"use strict";
(function () {
  var app = document.getElementById("app");
  var liveMs = Number(app.dataset.liveMs) || 2000;
  var warnMv = Number(app.dataset.deltaWarnMv) || 50, alarmMv = Number(app.dataset.deltaAlarmMv) || 100;
  var fmt = jk.fmt, set = jk.set;
  var lastEvent = Date.now(), updates = 0;
  window.jkmonPageId = Math.random().toString(36).slice(2);

  function direction(a) {
    if (a === null || a === undefined) return [jk.NO_DATA, "badge"];
    if (a > 0.05) return ["charging", "charging"];
    if (a < -0.05) return ["discharging", "discharging"];
    return ["idle", ""];
  }
  function flag(root, field, label, on) {
    set(root, field, label + (on === null || on === undefined ? " " + jk.NO_DATA : on ? " on" : " off"),
      on ? "good" : on === false ? "muted" : "");
  }
  function pills(container, items, cls) {
    while (container.firstChild) container.removeChild(container.firstChild);
    items.forEach(function (t) {
      var p = document.createElement("span");
      p.className = cls;
      p.textContent = t;
      container.appendChild(p);
    });
  }

  // a switch form asks before it sends anything
  Array.prototype.forEach.call(document.querySelectorAll(".switch-form"), function (form) {
    form.addEventListener("submit", function (e) {
      var on = e.submitter ? e.submitter.value : "";
      if (!window.confirm("Turn " + form.dataset.switch + " " + on + " on " + form.dataset.battery + "?")) {
        e.preventDefault();
        return;
      }
      Array.prototype.forEach.call(form.querySelectorAll("button"), function (b) { b.disabled = true; });
      // a disabled submitter is not sent: carry its value
      var keep = document.createElement("input");
      keep.type = "hidden"; keep.name = "on"; keep.value = on;
      form.appendChild(keep);
    });
  });

  function battery(b) {
    var card = document.getElementById("battery-" + b.position);
    if (!card) return;
    var s = b.snapshot || {};
    card.classList.toggle("stale", !b.online);
    set(card, "state", b.online ? "online" : (b.snapshot ? "offline" : b.state), b.online ? "good" : "bad");
    set(card, "age", b.online ? "updated " + jk.age(b.age_s) : "last data " + jk.age(b.age_s) +
      (b.state_detail ? " · " + b.state_detail : ""));
    set(card, "soc", s.soc_effective_pct === undefined || s.soc_effective_pct === null ? jk.NO_DATA : Math.round(s.soc_effective_pct) + "%");
    set(card, "soc_source", s.soc_source ? "SOC from " + (s.soc_source === "bms" ? "the BMS" : "the voltage curve") : "");
    set(card, "voltage", fmt(s.total_voltage_v, 2, "V"));
    var dir = direction(s.current_a);
    set(card, "current", fmt(s.current_a, 2, "A"));
    set(card, "direction", dir[0], dir[1]);
    set(card, "power", fmt(s.power_w, 0, "W"));
    set(card, "capacity", s.remaining_capacity_ah === undefined || s.remaining_capacity_ah === null ? jk.NO_DATA
      : fmt(s.remaining_capacity_ah, 0) + " / " + fmt(s.nominal_capacity_ah, 0, "Ah"));
    set(card, "cycles", s.cycle_count === undefined || s.cycle_count === null ? jk.NO_DATA : String(s.cycle_count));
    set(card, "soh", s.soh_pct === undefined || s.soh_pct === null ? jk.NO_DATA : s.soh_pct + "%");
    var temps = s.temperatures_c || {};
    pills(card.querySelector('[data-f="temps"]'), Object.keys(temps).map(function (k) {
      return (k === "mos" ? "MOS" : k.toUpperCase()) + " " + fmt(temps[k], 1, "°C");
    }), "pill");
    flag(card, "charge_mos", "charge", s.charging_enabled);
    flag(card, "discharge_mos", "discharge", s.discharging_enabled);
    set(card, "balancing", "balancer " + (s.balancing ? (s.balancing_mode || "on") : "off"), s.balancing ? "warn" : "muted");
    flag(card, "heating", "heater", s.heating);
    // the JK-PB's last values, only those its firmware reports (none on other boards)
    var known = function (v) { return v !== null && v !== undefined; };
    var charger = [];
    if (known(s.charge_status)) charger.push("charger " + s.charge_status);
    if (known(s.precharging)) charger.push("precharge " + (s.precharging ? "on" : "off"));
    if (known(s.heating_current_a)) charger.push("heater current " + fmt(s.heating_current_a, 2, "A"));
    if (known(s.dry_contacts)) {
      charger.push("DRY1 " + (s.dry_contacts.dry1 ? "closed" : "open"));
      charger.push("DRY2 " + (s.dry_contacts.dry2 ? "closed" : "open"));
    }
    pills(card.querySelector('[data-f="charger"]'), charger, "pill muted");
    pills(card.querySelector('[data-f="alarms"]'), (s.alarms || []).map(function (a) { return "⚠ " + a; }), "pill bad");
    var sw = s.switches || {};
    pills(card.querySelector('[data-f="switches"]'), Object.keys(sw).length ? Object.keys(sw).map(function (k) {
      return k + " " + (sw[k] ? "on" : "off");
    }) : ["not reported yet"], "pill muted");
    Array.prototype.forEach.call(card.querySelectorAll('[data-f="switches"] .pill'), function (p) {
      if (/ on$/.test(p.textContent)) p.className = "pill good";
    });
    var writes = card.querySelector('[data-f="writes"]');
    while (writes.firstChild) writes.removeChild(writes.firstChild);
    (b.switch_writes || []).forEach(function (w) {
      var li = document.createElement("li");
      li.className = w.outcome === "confirmed" ? "good" : "bad";
      li.textContent = new Date(w.at).toLocaleString() + " · " + w.switch + " " + (w.on ? "on" : "off") +
        " by " + w.source + (w.chat_id !== null && w.chat_id !== undefined ? " (chat " + w.chat_id + ")" : "") +
        ": " + w.outcome.replace(/_/g, " ") + (w.detail ? " — " + w.detail : "");
      writes.appendChild(li);
    });
    var cells = s.cell_voltages_v || [];
    var deltaMv = s.cell_delta_v === undefined || s.cell_delta_v === null ? null : s.cell_delta_v * 1000;
    var dcls = deltaMv === null ? "" : deltaMv >= alarmMv ? "delta-alarm" : deltaMv >= warnMv ? "delta-warn" : "delta-ok";
    set(card, "cell_summary", cells.length ? cells.length + " cells · min " + fmt(s.cell_min_v, 3, "V") + " (#" +
      s.cell_min_index + ") · max " + fmt(s.cell_max_v, 3, "V") + " (#" + s.cell_max_index + ") · Δ " +
      fmt(deltaMv, 0, "mV") + (s.balancing ? " · balancing" : "") : "no cell data", "sub " + dcls);
    // a 50 mV window around the pack: the spread drawn to scale, the window's ends written
    jkCharts.bars(card.querySelector('[data-f="cells"]'), cells,
      { unit: "V", digits: 3, window: 0.05, minIndex: (s.cell_min_index || 0) - 1, maxIndex: (s.cell_max_index || 0) - 1 });
    var res = (s.cell_resistances_ohm || []).map(function (r) { return r * 1000; });
    jkCharts.bars(card.querySelector('[data-f="resistances"]'), res, { unit: "mΩ", digits: 0, zero: true });
    var dev = card.querySelector('[data-f="device"]');
    while (dev.firstChild) dev.removeChild(dev.firstChild);
    [["Model", b.model], ["Hardware", b.hardware_version], ["Software", b.software_version],
     ["Serial", b.serial_number], ["Layout", s.variant], ["Address", b.address]].forEach(function (kv) {
      if (!kv[1]) return;
      var dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = kv[0];
      dd.textContent = kv[1];
      dev.appendChild(dt);
      dev.appendChild(dd);
    });
  }

  // The power flow: PV, grid, battery and load around the inverter, each link drawn in the
  // direction its power goes (moving, unless the browser asks for reduced motion). A value the
  // inverter did not report is "no data", never 0 W.
  var IDLE_W = 5;
  // PV above the inverter, the grid to its left, the load to its right, the battery below
  var NODES = { pv: [190, 30, "PV"], grid: [50, 145, "Grid"], hub: [190, 145, "Inverter"],
    battery: [190, 260, "Battery"], load: [330, 145, "Load"] };
  var svgEl = jkCharts.el;
  function buildFlow(box) {
    var s = svgEl("svg", { viewBox: "0 0 380 290" });
    var defs = svgEl("defs", {}, s);
    var m = svgEl("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 5, refY: 5, markerWidth: 12, markerHeight: 12,
      markerUnits: "userSpaceOnUse", orient: "auto" }, defs);
    svgEl("path", { d: "M0,0 L10,5 L0,10 z", "class": "arrow" }, m);
    ["pv", "grid", "battery", "load"].forEach(function (k) {
      svgEl("path", { "class": "link idle", "data-link": k, "data-dir": "idle" }, s);
    });
    Object.keys(NODES).forEach(function (k) {
      var n = NODES[k], g = svgEl("g", { "class": "node n-" + k, "data-node": k }, s);
      svgEl("rect", { x: n[0] - 48, y: n[1] - 26, width: 96, height: 52, rx: 8 }, g);
      var label = svgEl("text", { x: n[0], y: n[1] - 11, "text-anchor": "middle", "class": "label" }, g);
      label.textContent = n[2];
      var value = svgEl("text", { x: n[0], y: n[1] + 5, "text-anchor": "middle", "class": "value",
        "data-f": k === "hub" ? "inv.mode" : "flow." + k }, g);
      value.setAttribute("y", n[1] + 6);
      value.textContent = "–";
      var sub = svgEl("text", { x: n[0], y: n[1] + 20, "text-anchor": "middle", "class": "small", "data-f": "flow." + k + ".sub" }, g);
      sub.textContent = "";
    });
    box.appendChild(s);
    return s;
  }
  // "in": towards the inverter, "out": away from it, "idle", "none": no data.
  function link(s, key, dir) {
    var p = s.querySelector('[data-link="' + key + '"]'), a = NODES[key], h = NODES.hub;
    var from = dir === "out" ? h : a, to = dir === "out" ? a : h;
    var mid = [(a[0] + h[0]) / 2, (a[1] + h[1]) / 2];
    p.setAttribute("d", "M" + from[0] + "," + from[1] + " L" + mid[0] + "," + mid[1] + " L" + to[0] + "," + to[1]);
    p.setAttribute("class", "link " + dir);
    p.setAttribute("data-dir", dir);
    if (dir === "in" || dir === "out") p.setAttribute("marker-mid", "url(#arrow)"); else p.removeAttribute("marker-mid");
  }
  function watts(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "no data";
    return Math.abs(v) >= 10000 ? (Math.abs(v) / 1000).toFixed(1) + "\u202fkW" : Math.round(Math.abs(v)) + "\u202fW";
  }
  function num(p, k) {
    var v = p[k];
    if (v === undefined || v === null || v === "N/A" || v === "") return null;
    v = Number(v);
    return Number.isFinite(v) ? v : null;
  }
  function flow(status) {
    var root = document.getElementById("flow");
    if (!root) return;
    var box = root.querySelector('[data-f="flow"]');
    var s = box.querySelector("svg") || buildFlow(box);
    var inv = status.inverter, has = !!(inv && inv.has_inverter_data && !inv.error);
    var p = has && inv.payload ? inv.payload : {};
    root.querySelector('[data-f="inv.note"]').hidden = has || !inv || !!inv.error;
    set(root, "inv.status", !inv ? "no data" : inv.error ? "error" : has ? (p.status_text || "online") : "no inverter data",
      inv && inv.error ? "bad" : has ? "good" : "muted");
    set(root, "inv.age", inv ? (inv.error ? inv.error + " · " : "") + jk.age(inv.age_s) : "");
    // jkmon's own poller, where it reads the inverter: its link, state and the working mode
    var po = status.inverter_poller, poEl = root.querySelector('[data-f="inv.poller"]');
    poEl.hidden = !po;
    if (po) {
      poEl.textContent = "jkmon reads the " + po.model + " through " + po.link + ": " + po.state +
        (po.online ? (po.mode ? " · " + po.mode : "") : po.detail ? " · " + po.detail : "");
      poEl.className = "sub inv-poller " + (po.online ? "" : "bad");
      if (!po.online && po.state !== "connecting") set(root, "inv.status", "inverter " + po.state, "bad");
    }
    var pv = num(p, "pv_input_power"), grid = num(p, "grid_power"), load = num(p, "ac_output_power");
    var dir = function (v, inward) {
      if (v === null) return "none";
      if (Math.abs(v) < IDLE_W) return "idle";
      return (v > 0) === inward ? "in" : "out";
    };
    link(s, "pv", dir(pv, true));
    link(s, "grid", dir(grid, true));
    link(s, "load", dir(load, false));
    s.querySelector('[data-f="flow.pv"]').textContent = watts(pv);
    s.querySelector('[data-f="flow.grid"]').textContent = grid === null ? "no data" : watts(grid);
    s.querySelector('[data-f="flow.load"]').textContent = watts(load);
    s.querySelector('[data-f="inv.mode"]').textContent = has && p.status_text && p.status_text !== "UNKNOWN" ? p.status_text : jk.NO_DATA;
    var gridState = status.grid || "unknown";
    var gv = num(p, "grid_voltage");
    s.querySelector('[data-f="flow.grid.sub"]').textContent = gridState === "up" ? "online" + (gv !== null ? " · " + gv.toFixed(0) + "\u202fV" : "")
      : gridState === "down" ? "OFFLINE" : "unknown";
    s.querySelector('[data-node="grid"]').setAttribute("class", "node n-grid " + gridState);
    s.querySelector('[data-f="flow.pv.sub"]').textContent = pv === null ? "" : dir(pv, true) === "in" ? "producing" : "idle";
    var outV = num(p, "ac_output_voltage");
    s.querySelector('[data-f="flow.load.sub"]').textContent = outV === null ? "" : outV.toFixed(0) + "\u202fV";
    // the battery: the bank (or the one battery) as its BMS reports it
    var online = (status.batteries || []).filter(function (b) { return b.online && b.snapshot; });
    var bp = status.bank ? (status.bank.batteries_online ? status.bank.power_w : null)
      : online.length ? online[0].snapshot.power_w : null;
    var soc = status.bank ? status.bank.soc_pct : online.length ? online[0].snapshot.soc_effective_pct : null;
    // charging: power flows from the inverter into the battery
    link(s, "battery", bp === null || bp === undefined ? "none" : dir(bp, false));
    s.querySelector('[data-f="flow.battery"]').textContent = bp === null || bp === undefined ? "offline" : watts(bp);
    s.querySelector('[data-f="flow.battery.sub"]').textContent = (soc === null || soc === undefined ? "" : Math.round(soc) + "% · ") +
      (bp === null || bp === undefined ? "" : Math.abs(bp) < IDLE_W ? "idle" : bp > 0 ? "charging" : "discharging");
    set(root, "inv.out", has ? "output " + fmt(num(p, "ac_output_voltage"), 1, "V") + " · " + fmt(num(p, "ac_output_freq"), 2, "Hz") : "no inverter data");
    var bv = p.inverter_battery_voltage !== undefined ? "inverter_battery_voltage" : "battery_voltage";
    var bs = p.inverter_battery_soc !== undefined ? "inverter_battery_soc" : "battery_soc";
    set(root, "inv.batt", fmt(has ? num(p, bv) : null, 1, "V"));
    set(root, "inv.batt_soc", has && num(p, bs) !== null ? "SOC " + fmt(num(p, bs), 0, "%") : jk.NO_DATA);
    var list = root.querySelector('[data-f="per_battery"]');
    while (list.firstChild) list.removeChild(list.firstChild);
    (status.batteries || []).forEach(function (b) {
      var li = document.createElement("li"), w = b.online && b.snapshot ? b.snapshot.power_w : null;
      li.textContent = b.name + ": " + (w === null || w === undefined ? "offline" : watts(w) + " " +
        (Math.abs(w) < IDLE_W ? "idle" : w > 0 ? "charging" : "discharging"));
      list.appendChild(li);
    });
    box.dataset.battery = s.querySelector('[data-link="battery"]').getAttribute("data-dir");
  }

  // Today: the batteries' kWh and time left move with every status; the inverter's kWh come
  // from /api/v1/energy, asked again each minute. Until that answers the card stays hidden.
  var inverterToday = null;
  function duration(s) {
    var m = Math.round(s / 60);
    if (m < 60) return m + "\u202fmin";
    if (m < 2880) return Math.floor(m / 60) + "\u202fh " + (m % 60) + "\u202fmin";
    return Math.floor(m / 1440) + "\u202fd " + Math.floor((m % 1440) / 60) + "\u202fh";
  }
  function today(status) {
    var root = document.getElementById("today");
    if (!root || !inverterToday) return;
    var e = status.bank ? status.bank.energy : ((status.batteries || [])[0] || {}).energy;
    root.hidden = false;
    set(root, "today.date", inverterToday.date);
    set(root, "today.charged", e ? fmt(e.today_charged_kwh, 2, "kWh") : jk.NO_DATA);
    set(root, "today.discharged", e ? fmt(e.today_discharged_kwh, 2, "kWh") : jk.NO_DATA);
    set(root, "today.pv", fmt(inverterToday.pv_kwh, 2, "kWh"));
    set(root, "today.load", fmt(inverterToday.load_kwh, 2, "kWh"));
    var grid = fmt(inverterToday.grid_import_kwh, 2, "kWh");
    if (inverterToday.grid_export_kwh > 0) grid += " in · " + fmt(inverterToday.grid_export_kwh, 2, "kWh") + " out";
    set(root, "today.grid", grid);
    set(root, "today.stored", e ? fmt(e.stored_kwh, 1, "kWh") : jk.NO_DATA);
    var empty = e && e.time_to_empty_s !== null && e.time_to_empty_s !== undefined;
    var full = e && e.time_to_full_s !== null && e.time_to_full_s !== undefined;
    set(root, "today.left_label", empty ? "Time to empty" : full ? "Time to full" : "Time left");
    set(root, "today.left", empty ? duration(e.time_to_empty_s) : full ? duration(e.time_to_full_s) : "– (idle)");
  }
  var lastStatus = null;
  function loadToday() {
    fetch("/api/v1/energy?days=1", { credentials: "same-origin" }).then(function (r) {
      return r.ok ? r.json() : null;
    }).then(function (body) {
      if (!body || !body.days || !body.days.length) return;
      inverterToday = body.days[body.days.length - 1];
      if (lastStatus) today(lastStatus);
    }).catch(function () { /* the card keeps what it showed */ });
  }
  loadToday();
  setInterval(loadToday, 60000);

  function render(status) {
    lastStatus = status;
    today(status);
    window.jkmonStatus = status;
    (status.batteries || []).forEach(battery);
    flow(status);
    var bank = status.bank;
    if (bank && document.getElementById("bank")) {
      var root = document.getElementById("bank");
      set(root, "bank.soc", bank.soc_pct === null ? jk.NO_DATA : Math.round(bank.soc_pct) + "%");
      set(root, "bank.current", fmt(bank.current_a, 1, "A"));
      set(root, "bank.power", fmt(bank.power_w, 0, "W"));
      set(root, "bank.online", bank.batteries_online + " / " + status.batteries.length);
    }
  }

  render(JSON.parse(app.dataset.status));
  var source = new EventSource("/api/v1/events");
  source.addEventListener("status", function (e) {
    lastEvent = Date.now();
    updates += 1;
    document.body.dataset.updates = String(updates);
    jk.connection("live", "live");
    render(JSON.parse(e.data));
    document.dispatchEvent(new CustomEvent("jkmon:update", { detail: updates }));
  });
  source.addEventListener("error", function () { jk.connection("lost", "connection to jkmon lost"); });
  setInterval(function () {
    if (Date.now() - lastEvent > 3 * liveMs + 1000) jk.connection("lost", "connection to jkmon lost");
  }, 1000);
})();
