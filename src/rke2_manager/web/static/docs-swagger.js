// Starts Swagger UI (loaded from this service) on the API's schema. No online validator: it
// would send the schema to a public site. "Try it out" sends the dashboard session's CSRF
// value with its requests, so a logged-in browser can use it.
"use strict";
window.addEventListener("DOMContentLoaded", function () {
  var el = document.getElementById("swagger-ui");
  var csrf = el.dataset.csrf;
  window.ui = window.SwaggerUIBundle({
    url: el.dataset.openapi,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null,
    presets: [window.SwaggerUIBundle.presets.apis, window.SwaggerUIBundle.SwaggerUIStandalonePreset],
    requestInterceptor: function (req) {
      if (csrf) { req.headers["X-CSRF-Token"] = csrf; }
      return req;
    },
  });
});
