// The cluster page's snapshot list: what the servers last listed, with restore-this (fills
// the restore form) and delete buttons.
"use strict";
(function () {
  var R = RKE2M;
  var snapshots = document.querySelector("[data-cluster-snapshots]");
  if (!snapshots) { return; }
  var cid = encodeURIComponent(document.getElementById("cluster").dataset.clusterId);
  async function listSnapshots() {
    var res = await R.api("GET", "/api/clusters/" + cid + "/snapshots");
    var body = snapshots.querySelector("tbody");
    if (!res.ok) { R.show(snapshots.querySelector(".result"), res); return; }
    body.replaceChildren.apply(body, res.data.snapshots.map(function (s) {
      var tr = document.createElement("tr");
      [s.name, s.node, s.size === null ? "" : s.size, s.taken_at || ""].forEach(function (v) {
        tr.appendChild(R.el("td", null, v));
      });
      var td = R.el("td");
      var use = R.el("button", "small", "Restore…");
      use.type = "button";
      use.dataset.restoreSnapshot = s.name;
      var del = R.el("button", "small danger", "Delete");
      del.type = "button";
      del.dataset.deleteSnapshot = s.name;
      td.append(use, " ", del);
      tr.appendChild(td);
      return tr;
    }));
    if (!res.data.snapshots.length) { body.appendChild(R.el("tr", "hint")).appendChild(R.el("td", null, "None listed yet.")); }
  }
  if (snapshots) {
    listSnapshots();
    snapshots.addEventListener("click", async function (event) {
      var restore = event.target.closest("[data-restore-snapshot]");
      var del = event.target.closest("[data-delete-snapshot]");
      if (restore) {
        var form = document.getElementById("restore-form");
        form.elements.snapshot.value = restore.dataset.restoreSnapshot;
        form.scrollIntoView();
      } else if (del) {
        var res = await R.api("DELETE", "/api/clusters/" + cid + "/snapshots/" +
          encodeURIComponent(del.dataset.deleteSnapshot));
        R.show(snapshots.querySelector(".result"), res, R.accepted);
      }
    });
  }

})();
