// dermaguard dashboard: one EventSource for the live state, fetch() POSTs for commands.
// No library: everything this page needs ships with the package (the Pi may have no internet).
"use strict";

const $ = (id) => document.getElementById(id);
const ZONE_WORD = { none: "no contact", light: "light", ok: "ok", high: "high", over: "OVER" };
const ALARM_TEXT = {
  over_pressure: ["high", "OVER-PRESSURE: ease off now"],
  sensor_fault: ["medium", "SENSOR FAULT: the force is unknown"],
  case_fault: ["high", "UV-C CASE FAULT: UV is off; check the case (hardware/README.md)"],
  unsterile_use: ["medium", "USED WITHOUT DISINFECTION"],
  sterilization_aborted: ["medium", "UV-C CYCLE ABORTED: the roller is not disinfected"],
};
const CASE_WORD = {
  open: "open", ready: "ready (lid closed)", sterilizing: "disinfecting (UV-C)",
  sterile: "cycle completed", aborted: "cycle aborted",
};

let view = null;          // the last "view" from the server
let viewAt = 0;           // performance.now() when it arrived
let force = null;         // the latest force sample {force_n, zone}

function fmtN(n) { return (Math.round(n * 100) / 100 + 0).toFixed(2) + " N"; }
function clock(s) { s = Math.ceil(s); return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0"); }
function timeOf(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
}
function dayTime(iso) {
  const d = new Date(iso);
  return isNaN(d) ? (iso || "") : d.toLocaleString([], { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
}
function shortDay(iso) {
  const d = new Date(iso);
  return isNaN(d) ? (iso || "") : d.toLocaleString([], { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
}
function duration(s) {
  if (s == null) return "–";
  if (s < 60) return Math.round(s) + " s";
  const m = Math.floor(s / 60), r = Math.round(s % 60);
  return m < 60 ? `${m} min ${String(r).padStart(2, "0")} s` : `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}
function text(el, value) { if (el.textContent !== value) el.textContent = value; }

// --- screens -------------------------------------------------------------------------------
function showScreen() {
  const name = (location.hash || "#ready").slice(1);
  const known = ["ready", "live", "controls", "history"].includes(name) ? name : "ready";
  for (const s of document.querySelectorAll(".screen")) s.hidden = s.id !== "screen-" + known;
  for (const a of document.querySelectorAll(".tabs a")) {
    if (a.dataset.screen === known) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (known === "history") loadHistory();
}
window.addEventListener("hashchange", showScreen);

// --- live ----------------------------------------------------------------------------------
function deviceOnline() {
  return view && view.link === "connected" && view.availability === "online";
}

function renderHeader() {
  const pill = $("availability"), note = $("link-note");
  text($("device"), view ? view.device : "");
  let cls = "unknown", word = "connecting…", why = "";
  if (!view) { /* nothing yet */ }
  else if (view.link !== "connected") {
    cls = "offline"; word = "OFFLINE";
    why = "No connection to the MQTT broker" + (view.link_detail ? ` (${view.link_detail})` : "") +
      ": the device's state is unknown; retrying by itself.";
  } else if (view.availability === "online") { cls = "online"; word = "online"; }
  else if (view.availability === "offline") {
    cls = "offline"; word = "OFFLINE";
    why = "The device is offline (its service is stopped or it lost the network).";
  } else {
    word = "no data";
    why = "Connected to the broker, but the device has published nothing yet.";
  }
  pill.className = "pill " + cls;
  text(pill, "device " + word);
  note.hidden = !why;
  text(note, why);
  document.body.classList.toggle("stale", !!view && !deviceOnline() && !!view.state);
  $("stale").hidden = !(view && !deviceOnline() && view.state);
}

function renderAlarm() {
  const el = $("alarm"), st = view && view.state;
  if (st && !st.alarm && st.thread_failures) {
    // No alarm, but a part of the daemon died and was restarted: say so, never look healthy.
    el.hidden = false;
    el.className = "alarm low";
    el.dataset.alarm = "";
    text(el, `The device restarted a failed part of itself (${st.thread_failures}×): see its log`);
    return;
  }
  if (!st || !st.alarm) { el.hidden = true; el.dataset.alarm = ""; return; }
  const [priority, words] = ALARM_TEXT[st.alarm] || ["medium", st.alarm];
  el.hidden = false;
  el.className = "alarm " + priority;
  el.dataset.alarm = st.alarm;
  let message = words + (st.silenced ? " (buzzer silenced)" : "");
  if (st.fault) message += ` · fault: ${st.fault}`;
  if (st.thread_failures) message += ` · restarted failed parts: ${st.thread_failures}×`;
  if (!deviceOnline()) message += " · last known";
  text(el, message);
}

function renderGauge() {
  const svg = $("gauge"), z = view ? view.zones : null;
  if (!z) return;
  const top = z.over_n * 1.3, w = 300, h = 30;
  const x = (n) => Math.max(0, Math.min(w, (n / top) * w));
  const bands = [[0, z.contact_n, "#e4e7eb"], [z.contact_n, z.ok_n, "#bcd4f6"], [z.ok_n, z.high_n, "#b7e6c0"],
    [z.high_n, z.over_n, "#ffe6a6"], [z.over_n, top, "#ffc4c0"]];
  let out = "";
  for (const [a, b, c] of bands) out += `<rect x="${x(a)}" y="0" width="${x(b) - x(a)}" height="${h}" fill="${c}"/>`;
  const f = force ? force.force_n : null;
  const zone = force ? force.zone : null;
  const colour = { light: "#3a7bd5", ok: "#1e8e3e", high: "#b88400", over: "#c5221f", none: "#5b6570" }[zone] || "#5b6570";
  if (f != null) out += `<rect x="0" y="6" width="${x(f)}" height="${h - 12}" fill="${colour}"/>`;
  else if (force) {
    // On a white label, so no threshold tick runs through the words.
    out += `<rect x="95" y="7" width="110" height="17" rx="3" fill="#fff"/>` +
      `<text x="150" y="20" text-anchor="middle" font-size="12" fill="#8a6d00">force unknown</text>`;
  }
  for (const [n, label] of [[z.ok_n, z.ok_n], [z.high_n, z.high_n], [z.over_n, z.over_n]]) {
    out += `<line x1="${x(n)}" x2="${x(n)}" y1="0" y2="${h + 4}" stroke="#333" stroke-width="1"/>` +
      `<text x="${x(n)}" y="${h + 16}" text-anchor="middle" font-size="11">${label}</text>`;
  }
  out += `<text x="0" y="${h + 16}" font-size="11">0</text><text x="${w}" y="${h + 16}" text-anchor="end" font-size="11">${+top.toFixed(1)} N</text>`;
  svg.innerHTML = out;
  svg.dataset.zone = zone || "";
}

function renderForce() {
  const value = $("force-value"), zoneEl = $("force-zone");
  if (!force) { text(value, "–"); text(zoneEl, "no data yet"); zoneEl.dataset.zone = ""; }
  else if (force.force_n == null) {
    text(value, "?"); text(zoneEl, "UNKNOWN (not 0 N)"); zoneEl.dataset.zone = "unknown";
  } else {
    text(value, fmtN(force.force_n));
    text(zoneEl, ZONE_WORD[force.zone] || force.zone || "");
    zoneEl.dataset.zone = force.zone || "";
  }
  renderGauge();
}

function remaining() {
  if (!view || view.remaining_s == null) return null;
  const st = view.state;
  if (!st || st.case !== "sterilizing") return null;
  if (!deviceOnline()) return view.remaining_s;
  return Math.max(0, view.remaining_s - (performance.now() - viewAt) / 1000);
}

function renderCase() {
  const st = view && view.state;
  if (!st) {
    for (const id of ["case-state", "uv", "lid", "countdown", "disinfected", "session", "passes", "roller"]) text($(id), "no data yet");
    return;
  }
  text($("case-state"), CASE_WORD[st.case] || st.case);
  $("uv").className = st.uv_on ? "uv-on" : "";
  text($("uv"), st.uv_on ? "ON" : "off");
  text($("lid"), (st.lid_closed ? "closed" : "open") + ", roller " + (st.docked ? "docked" : "out of the dock"));
  const left = remaining();
  if (st.case === "sterilizing") {
    text($("countdown"), !deviceOnline() ? "device offline: countdown stopped"
      : left != null ? clock(left) + " left" : "running (ends on the UV dose)");
  } else text($("countdown"), "not running");
  let dis = "no";
  if (st.sterile) {
    if (st.sterile_until) {
      const leftS = view.sterile_left_s != null ? Math.max(0, view.sterile_left_s - (performance.now() - viewAt) / 1000) : null;
      dis = "yes, until " + timeOf(st.sterile_until) + (leftS != null ? ` (${duration(leftS)} left)` : "");
    } else dis = "yes" + (st.docked ? ", while in the closed case" : "");
  }
  text($("disinfected"), dis);
  text($("session"), st.state === "in_use" ? `in use (session ${st.session_no ?? ""})` : "not in use");
  text($("roller"), `roller ${st.roller_id}, ${st.roller_uses} use(s)`);
  // Passes: contacts between lifts; the force is the running pass's mean (or the last one's).
  text($("passes"), st.state !== "in_use" || st.passes == null ? "–"
    : String(st.passes) + (st.pass_force_n == null ? "" : `, latest pass ${fmtN(st.pass_force_n)}`));
}

function renderEvents() {
  const list = $("events");
  const events = view ? view.events : [];
  const key = events.map((e) => e.id).join(",");
  if (list.dataset.key === key) return;
  list.dataset.key = key;
  list.replaceChildren();
  if (!events.length) { const li = document.createElement("li"); li.textContent = "none since the dashboard started"; list.append(li); }
  for (const e of events) {
    const li = document.createElement("li");
    const t = document.createElement("time"); t.textContent = timeOf(e.ts);
    const ty = document.createElement("span"); ty.className = "type"; ty.textContent = e.name || e.type;
    ty.title = e.type;  // the machine name stays findable, in the payloads and on hover
    const s = document.createElement("span"); s.textContent = e.summary;
    li.append(t, ty, s); list.append(li);
  }
}

let ready = null;          // the last "ready" verdict from the server
let readyAt = 0;          // performance.now() when it arrived

function renderReady() {
  if (!ready) return;
  const box = $("verdict");
  box.className = "verdict " + ready.verdict;
  box.dataset.verdict = ready.verdict;
  box.querySelector(".verdict-mark").textContent = { yes: "✓", no: "✗", unknown: "?", session: "●" }[ready.verdict];
  text($("verdict-text"), ready.headline);
  text($("ready-about"), ready.about || "");
  const list = $("reasons");
  const key = JSON.stringify(ready.reasons);
  if (list.dataset.key !== key) {  // unchanged: keep the list (and the reader's place)
    list.dataset.key = key;
    list.replaceChildren();
    for (const r of ready.reasons) {
      const li = document.createElement("li");
      li.className = r.ok === true ? "ok" : r.ok === false ? "no" : "unknown";
      li.dataset.key = r.key;
      const mark = document.createElement("span"); mark.className = "mark";
      mark.textContent = r.ok === true ? "✓ yes" : r.ok === false ? "✗ no" : "? unknown";
      const words = document.createElement("span"); words.textContent = r.text;
      li.append(mark, words);
      if (r.left_s != null) {
        const left = document.createElement("span"); left.className = "left"; li.append(" ", left);
      }
      if (r.todo && r.ok !== true) {
        const todo = document.createElement("span"); todo.className = "todo"; todo.textContent = "→ " + r.todo;
        li.append(todo);
      }
      list.append(li);
    }
  }
  // A running cycle's time left keeps counting down between the device's updates.
  for (const r of ready.reasons) {
    if (r.left_s == null) continue;
    const el = list.querySelector(`li[data-key="${r.key}"] .left`);
    if (el) text(el, "(" + clock(Math.max(0, r.left_s - (performance.now() - readyAt) / 1000)) + " left)");
  }
}

// The device runs without its history (full or read-only disk, I/O error): the alarm and the
// UV-C interlocks still work; events wait in the device's memory until the history returns.
function renderHistoryDown() {
  const el = $("history-down"), st = view && view.state;
  const problem = st && st.history_problem;
  el.hidden = !problem;
  text(el, problem ? `History unavailable (${problem}): the pressure alarm and the UV-C ` +
    "interlocks work; events are kept on the device and written when storage recovers." : "");
}

function renderAll() { renderHeader(); renderAlarm(); renderHistoryDown(); renderForce(); renderCase(); renderEvents(); }

function connect() {
  const source = new EventSource("/api/stream");
  source.addEventListener("view", (msg) => {
    view = JSON.parse(msg.data); viewAt = performance.now();
    force = view.force ? { force_n: view.force.force_n, zone: view.force.zone } : null;
    renderAll();
  });
  source.addEventListener("force", (msg) => { force = JSON.parse(msg.data); renderForce(); });
  source.addEventListener("ready", (msg) => { ready = JSON.parse(msg.data); readyAt = performance.now(); renderReady(); });
  source.onerror = () => {
    const note = $("link-note");
    note.hidden = false;
    text(note, "Lost the connection to the dashboard; reconnecting…");
    const pill = $("availability"); pill.className = "pill unknown"; text(pill, "reconnecting…");
    if (source.readyState === EventSource.CLOSED) { source.close(); setTimeout(connect, 2000); }
  };
  source.onopen = () => { $("link-note").hidden = true; };
}

// --- controls ------------------------------------------------------------------------------
async function sendCommand(button) {
  const name = button.dataset.cmd, out = $("result-" + name);
  if (button.dataset.confirm && !button.classList.contains("confirming")) {
    button.classList.add("confirming");
    button.dataset.label = button.textContent;
    button.textContent = button.dataset.confirm;
    setTimeout(() => { if (button.classList.contains("confirming")) { button.classList.remove("confirming"); button.textContent = button.dataset.label; } }, 5000);
    return;
  }
  if (button.classList.contains("confirming")) { button.classList.remove("confirming"); button.textContent = button.dataset.label; }
  button.disabled = true;
  out.className = "result"; out.textContent = "sending…";
  try {
    const response = await fetch("/api/cmd/" + name, { method: "POST", credentials: "same-origin" });
    const body = await response.json();
    if (response.ok && body.ok === true) {
      out.className = "result ok";
      out.textContent = "✓ done" + (body.duration_s ? ` (${Math.round(body.duration_s)} s)` : "") +
        (body.roller_id ? ` (roller ${body.roller_id})` : "");
    } else {
      out.className = "result refused";
      out.textContent = (body.ok === null ? "? " : "✗ refused: ") + (body.error || response.statusText);
    }
  } catch (err) {
    out.className = "result refused"; out.textContent = "✗ the dashboard did not answer";
  } finally { button.disabled = false; }
}

// --- history -------------------------------------------------------------------------------
async function loadHistory() {
  $("calendar").src = "/api/calendar.svg?weeks=6&t=" + Date.now();
  const body = document.querySelector("#sessions tbody");
  try {
    const response = await fetch("/api/history?limit=30", { credentials: "same-origin" });
    const data = await response.json();
    text($("history-note"), data.note || (data.sessions.length ? "Tap a session for its force trace." : "No sessions yet."));
    $("trend").hidden = !data.trend;
    text($("trend"), data.trend || "");
    body.replaceChildren();
    for (const s of data.sessions) {
      const tr = document.createElement("tr");
      const notes = [];
      if (s.sterile_at_start === false) notes.push("not disinfected");
      if (s.too_soon) notes.push("too soon");
      if (s.status === "interrupted") notes.push("interrupted");
      // Passes and their spread (steadiness); "–" is unknown (not measured), never 0.
      if (s.in_progress) notes.push("in progress");
      const cells = [String(s.session_no), shortDay(s.started_at),
        s.in_progress ? "so far " + duration(s.duration_s) : duration(s.duration_s),
        s.peak_n == null ? "–" : fmtN(s.peak_n), String(s.over_episodes ?? 0),
        s.passes == null ? "–" : String(s.passes),
        s.steadiness_cv == null ? "–" : Math.round(s.steadiness_cv * 100) + " %"];
      cells.forEach((c, i) => {
        const td = document.createElement("td"); td.textContent = c;
        if (i === 4 && s.over_episodes) td.className = "flag";
        if (i === 1 && notes.length) {
          const small = document.createElement("span"); small.className = "flag notes";
          small.textContent = notes.join(", "); td.append(small);
        }
        tr.append(td);
      });
      tr.addEventListener("click", () => showTrace(s.session_no));
      body.append(tr);
    }
  } catch (err) { text($("history-note"), "Could not load the history."); }
}

function showTrace(n) {
  $("trace-box").hidden = false;
  text($("trace-title"), "Session " + n + ": force over the zones");
  $("trace").src = `/api/history/${n}/trace.svg`;
  $("trace-box").scrollIntoView({ behavior: "smooth" });
}

document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll("button[data-cmd]")) b.addEventListener("click", () => sendCommand(b));
  showScreen();
  connect();
  setInterval(() => { if (view) { renderCase(); } renderReady(); }, 250);
});
