// The API's interactive documentation: Swagger UI from the Python package swagger-ui-py,
// served by the API itself (/docs-assets), so /docs works offline and without a CDN.
"use strict";
window.addEventListener("DOMContentLoaded", () => {
  window.SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    // Sign in with a bearer token from the web app or `hemhub token` (Authorize button).
    persistAuthorization: false,
  });
});
