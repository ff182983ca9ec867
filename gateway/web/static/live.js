// The status page refreshes itself once a second from /api/status; without script the page
// still shows the state it was rendered with.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const text = (id, value) => { const el = $(id); if (el) el.textContent = value; };
  const fixed = (v, digits) => (v === null || v === undefined) ? "–" : Number(v).toFixed(digits);
  const localTime = (iso) => {
    const d = new Date(iso);
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  };
  function element(tag, attrs, children) {
    const el = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => el.setAttribute(k, v));
    (children || []).forEach((c) => el.append(c));
    return el;
  }
  function render(status) {
    const s = status.stats;
    if (s) {
      text("items", s.items); text("passed", s.passed); text("rejected", s.rejected);
      text("rate", fixed(s.items_per_s * 60, 0)); text("latency", fixed(s.latency_p95_ms, 1));
      text("grade", fixed(s.grade_mean, 1)); text("weakest", s.grade_weakest || "–");
      const rows = Object.entries(s.by_reason).map(([code, n]) => element("tr", {}, [element("th", {}, [code]), element("td", {}, [String(n)])]));
      $("by-reason").replaceChildren(...(rows.length ? rows : [element("tr", {}, [element("td", {class: "muted"}, ["none yet"])])]));
    }
    if (status.mqtt) {
      let m = status.mqtt.connected ? "connected" : "not connected";
      if (status.mqtt.pending) m += `, ${status.mqtt.pending} records waiting`;
      if (status.mqtt.problem) m += ` (${status.mqtt.problem})`;
      text("mqtt", m);
    }
    if (status.plc) text("plc", `${status.plc.delivered} results taken, ${status.plc.undelivered} not in time`);
    const skipped = status.store.pictures_skipped ? `, ${status.store.pictures_skipped} stored without pictures (the writer fell behind)` : "";
    text("store", `${status.store.items} items, ${(status.store.bytes / 1e6).toFixed(1)} of ${(status.store.quota_bytes / 1e6).toFixed(0)} MB${skipped}`);
    const latest = status.latest_rejects.map((r) => element("li", {}, [element("a", {href: r.url}, [
      ...(r.files.thumb ? [element("img", {src: r.files.thumb, alt: ""})] : []),
      element("span", {}, [localTime(r.timestamp)]), " ", element("b", {}, [r.reason]), ` item ${r.item_id}`])]));
    $("latest").replaceChildren(...(latest.length ? latest : [element("li", {class: "muted"}, ["no rejects stored"])]));
    const alerts = [];
    Object.entries(status.alarms || {}).forEach(([name, active]) => { if (active === true) alerts.push(element("p", {class: "alarm"}, [`Alarm: ${name.replaceAll("_", " ")}`])); });
    status.drift.forEach((w) => alerts.push(element("p", {class: "warning drift"}, [`Drift: ${w.text}`])));
    if (s && s.grade_warning) alerts.push(element("p", {class: "warning"}, [s.grade_warning]));
    $("alerts").replaceChildren(...alerts);
  }
  async function refresh() {
    try {
      const response = await fetch("/api/status", {cache: "no-store"});
      if (response.ok) { render(await response.json()); document.body.classList.remove("stale"); }
      else document.body.classList.add("stale");
    } catch (e) { document.body.classList.add("stale"); }
    setTimeout(refresh, 1000);
  }
  setTimeout(refresh, 1000);
})();
