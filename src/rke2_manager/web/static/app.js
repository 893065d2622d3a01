// Shared by every dashboard page: calls to the JSON API, results shown inline, live regions.
// Plain JavaScript, no library. Text from the API is only ever set as textContent.
"use strict";
var RKE2M = (function () {
  function csrf() { return document.body.dataset.csrf || ""; }

  // Call the API; resolves to {ok, status, data} (data: the parsed JSON body, or {detail}).
  async function api(method, url, body) {
    var headers = { "Accept": "application/json" };
    if (csrf()) { headers["X-CSRF-Token"] = csrf(); }
    var init = { method: method, headers: headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    var response, text;
    try {
      response = await fetch(url, init);
      text = await response.text();
    } catch (err) {
      return { ok: false, status: 0, data: { detail: "The service did not answer: " + err } };
    }
    var data;
    try { data = text ? JSON.parse(text) : {}; } catch (err) { data = { detail: text }; }
    return { ok: response.ok, status: response.status, data: data };
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function jobLink(job) {
    var a = el("a", null, "job " + job.id);
    a.href = "/ui/jobs/" + encodeURIComponent(job.id);
    return a;
  }

  // What a job-starting call answered (202): the job, its place in the queue, G3's order.
  function accepted(data) {
    var p = el("p", "ok");
    var job = data.job;
    p.appendChild(document.createTextNode(job.operation + ": "));
    p.appendChild(jobLink(job));
    p.appendChild(document.createTextNode(data.status === "queued"
      ? " queued at position " + data.position + "." : " " + data.status + "."));
    if (data.sequenced) {
      p.appendChild(document.createTextNode(" Servers first; the " + data.workers_pending +
        " agent(s) follow as job " + data.workers_job_id + "."));
    }
    return p;
  }

  // Show an API answer in a form's result box: the problem's detail (and each invalid
  // field) on failure; on success, `describe(data)` (a node) and the answer's warnings.
  function show(box, res, describe) {
    box.replaceChildren();
    if (!res.ok) {
      var p = el("p", "problem", res.data.detail || ("HTTP " + res.status));
      p.dataset.status = res.status;
      box.appendChild(p);
      (res.data.errors || []).forEach(function (e) {
        box.appendChild(el("p", "problem field", (e.loc || []).join(".") + ": " + e.msg));
      });
      if (res.status === 401) {
        var login = el("a", null, "Log in");
        login.href = "/ui/login?next=" + encodeURIComponent(location.pathname);
        box.appendChild(login);
      }
      return;
    }
    if (describe) { box.appendChild(describe(res.data)); }
    var warnings = res.data.warnings || (res.data.job && res.data.job.warnings) || [];
    warnings.forEach(function (w) { box.appendChild(el("p", "warn", w)); });
  }

  // Sections with data-refresh="ms" are re-rendered from the page's own URL while visible.
  function refresh(sections) {
    if (document.hidden || !sections.length) { return; }
    fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (r.redirected && r.url.indexOf("/ui/login") >= 0) { location.href = r.url; return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (!html) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        sections.forEach(function (section) {
          var fresh = doc.getElementById(section.id);
          if (fresh && fresh.innerHTML !== section.innerHTML) { section.innerHTML = fresh.innerHTML; }
        });
      })
      .catch(function () { /* the next round tries again */ });
  }

  function startRefresh() {
    var sections = Array.prototype.slice.call(document.querySelectorAll("section[data-refresh]"));
    if (!sections.length) { return; }
    var every = Math.min.apply(null, sections.map(function (s) { return Number(s.dataset.refresh) || 3000; }));
    setInterval(function () { refresh(sections); }, every);
  }

  // Cancel buttons (also inside refreshed sections, so delegated).
  document.addEventListener("click", async function (event) {
    var button = event.target.closest("[data-cancel]");
    if (!button) { return; }
    var id = button.dataset.cancel;
    var box = document.getElementById("cancel-result");
    button.disabled = true;
    box.replaceChildren(el("p", "hint", "Canceling job " + id + "…"));
    var res = await api("POST", "/api/jobs/" + encodeURIComponent(id) + "/cancel");
    button.disabled = false;
    show(box, res, function (job) {
      var p = el("p", "ok", "Job " + job.id + " is " + job.status + ". ");
      p.appendChild(jobLink(job));
      return p;
    });
  });

  document.addEventListener("DOMContentLoaded", startRefresh);
  return { api: api, el: el, show: show, jobLink: jobLink, accepted: accepted };
})();
