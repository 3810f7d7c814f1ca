// The sandbox's hosted embed page. While it is open it polls the sandbox: each poll is the
// room's heartbeat (the room lapses SANDBOX_ROOM_TTL seconds after the last one) and returns the
// messages that speak / add-context delivered since the previous poll.
(function () {
  "use strict";

  var root = document.getElementById("embed");
  if (!root) {
    return;
  }
  var face = document.getElementById("face");
  var fallback = root.dataset.fallbackUrl;
  if (face && fallback) {
    face.addEventListener("error", function () {
      if (face.getAttribute("src") !== fallback) {
        face.setAttribute("src", fallback);
      }
    });
  }

  var liveUrl = root.dataset.liveUrl;
  if (!liveUrl) {
    return; // the page explains the problem (expired token, unknown agent, limit reached)
  }
  var pollMs = parseInt(root.dataset.pollMs, 10) || 1000;
  var caption = document.getElementById("caption");
  var transcript = document.getElementById("transcript");
  var notes = document.getElementById("context-notes");
  var notesEmpty = document.getElementById("context-empty");
  var statusLine = document.getElementById("room-status");
  var after = 0;
  var speakingTimer = null;

  function append(list, text, who) {
    var item = document.createElement("li");
    item.textContent = text;
    if (who) {
      item.className = "line-" + who;
      item.dataset.who = who;
    }
    list.appendChild(item);
  }

  function show(message) {
    if (message.type === "visitor") {
      append(transcript, message.text, "visitor");
    } else if (message.type === "speak" || message.type === "answer") {
      caption.textContent = message.text;
      append(transcript, message.text, "avatar");
      root.dataset.state = "speaking";
      clearTimeout(speakingTimer);
      speakingTimer = setTimeout(function () {
        root.dataset.state = "live";
      }, 2500);
    } else {
      append(notes, message.text);
      notesEmpty.classList.add("is-hidden");
    }
  }

  function poll() {
    var url = liveUrl + "&after=" + encodeURIComponent(after);
    fetch(url, { method: "POST", cache: "no-store", credentials: "omit" })
      .then(function (response) {
        return response.json().then(function (body) {
          return { ok: response.ok, status: response.status, body: body };
        });
      })
      .then(function (result) {
        if (!result.ok) {
          var error = result.body && result.body.error;
          statusLine.textContent = error ? error.message : "Disconnected";
          root.dataset.state = "error";
          if (result.status === 401 || result.status === 404) {
            return; // the token expired or the agent is gone: stop polling
          }
        } else {
          if (root.dataset.state !== "speaking") {
            root.dataset.state = "live";
          }
          statusLine.textContent = "Live · room " + result.body.room_id;
          result.body.messages.forEach(function (message) {
            after = Math.max(after, message.id);
            show(message);
          });
        }
        setTimeout(poll, pollMs);
      })
      .catch(function () {
        statusLine.textContent = "Reconnecting…";
        setTimeout(poll, pollMs);
      });
  }

  // A visitor talking: the text box stands in for the microphone. The line and the avatar's
  // answer arrive with the next poll, like everything the room hears and says.
  var talk = document.getElementById("talk");
  var talkText = document.getElementById("talk-text");
  var talkError = document.getElementById("talk-error");
  if (talk && root.dataset.talkUrl) {
    talk.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = talkText.value;
      if (!text.trim()) {
        return;
      }
      var body = new URLSearchParams();
      body.set("text", text);
      fetch(root.dataset.talkUrl, { method: "POST", body: body, cache: "no-store", credentials: "omit" })
        .then(function (response) {
          return response.json().then(function (answer) {
            if (response.ok) {
              talkError.textContent = "";
              if (talkText.value === text) {
                talkText.value = "";
              }
            } else {
              talkError.textContent = (answer.error && answer.error.message) || "Not heard";
            }
          });
        })
        .catch(function () {
          talkError.textContent = "Not heard: the room is unreachable";
        });
    });
  }

  poll();
})();
