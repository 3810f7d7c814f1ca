// The session console: Enter sends (Shift+Enter adds a line), one send at a time, quick replies
// fill the Speak box, refused input shows its errors. Loaded as a file: the CSP allows no inline
// script.
(function () {
  "use strict";

  function isConsoleBox(element) {
    return element && element.matches && element.matches("textarea[data-enter-sends]");
  }

  document.addEventListener("keydown", function (event) {
    if (!isConsoleBox(event.target)) return;
    if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
    if (event.ctrlKey || event.altKey || event.metaKey) return;
    event.preventDefault();
    if (!event.target.value.trim()) return; // nothing to send
    var form = event.target.form;
    // While a message is on its way the form carries htmx-request: a second Enter does nothing.
    if (!form || form.classList.contains("htmx-request")) return;
    form.requestSubmit();
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-quick-reply]");
    if (!button) return;
    var box = document.querySelector("#speak-form textarea");
    if (!box) return;
    box.value = button.getAttribute("data-quick-reply");
    box.focus();
  });

  // 422 answers carry a form with its errors (empty or too long): swap them in like a success.
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.xhr && event.detail.xhr.status === 422) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  // The form is replaced after each send: put the cursor back in its box.
  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    if (!form || !form.id || !form.classList.contains("console-form")) return;
    var id = form.id;
    setTimeout(function () {
      var box = document.querySelector("#" + id + " textarea");
      if (box) box.focus();
    }, 50);
  });
})();
