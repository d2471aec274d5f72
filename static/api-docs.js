// The API document, drawn by Swagger UI (loaded before this script, from /vendor/).
"use strict";
window.SwaggerUIBundle({
  url: document.body.dataset.spec,
  dom_id: "#swagger-ui",
  deepLinking: true,
});
