// muster web UI: small enhancements on top of pages that work without this file.
//
// - Copy buttons: <button data-copy="ID" hidden> copies the text of #ID. They stay hidden
//   without JavaScript (the text is selectable anyway).
// - Live parts: <div data-poll="URL"> is refreshed from URL every two seconds while the tab is
//   visible. The server answers with the same HTML the page embeds; `X-Muster-Poll: stop`
//   ends the polling (a job that finished). Focus inside the part is kept across refreshes.
(function () {
  "use strict";

  var POLL_MS = 2000;

  function announce(region, text) {
    if (region && region.textContent !== text) {
      region.textContent = text;
    }
  }

  // ---- copy buttons ----

  function selectText(el) {
    var range = document.createRange();
    range.selectNodeContents(el);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function copied(button, ok) {
    var label = button.firstChild;
    var original = button.getAttribute("data-label") || label.textContent;
    button.setAttribute("data-label", original);
    label.textContent = ok ? "Copied " : "Press Ctrl+C ";
    button.classList.toggle("done", ok);
    var region = document.querySelector(".copy-status");
    announce(region, ok ? "Copied to the clipboard" : "Selected; press Control C to copy");
    window.setTimeout(function () {
      label.textContent = original;
      button.classList.remove("done");
    }, 2000);
  }

  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var target = document.getElementById(button.getAttribute("data-copy"));
      if (!target) {
        return;
      }
      var text = target.textContent;
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(
          function () { copied(button, true); },
          function () { selectText(target); copied(button, false); }
        );
      } else {
        selectText(target);
        copied(button, false);
      }
    });
  });

  // ---- live parts ----

  function replace(container, html) {
    var active = document.activeElement;
    var focusId = active && container.contains(active) ? active.id : "";
    var template = document.createElement("template");
    template.innerHTML = html;
    container.replaceChildren(template.content);
    if (focusId) {
      var again = document.getElementById(focusId);
      if (again) {
        again.focus();
      }
    }
    var summary = container.querySelector("[data-live-summary]");
    if (summary) {
      announce(document.getElementById("fleet-live"), summary.textContent);
    }
  }

  function poll(container) {
    var url = container.getAttribute("data-poll");
    var failures = 0;

    function schedule() {
      window.setTimeout(tick, POLL_MS * Math.min(1 + failures, 5));
    }

    function tick() {
      if (document.hidden) {
        schedule();
        return;
      }
      fetch(url, {
        credentials: "same-origin",
        cache: "no-store",
        headers: { "X-Muster-Fragment": "1" }
      }).then(function (response) {
        if (response.status === 401) {
          var notice = document.createElement("p");
          notice.className = "notice error";
          notice.setAttribute("role", "alert");
          notice.textContent = "Your session has ended. Reload the page to sign in again.";
          container.before(notice);
          return;
        }
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        var stop = response.headers.get("X-Muster-Poll") === "stop";
        return response.text().then(function (html) {
          replace(container, html);
          failures = 0;
          if (!stop) {
            schedule();
          }
        });
      }).catch(function () {
        failures += 1;
        schedule();
      });
    }

    schedule();
  }

  document.querySelectorAll("[data-poll]").forEach(poll);
})();
