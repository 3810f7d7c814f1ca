// Applies the remembered colour theme before the first paint. Loaded in <head> without defer, as a
// file (the CSP allows no inline script). "system" (or nothing stored) follows the browser's
// prefers-color-scheme; "light" and "dark" pin Pico and app.css through <html data-theme>.
(function () {
  "use strict";
  var root = document.documentElement;
  var choice = null;
  try { choice = window.localStorage.getItem("portal-theme"); } catch (e) { choice = null; }
  if (choice === "light" || choice === "dark") root.setAttribute("data-theme", choice);
  root.classList.add("js");
})();
