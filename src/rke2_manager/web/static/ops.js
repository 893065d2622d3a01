// The operation forms: each builds the API request from its fields, sends it, and shows the
// API's answer inline (its guardrail messages and warnings as they are).
"use strict";
(function () {
  var R = RKE2M;
  var page = document.getElementById("cluster");
  var cid = page ? encodeURIComponent(page.dataset.clusterId) : null;

  function lines(text) {  // "hostname ip role" per line -> node objects (the API validates)
    return text.split("\n").map(function (l) { return l.trim(); }).filter(Boolean).map(function (l) {
      var p = l.split(/\s+/);
      var node = { hostname: p[0] };
      if (p.length > 1) { node.ip = p[1]; }
      if (p.length > 2) { node.role = p[2]; }
      return node;
    });
  }
  function onBusy(form) { return form.elements.queue && form.elements.queue.checked ? "queue" : "reject"; }
  function value(form, name) { var f = form.elements[name]; return f ? f.value.trim() : ""; }
  function local(detail) { return { ok: false, status: 0, data: { detail: detail } }; }

  function accepted(data) {
    var p = R.el("p", "ok");
    var job = data.job;
    p.appendChild(document.createTextNode(job.operation + ": "));
    p.appendChild(R.jobLink(job));
    p.appendChild(document.createTextNode(data.status === "queued"
      ? " queued at position " + data.position + "." : " " + data.status + "."));
    if (data.sequenced) {
      p.appendChild(document.createTextNode(" Servers first; the " + data.workers_pending +
        " agent(s) follow as job " + data.workers_job_id + "."));
    }
    return p;
  }

  var ops = {
    create: function (form) {
      var body = { name: value(form, "name"), nodes: lines(form.elements.nodes.value) };
      var ssh = {}, rke2 = {};
      if (value(form, "ssh_user")) { ssh.user = value(form, "ssh_user"); }
      if (value(form, "ssh_port")) { ssh.port = Number(value(form, "ssh_port")); }
      if (form.elements.ssh_private_key.value.trim()) { ssh.private_key = form.elements.ssh_private_key.value; }
      if (value(form, "rke2_version")) { rke2.version = value(form, "rke2_version"); }
      if (value(form, "rke2_channel")) { rke2.channel = value(form, "rke2_channel"); }
      if (value(form, "rke2_artifact_dir")) { rke2.artifact_dir = value(form, "rke2_artifact_dir"); }
      if (value(form, "rke2_config")) {
        try { rke2.config = JSON.parse(value(form, "rke2_config")); } catch (e) {
          return local("Extra config.yaml keys: not valid JSON (" + e.message + ")");
        }
      }
      if (Object.keys(ssh).length) { body.ssh = ssh; }
      if (Object.keys(rke2).length) { body.rke2 = rke2; }
      if (value(form, "registration_address")) { body.registration_address = value(form, "registration_address"); }
      return ["POST", "/api/clusters", body, function (c) {
        location.href = "/ui/clusters/" + encodeURIComponent(c.id);
        return R.el("p", "ok", "Cluster " + c.name + " created.");
      }];
    },
    install: function (form) {
      return ["POST", "/api/jobs/install/" + cid + "?on_busy=" + onBusy(form), undefined, accepted];
    },
    add: function (form) {
      return ["POST", "/api/clusters/" + cid + "/scale/add?on_busy=" + onBusy(form),
        { nodes: lines(form.elements.nodes.value) }, accepted];
    },
    remove: function (form) {
      var names = Array.prototype.filter.call(form.querySelectorAll("input[name=node]"),
        function (b) { return b.checked; }).map(function (b) { return b.value; });
      if (!names.length) { return local("Select the nodes to remove."); }
      var confirm = form.elements.confirm.checked ? "true" : "false";
      return ["POST", "/api/clusters/" + cid + "/scale/remove?confirm_master_removal=" + confirm +
        "&on_busy=" + onBusy(form), { nodes: names.map(function (n) { return { hostname: n }; }) }, accepted];
    },
    "force-unlock": function (form) {
      return ["POST", "/api/admin/clusters/" + cid + "/force-unlock",
        { job_id: Number(value(form, "job_id")), reason: value(form, "reason") }, function (job) {
          var p = R.el("p", "ok", "Lock freed; ");
          p.appendChild(R.jobLink(job));
          p.appendChild(document.createTextNode(" is " + job.status + "."));
          return p;
        }];
    },
    "delete": function (form) {
      if (value(form, "name") !== page.dataset.clusterName) {
        return local("Type the cluster's name, " + page.dataset.clusterName + ", to confirm.");
      }
      return ["DELETE", "/api/clusters/" + cid, undefined, function () {
        location.href = "/ui/";
        return R.el("p", "ok", "Cluster deleted.");
      }];
    },
    upgrade: function (form) {
      var body = { version: value(form, "version"), drain: form.elements.drain.checked,
        agent_concurrency: Number(value(form, "agent_concurrency") || 1) };
      if (value(form, "artifact_dir")) { body.artifact_dir = value(form, "artifact_dir"); }
      return ["POST", "/api/clusters/" + cid + "/upgrade?on_busy=" + onBusy(form), body, accepted];
    },
    snapshot: function (form) {
      return ["POST", "/api/clusters/" + cid + "/snapshots?on_busy=" + onBusy(form),
        { name: value(form, "name") }, accepted];
    },
    restore: function (form) {
      var confirm = form.elements.confirm.checked ? "true" : "false";
      return ["POST", "/api/clusters/" + cid + "/restore?confirm_restore=" + confirm,
        { snapshot: value(form, "snapshot") }, accepted];
    },
  };

  document.querySelectorAll("form.op").forEach(function (form) {
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      var box = form.querySelector(".result");
      var request = ops[form.dataset.op](form);
      if (!Array.isArray(request)) { R.show(box, request); return; }
      var button = form.querySelector("button[type=submit]");
      button.disabled = true;
      box.replaceChildren(R.el("p", "hint", "Sending…"));
      var res = await R.api(request[0], request[1], request[2]);
      button.disabled = false;
      R.show(box, res, request[3]);
    });
  });

  // Removal of servers needs the explicit confirmation: show it, naming them, when one is picked.
  var remove = document.getElementById("remove-form");
  if (remove) {
    var servers = (remove.dataset.servers || "").split(" ").filter(Boolean);
    remove.addEventListener("change", function () {
      var picked = Array.prototype.filter.call(remove.querySelectorAll("input[name=node]"),
        function (b) { return b.checked && servers.indexOf(b.value) >= 0; }).map(function (b) { return b.value; });
      remove.querySelector(".confirm").hidden = picked.length === 0;
      remove.querySelector(".confirm .servers").textContent = picked.join(", ");
      if (!picked.length) { remove.elements.confirm.checked = false; }
    });
  }

  document.addEventListener("click", async function (event) {
    var button = event.target.closest("[data-accept-key]");
    if (!button) { return; }
    var box = document.getElementById("cancel-result");
    var res = await R.api("POST", "/api/clusters/" + cid + "/nodes/" +
      encodeURIComponent(button.dataset.acceptKey) + "/accept-host-key");
    R.show(box, res, function (node) {
      return R.el("p", "ok", node.hostname + ": host key forgotten; the next job pins the key it offers.");
    });
  });
})();
