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
  function skips(form) {  // "&skip_preflight=a&skip_preflight=b" for the ticked checks
    return Array.prototype.filter.call(form.querySelectorAll("input[name=skip]"), function (b) {
      return b.checked;
    }).map(function (b) { return "&skip_preflight=" + encodeURIComponent(b.value); }).join("");
  }
  function nodePath(form) {
    return "/api/clusters/" + cid + "/nodes/" + encodeURIComponent(value(form, "hostname"));
  }
  function value(form, name) { var f = form.elements[name]; return f ? f.value.trim() : ""; }
  function local(detail) { return { ok: false, status: 0, data: { detail: detail } }; }

  var accepted = R.accepted;

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
    edit: function (form) {
      var body = {};
      var changed = function (el) {
        return el.type === "checkbox" ? el.checked !== el.defaultChecked : el.value !== el.defaultValue;
      };
      if (changed(form.elements.name)) { body.name = value(form, "name"); }
      if (changed(form.elements.registration_address)) {
        body.registration_address = value(form, "registration_address") || null;
      }
      var groups = {};
      form.querySelectorAll("fieldset[data-group]").forEach(function (set) {
        var fields = set.querySelectorAll("input, textarea");
        if (!Array.prototype.some.call(fields, changed)) { return; }
        var group = {};
        fields.forEach(function (el) {
          if (el.type === "checkbox") { group[el.name] = el.checked; }
          else if (el.value.trim()) { group[el.name] = el.type === "number" ? Number(el.value) : el.value.trim(); }
          else if (el.name !== "private_key") { group[el.name] = null; }
        });
        groups[set.dataset.group] = group;
      });
      if (groups.rke2) {
        try { groups.rke2.config = groups.rke2.config ? JSON.parse(groups.rke2.config) : {}; } catch (e) {
          return local("Extra config.yaml keys: not valid JSON (" + e.message + ")");
        }
        if (groups.rke2.channel === null) { delete groups.rke2.channel; }
      }
      Object.assign(body, groups);
      if (!Object.keys(body).length) { return local("Nothing changed."); }
      return ["PATCH", "/api/clusters/" + cid, body, function (c) {
        return R.el("p", "ok", "Settings of " + c.name + " saved.");
      }];
    },
    install: function (form) {
      return ["POST", "/api/jobs/install/" + cid + "?on_busy=" + onBusy(form) + skips(form),
        undefined, accepted];
    },
    add: function (form) {
      return ["POST", "/api/clusters/" + cid + "/scale/add?on_busy=" + onBusy(form) + skips(form),
        { nodes: lines(form.elements.nodes.value) }, accepted];
    },
    preflight: function (form) {
      return ["POST", "/api/clusters/" + cid + "/preflight?on_busy=" + onBusy(form) + skips(form),
        undefined, accepted];
    },
    forget: function (form) {
      var confirm = form.elements.confirm.checked ? "true" : "false";
      return ["DELETE", nodePath(form) + "?confirm_master_removal=" + confirm + "&on_busy=" +
        onBusy(form), undefined, accepted];
    },
    "edit-node": function (form) {
      if (!value(form, "hostname")) { return local("No node is PENDING: only those can be changed."); }
      var body = {};
      if (value(form, "new_hostname")) { body.hostname = value(form, "new_hostname"); }
      if (value(form, "new_ip")) { body.ip = value(form, "new_ip"); }
      return ["PATCH", nodePath(form), body, function (n) {
        return R.el("p", "ok", "Node " + n.hostname + " (" + n.ip + ") saved.");
      }];
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
      if (value(form, "skip")) { body.skip = value(form, "skip").split(/[\s,]+/).filter(Boolean); }
      return ["POST", "/api/clusters/" + cid + "/upgrade?on_busy=" + onBusy(form), body, accepted];
    },
    snapshot: function (form) {
      return ["POST", "/api/clusters/" + cid + "/snapshots?on_busy=" + onBusy(form),
        { name: value(form, "name") }, accepted];
    },
    restore: function (form) {
      var confirm = form.elements.confirm.checked ? "true" : "false";
      return ["POST", "/api/clusters/" + cid + "/restore?confirm_restore=" + confirm + "&on_busy=" +
        onBusy(form), { snapshot: value(form, "snapshot") }, accepted];
    },
  };

  // A dry run's plan: accepted or refused (with the exact message), the jobs in order, each
  // guardrail's verdict.
  function plan(data) {
    var box = R.el("div", "plan");
    if (data.would_succeed) {
      box.appendChild(R.el("p", "ok", "Would be accepted: " + (data.status === "queued"
        ? "queued at position " + data.position : "starts at once") + ". Nothing was changed."));
    } else {
      var refused = R.el("p", "problem", data.refusal.detail);
      refused.dataset.status = data.refusal.status;
      box.appendChild(R.el("p", "hint", "Would be refused (" + data.refusal.status + "). Nothing was changed."));
      box.appendChild(refused);
    }
    var list = R.el("ol", "plan-jobs");
    data.jobs.forEach(function (j) {
      list.appendChild(R.el("li", null, j.operation + " on " + j.nodes.map(function (n) {
        return n.hostname; }).join(", ") + " (" + j.status +
        (j.waits_for ? ", after step " + j.waits_for : "") + ")"));
    });
    if (data.jobs.length) { box.appendChild(list); }
    data.guardrails.forEach(function (g) {
      box.appendChild(R.el("p", "verdict " + g.verdict, g.guardrail + ": " + g.verdict +
        (g.messages.length ? " — " + g.messages.join(" ") : "")));
    });
    return box;
  }

  async function send(form, preview) {
    var box = form.querySelector(".result");
    var request = ops[form.dataset.op](form);
    if (!Array.isArray(request)) { R.show(box, request); return; }
    var url = request[1];
    if (preview) { url += (url.indexOf("?") >= 0 ? "&" : "?") + "dry_run=true"; }
    var buttons = form.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    box.replaceChildren(R.el("p", "hint", preview ? "Planning…" : "Sending…"));
    var res = await R.api(request[0], url, request[2]);
    buttons.forEach(function (b) { b.disabled = false; });
    R.show(box, res, preview ? plan : request[3]);
  }

  document.querySelectorAll("form.op").forEach(function (form) {
    form.addEventListener("submit", function (event) { event.preventDefault(); send(form, false); });
    var preview = form.querySelector("[data-preview]");
    if (preview) { preview.addEventListener("click", function () { send(form, true); }); }
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
