// The job page: the per-host progress grid and the log, kept live until the job ends.
// With the API's live events (GET /api/jobs/{id}/events, docs/events.md) it follows them through
// EventSource: task start/end per host (with ok/changed/failed counts), node statuses, log lines,
// the end. Without them (or when the stream is refused) it polls once a second:
// GET /api/jobs/{id} (status, per-host progress), the cluster's nodes and the log's new lines.
"use strict";
(function () {
  var R = RKE2M;
  var page = document.getElementById("job");
  var id = encodeURIComponent(page.dataset.jobId);
  var cid = encodeURIComponent(page.dataset.clusterId);
  var grid = document.querySelector("#progress tbody");
  var logBox = document.getElementById("log");
  var logState = document.getElementById("log-state");
  var after = 0;
  var FINAL = ["succeeded", "failed", "canceled"];

  function age(iso) {
    if (!iso) { return ""; }
    var s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (s >= 3600) { return Math.floor(s / 3600) + "h ago"; }
    if (s >= 60) { return Math.floor(s / 60) + "m ago"; }
    return s + "s ago";
  }

  function row(host) {
    var tr = grid.querySelector('tr[data-host="' + CSS.escape(host) + '"]');
    if (tr) { return tr; }
    tr = document.createElement("tr");
    tr.dataset.host = host;
    ["host", "role", "status", "task", "last", "since", "counts"].forEach(function (c) {
      tr.appendChild(R.el("td", c));
    });
    tr.firstChild.textContent = host;
    grid.appendChild(tr);
    return tr;
  }

  function set(tr, cls, text) {
    var td = tr.querySelector("td." + cls);
    if (td.textContent !== (text || "")) { td.textContent = text || ""; }
    return td;
  }

  function applyJob(job, withProgress) {
    var badge = document.getElementById("job-status");
    badge.textContent = job.status;
    badge.className = "badge " + job.status;
    var reason = document.getElementById("job-reason");
    reason.textContent = job.reason || "";
    reason.hidden = !job.reason;
    var warnings = document.getElementById("job-warnings");
    if (warnings.children.length !== job.warnings.length) {
      warnings.replaceChildren.apply(warnings, job.warnings.map(function (w) { return R.el("li", "warn", w); }));
    }
    document.getElementById("cancel-job").hidden = FINAL.indexOf(job.status) >= 0;
    if (withProgress !== false) {
      Object.keys(job.progress).forEach(function (host) {
        var p = job.progress[host], tr = row(host);
        set(tr, "task", p.task);
        set(tr, "last", p.last);
        set(tr, "since", age(p.since)).dataset.since = p.since || "";
      });
    }
    if (FINAL.indexOf(job.status) >= 0) {  // nothing runs any more
      grid.querySelectorAll("td.task").forEach(function (td) { td.textContent = ""; });
    }
  }

  function applyNodes(cluster) {
    var status = {};
    cluster.nodes.forEach(function (n) { status[n.hostname] = n.status; });
    grid.querySelectorAll("tr[data-host]").forEach(function (tr) {
      var s = status[tr.dataset.host] || "gone";
      var td = tr.querySelector("td.status");
      if (td.textContent !== s) {
        td.replaceChildren(R.el("span", "badge node-" + s.toLowerCase(), s));
      }
    });
  }

  async function readLog() {  // every new line; true when the job has ended and all is read
    for (;;) {
      var res = await R.api("GET", "/api/jobs/" + id + "/log?limit=1000&after=" + after);
      if (!res.ok) { logState.textContent = res.data.detail || ("HTTP " + res.status); return false; }
      if (res.data.lines.length) {
        var stick = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 4;
        logBox.appendChild(document.createTextNode(
          res.data.lines.map(function (l) { return l.text; }).join("\n") + "\n"));
        if (stick) { logBox.scrollTop = logBox.scrollHeight; }
      }
      after = res.data.next_seq;
      if (res.data.lines.length < 1000) {
        logState.textContent = res.data.finished ? "The job has ended." : "Following the log…";
        return res.data.finished;
      }
    }
  }

  async function tick() {
    var job = await R.api("GET", "/api/jobs/" + id);
    if (job.ok) { applyJob(job.data); }
    var cluster = await R.api("GET", "/api/clusters/" + cid);
    if (cluster.ok) { applyNodes(cluster.data); }
    var done = await readLog();
    if (job.status === 401) { location.href = "/ui/login?next=" + encodeURIComponent(location.pathname); return; }
    if (!done || (job.ok && FINAL.indexOf(job.data.status) < 0)) { setTimeout(tick, 1000); }
  }

  function setNode(host, status) {
    var td = row(host).querySelector("td.status");
    if (td.textContent !== status) { td.replaceChildren(R.el("span", "badge node-" + status.toLowerCase(), status)); }
  }

  var counts = {};
  function count(host, result) {
    var c = counts[host] = counts[host] || { ok: 0, changed: 0, failed: 0 };
    if (result === "failed" || result === "unreachable") { c.failed += 1; }
    else if (result === "changed") { c.changed += 1; }
    else if (result === "ok") { c.ok += 1; }
    set(row(host), "counts", c.ok + " / " + c.changed + " / " + c.failed);
  }

  function follow() {  // the live events; polling if the stream is refused
    var source = new EventSource("/api/jobs/" + id + "/events");
    var data = function (e) { return JSON.parse(e.data); };
    logState.textContent = "Following the job's live events…";
    source.addEventListener("job", function (e) { applyJob(data(e)); });
    source.addEventListener("node", function (e) { var d = data(e); setNode(d.hostname, d.status); });
    source.addEventListener("task_start", function (e) {
      var d = data(e), tr = row(d.host);
      set(tr, "task", d.task);
      set(tr, "since", age(d.at)).dataset.since = d.at || "";
    });
    source.addEventListener("task_end", function (e) {
      var d = data(e), tr = row(d.host);
      set(tr, "task", "");
      set(tr, "last", d.task + " (" + d.result + ")");
      count(d.host, d.result);
    });
    source.addEventListener("log", function (e) {
      var stick = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 4;
      logBox.appendChild(document.createTextNode(data(e).text + "\n"));
      if (stick) { logBox.scrollTop = logBox.scrollHeight; }
    });
    source.addEventListener("end", function (e) {
      var d = data(e);
      source.close();
      logState.textContent = "The job has ended.";
      R.api("GET", "/api/jobs/" + id).then(function (res) { if (res.ok) { applyJob(res.data, false); } });
      R.api("GET", "/api/clusters/" + cid).then(function (res) { if (res.ok) { applyNodes(res.data); } });
      document.getElementById("job-status").textContent = d.status;
    });
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {  // refused (e.g. 401, 503): poll instead
        logBox.replaceChildren();
        after = 0;
        tick();
      }
    };
  }

  // Preflight results (preflight, install and scale add jobs), read until the job has ended.
  async function readPreflight() {
    var res = await R.api("GET", "/api/jobs/" + id + "/preflight");
    var state = document.getElementById("preflight-state");
    if (!res.ok) { state.textContent = res.data.detail || ("HTTP " + res.status); return; }
    var rows = [];
    Object.keys(res.data.hosts).forEach(function (host) {
      res.data.hosts[host].forEach(function (c) {
        var tr = document.createElement("tr");
        tr.dataset.host = host;
        tr.dataset.check = c.check;
        tr.appendChild(R.el("td", null, host));
        tr.appendChild(R.el("td", null, c.check));
        var result = R.el("td");
        result.appendChild(R.el("span", "badge check-" + c.result, c.result + (c.skipped ? " (skipped)" : "")));
        tr.appendChild(result);
        tr.appendChild(R.el("td", null, c.message));
        tr.appendChild(R.el("td", null, c.fix || ""));
        rows.push(tr);
      });
    });
    var table = document.getElementById("preflight-table");
    table.querySelector("tbody").replaceChildren.apply(table.querySelector("tbody"), rows);
    table.hidden = !rows.length;
    var failed = Object.keys(res.data.failed).map(function (h) { return h + ": " + res.data.failed[h].join(", "); });
    state.textContent = failed.length ? "Failed checks (they stop the job): " + failed.join("; ")
      : (rows.length ? "" : "The checks' results are stored when the job ends.");
    if (res.data.unreported.length && FINAL.indexOf(res.data.status) >= 0) {
      state.textContent += " No report from: " + res.data.unreported.join(", ") + ".";
    }
    if (FINAL.indexOf(res.data.status) < 0) { setTimeout(readPreflight, 2000); }
  }

  setInterval(function () {  // keep the "since" ages current
    grid.querySelectorAll("td.since").forEach(function (td) { td.textContent = age(td.dataset.since); });
  }, 1000);

  document.addEventListener("DOMContentLoaded", function () {
    (page.dataset.events === "true" ? follow : tick)();
    if (page.dataset.preflight === "true") { readPreflight(); }
  });
})();
