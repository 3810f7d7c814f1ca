// The new-agent form: send it with XMLHttpRequest to show upload progress (a 60 MB form takes
// a while) and disable the button while sending. Without JavaScript the form posts as usual;
// either way, files chosen before a validation error are kept by the server.
(function () {
  "use strict";
  if (!window.FormData || !window.XMLHttpRequest || !window.DOMParser) return;

  function mb(bytes) { return (bytes / 1048576).toFixed(1) + " MB"; }

  function init(form) {
    var button = form.querySelector("button[type=submit]");
    var box = form.querySelector(".upload-status");
    var bar = form.querySelector("progress.upload-progress");
    var text = form.querySelector(".upload-progress-text");
    var sending = false;

    function fail(label, message) {
      sending = false;
      button.disabled = false;
      button.removeAttribute("aria-busy");
      button.textContent = label;
      text.textContent = message;
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (sending) return;
      sending = true;
      var label = button.textContent;
      button.disabled = true;
      button.setAttribute("aria-busy", "true");
      button.textContent = button.getAttribute("data-busy-label") || "Sending…";
      box.hidden = false;
      bar.value = 0;
      text.textContent = "Uploading…";
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.getAttribute("action") || window.location.href);
      xhr.setRequestHeader("X-Upload-Progress", "1");
      xhr.upload.addEventListener("progress", function (e) {
        if (!e.lengthComputable) return;
        var percent = Math.round((e.loaded / e.total) * 100);
        bar.value = percent;
        text.textContent = "Uploaded " + mb(e.loaded) + " of " + mb(e.total) + " (" + percent + " %)";
      });
      xhr.upload.addEventListener("load", function () {
        bar.removeAttribute("value"); // indeterminate while the server checks the files
        text.textContent = "Uploaded. Checking the face and voice…";
      });
      xhr.addEventListener("load", function () {
        var next = xhr.getResponseHeader("X-Redirect");
        if (next) {
          window.location.assign(next);
          return;
        }
        var page = new DOMParser().parseFromString(xhr.responseText || "", "text/html");
        var main = page.querySelector("main");
        if (!main) {
          fail(label, "The portal answered " + xhr.status + ". Try again.");
          return;
        }
        // A validation error: show the page as the server rendered it (files are kept there).
        document.title = page.title;
        document.querySelector("main").replaceWith(main);
        if (window.htmx) window.htmx.process(main);
        var again = main.querySelector("form[data-upload-progress]");
        if (again) init(again);
        var error = main.querySelector("[aria-invalid=true], .errorlist");
        if (error) error.scrollIntoView({ block: "center" });
      });
      xhr.addEventListener("error", function () {
        fail(label, "The upload was interrupted. Check your connection and try again.");
      });
      xhr.send(new FormData(form));
    });
  }

  var form = document.querySelector("form[data-upload-progress]");
  if (form) init(form);
})();
