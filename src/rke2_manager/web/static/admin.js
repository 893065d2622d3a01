// The admin page: API tokens (list, create — the token is shown once —, revoke) and the audit
// log of the last 24 hours, all through the JSON API.
"use strict";
(function () {
  var R = RKE2M;

  function cells(tr, values) {
    values.forEach(function (v) { tr.appendChild(R.el("td", null, v === null || v === undefined ? "" : v)); });
    return tr;
  }

  async function listTokens() {
    var res = await R.api("GET", "/api/tokens");
    var body = document.querySelector("#tokens tbody");
    if (!res.ok) { R.show(document.getElementById("tokens-result"), res); return; }
    body.replaceChildren.apply(body, res.data.map(function (t) {
      var tr = cells(document.createElement("tr"), [t.name, t.role, t.prefix, t.created_at,
        t.created_by, t.last_used_at, t.revoked_at]);
      tr.dataset.token = t.name;
      var td = R.el("td");
      if (!t.revoked_at) {
        var revoke = R.el("button", "small danger", "Revoke");
        revoke.type = "button";
        revoke.dataset.revoke = t.name;
        td.appendChild(revoke);
      }
      tr.appendChild(td);
      return tr;
    }));
  }

  async function listAudit() {  // oldest first from the API: read every page, show newest first
    var since = new Date(Date.now() - 86400000).toISOString();
    var rows = [], after = 0;
    for (var page = 0; page < 20; page++) {
      var res = await R.api("GET", "/api/audit?limit=1000&after_id=" + after + "&since=" + encodeURIComponent(since));
      if (!res.ok || !res.data.length) { break; }
      rows = rows.concat(res.data);
      after = res.data[res.data.length - 1].id;
      if (res.data.length < 1000) { break; }
    }
    var body = document.querySelector("#audit tbody");
    body.replaceChildren.apply(body, rows.reverse().slice(0, 500).map(function (e) {
      return cells(document.createElement("tr"), [e.at, e.actor, e.role, e.action, e.cluster_id, e.job_id, e.result]);
    }));
  }

  document.getElementById("token-form").addEventListener("submit", async function (event) {
    event.preventDefault();
    var form = event.target;
    var res = await R.api("POST", "/api/tokens", { name: form.elements.name.value.trim(), role: form.elements.role.value });
    R.show(form.querySelector(".result"), res, function (t) {
      var box = R.el("div", "ok");
      box.appendChild(R.el("p", null, "Token for " + t.name + " (" + t.role + "), shown only this once:"));
      box.appendChild(R.el("code", "secret", t.token)).id = "new-token";
      return box;
    });
    if (res.ok) { form.reset(); listTokens(); listAudit(); }
  });

  document.getElementById("tokens").addEventListener("click", async function (event) {
    var button = event.target.closest("[data-revoke]");
    if (!button) { return; }
    var res = await R.api("DELETE", "/api/tokens/" + encodeURIComponent(button.dataset.revoke));
    R.show(document.getElementById("tokens-result"), res, function () {
      return R.el("p", "ok", "Token " + button.dataset.revoke + " revoked.");
    });
    listTokens();
    listAudit();
  });

  document.addEventListener("DOMContentLoaded", function () { listTokens(); listAudit(); });
})();
