// Starts ReDoc (loaded from this service) on the API's schema.
"use strict";
window.addEventListener("DOMContentLoaded", function () {
  var el = document.getElementById("redoc");
  window.Redoc.init(el.dataset.openapi, { hideDownloadButton: false }, el);
});
