// The session console: Enter sends (Shift+Enter adds a line), quick replies fill the Speak box.
// Loaded as a file: the CSP allows no inline script.
//
// Nothing typed is lost. A sent line leaves the box at once (so the next one can be typed while
// it travels) and joins one queue: lines go to the server one at a time, in the order they were
// sent, and each gets its own outcome in the timeline. The box is never cleared by an answer; a
// line that was not delivered comes back into the box if it is empty, and is quoted in the
// notice otherwise. Without JavaScript the forms post as plain forms.
(function () {
  "use strict";

  var queue = [];
  var busy = false;

  function box(form) {
    return form.querySelector("textarea");
  }

  function statusOf(form) {
    var status = form.querySelector("[data-send-status]");
    if (!status) {
      status = document.createElement("p");
      status.setAttribute("role", "status");
      status.setAttribute("data-send-status", "");
      form.insertBefore(status, form.querySelector("button[type=submit]"));
    }
    return status;
  }

  function notice(form, text, kind) {
    var status = statusOf(form);
    status.className = "notice notice-" + (kind || "error");
    status.textContent = text;
  }

  function pendingAdd(form, text) {
    var list = document.getElementById("send-queue");
    if (!list) return null;
    var item = document.createElement("li");
    var what = form.id === "context-form" ? "Context" : "Speak";
    item.textContent = what + " · sending: " + text;
    list.appendChild(item);
    return item;
  }

  function timelineAdd(event) {
    var items = document.getElementById("timeline-items");
    if (!items || (event.id && document.getElementById(event.id))) return;
    items.appendChild(event);
  }

  function undelivered(item, message, kind) {
    var field = box(item.form);
    if (field && !field.value.trim()) {
      field.value = item.text;
      notice(item.form, message + ". Your text is back in the box to send again.", kind);
    } else {
      notice(item.form, message + ". Not sent: \u201c" + item.text + "\u201d", kind);
    }
  }

  function answered(item, status, html) {
    var holder = document.createElement("template");
    holder.innerHTML = html;
    var event = holder.content.querySelector("li.event");
    if (event) timelineAdd(event);
    if (status === 200 && event && event.classList.contains("outcome-delivered")) {
      var previous = item.form.querySelector("[data-send-status]");
      if (previous) previous.remove();
      return;
    }
    var outcome = event && event.querySelector(".event-outcome");
    var errors = holder.content.querySelector(".errorlist, .notice");
    var message = outcome
      ? outcome.textContent.trim()
      : errors
        ? errors.textContent.trim()
        : "Not sent (the server answered " + status + ")";
    var kind = event ? (event.className.match(/outcome-(\S+)/) || [])[1] : "error";
    undelivered(item, message, kind);
  }

  function send(item) {
    var data = new FormData(item.form);
    data.set(box(item.form).name, item.text);
    return fetch(item.form.action, {
      method: "POST",
      body: data,
      credentials: "same-origin",
      headers: { "HX-Request": "true" },
    })
      .then(function (response) {
        return response.text().then(function (html) {
          answered(item, response.status, html);
        });
      })
      .catch(function () {
        undelivered(item, "Not sent: the connection failed", "error");
      })
      .then(function () {
        if (item.pending) item.pending.remove();
      });
  }

  function pump() {
    if (busy || !queue.length) return;
    busy = true;
    send(queue.shift()).then(function () {
      busy = false;
      pump();
    });
  }

  function enqueue(form) {
    var field = box(form);
    if (!field || !field.value.trim()) return; // nothing to send
    var text = field.value;
    field.value = ""; // free for the next line at once; the answer never clears it
    queue.push({ form: form, text: text, pending: pendingAdd(form, text) });
    pump();
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form[data-queued-send]")) return;
    event.preventDefault();
    enqueue(form);
  });

  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (!target.matches || !target.matches("textarea[data-enter-sends]")) return;
    if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
    if (event.ctrlKey || event.altKey || event.metaKey) return;
    event.preventDefault();
    if (target.form && target.form.matches("form[data-queued-send]")) enqueue(target.form);
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-quick-reply]");
    if (!button) return;
    var field = document.querySelector("#speak-form textarea");
    if (!field) return;
    field.value = button.getAttribute("data-quick-reply");
    field.focus();
  });

  // 422 answers carry a form with its errors (empty or too long): swap them in like a success.
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.xhr && event.detail.xhr.status === 422) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
})();
