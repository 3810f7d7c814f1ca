// The portal's small behaviours. Loaded as a file: the CSP allows no inline script.
(function () {
  "use strict";
  var THEME_KEY = "portal-theme";

  // Pause htmx polling while the tab is hidden: skip the request, the next tick tries again.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var trigger = event.detail && event.detail.requestConfig && event.detail.requestConfig.triggeringEvent;
    if (document.visibilityState === "hidden" && (!trigger || trigger.type !== "submit")) {
      event.preventDefault();
    }
  });

  // Copy buttons: <button data-copy="#selector">.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source || !navigator.clipboard) return;
    navigator.clipboard.writeText(source.textContent.trim()).then(function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    });
  });

  // Theme: system / light / dark, remembered in localStorage (theme.js applies it on load).
  function applyTheme(choice) {
    var root = document.documentElement;
    if (choice === "light" || choice === "dark") root.setAttribute("data-theme", choice);
    else root.removeAttribute("data-theme");
    try {
      if (choice === "light" || choice === "dark") window.localStorage.setItem(THEME_KEY, choice);
      else window.localStorage.removeItem(THEME_KEY);
    } catch (e) { /* private mode: the choice lasts for this page only */ }
  }

  // The navigation menu on narrow screens: a button that shows and hides the links.
  function setMenu(open, focusToggle) {
    var toggle = document.querySelector(".nav-toggle");
    if (!toggle) return;
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
    document.documentElement.classList.toggle("nav-open", open);
    if (!open && focusToggle) toggle.focus();
  }

  function closeDropdowns(except, restoreFocus) {
    document.querySelectorAll("details.dropdown[open]").forEach(function (details) {
      if (details === except) return;
      details.removeAttribute("open");
      if (restoreFocus) {
        var summary = details.querySelector("summary");
        if (summary) summary.focus();
      }
    });
  }

  // Wide tables scroll inside their own box, never the page; the box is focusable (keyboard
  // scrolling) only when it actually scrolls.
  function labelFor(table) {
    var caption = table.querySelector("caption");
    if (caption) return caption.textContent.trim();
    var section = table.closest("section, article, figure");
    var heading = section && section.querySelector("h1, h2, h3, summary");
    return heading ? heading.textContent.trim() : "Table";
  }
  function wrapTables(root) {
    (root || document).querySelectorAll("main table").forEach(function (table) {
      var parent = table.parentElement;
      if (!parent.classList.contains("table-scroll")) {
        var box = document.createElement("div");
        box.className = "table-scroll";
        parent.insertBefore(box, table);
        box.appendChild(table);
        parent = box;
      }
      if (!parent.hasAttribute("aria-label") && !parent.hasAttribute("aria-labelledby")) {
        parent.setAttribute("aria-label", labelFor(table));
      }
      parent.setAttribute("role", "region");
      markScrollable(parent);
    });
  }
  function markScrollable(box) {
    if (box.scrollWidth > box.clientWidth + 1) box.setAttribute("tabindex", "0");
    else box.removeAttribute("tabindex");
  }

  document.addEventListener("DOMContentLoaded", function () {
    var select = document.querySelector("[data-theme-select]");
    if (select) {
      var stored = null;
      try { stored = window.localStorage.getItem(THEME_KEY); } catch (e) { stored = null; }
      select.value = stored === "light" || stored === "dark" ? stored : "system";
      select.addEventListener("change", function () { applyTheme(select.value); });
    }
    var toggle = document.querySelector(".nav-toggle");
    if (toggle) {
      toggle.addEventListener("click", function () {
        setMenu(toggle.getAttribute("aria-expanded") !== "true", false);
      });
    }
    wrapTables(document);
  });
  document.addEventListener("htmx:afterSettle", function (event) { wrapTables(event.target); });
  window.addEventListener("resize", function () {
    document.querySelectorAll(".table-scroll").forEach(markScrollable);
  });

  // One open dropdown at a time; a click elsewhere closes them.
  document.addEventListener("click", function (event) {
    var inside = event.target.closest("details.dropdown");
    closeDropdowns(inside, false);
  });

  // Escape closes open menus and gives focus back to what opened them.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    var open = document.querySelector("details.dropdown[open]");
    if (open) {
      closeDropdowns(null, true);
      event.preventDefault();
      return;
    }
    if (document.documentElement.classList.contains("nav-open")) {
      setMenu(false, true);
      event.preventDefault();
    }
  });
})();
