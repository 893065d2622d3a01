// The job page: the per-host progress grid and the log, kept live until the job ends.
// Follows GET /api/jobs/{id} (status, per-host progress), the cluster's node statuses and the
// log's new lines (GET /api/jobs/{id}/log?after=N), once a second.
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

  function applyJob(job) {
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
    Object.keys(job.progress).forEach(function (host) {
      var p = job.progress[host], tr = row(host);
      set(tr, "task", p.task);
      set(tr, "last", p.last);
      set(tr, "since", age(p.since)).dataset.since = p.since || "";
    });
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

  document.addEventListener("DOMContentLoaded", tick);
})();
