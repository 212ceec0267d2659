// muster web UI: small enhancements on top of pages that work without this file.
//
// - Copy buttons: <button data-copy="ID" hidden> copies the text of #ID. They stay hidden
//   without JavaScript (the text is selectable anyway).
// - Live parts: <div data-poll="URL"> is refreshed from URL every two seconds while the tab is
//   visible. The server answers with the same HTML the page embeds; `X-Muster-Poll: stop`
//   ends the polling (a job that finished). Focus inside the part is kept across refreshes.
// - Live workers: a <div data-events="URL"> (the Workers table) listens to the server's stream
//   of changed workers instead of polling: a changed worker's row is fetched alone and swapped
//   in; a worker not on the page refreshes the page's table once (it may belong on it); the
//   overview (<div data-refresh="URL">) is fetched again at most every few seconds. An idle
//   fleet costs nothing but the stream's keep-alives. Without EventSource it polls as above.
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

  function fetchFragment(url) {
    return fetch(url, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { "X-Muster-Fragment": "1" }
    }).then(function (response) {
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      return response.text();
    });
  }

  // Runs `work` once `ms` after the first call since it last ran.
  function later(ms, work) {
    var timer = 0;
    return function () {
      if (!timer) {
        timer = window.setTimeout(function () { timer = 0; work(); }, ms);
      }
    };
  }

  function listen(container) {
    var table = later(500, function () {
      fetchFragment(container.getAttribute("data-poll")).then(function (html) {
        replace(container, html);
      }).catch(function () {});
    });
    var overview = document.querySelector("[data-refresh]");
    var counts = later(3000, function () {
      if (!overview) {
        return;
      }
      fetchFragment(overview.getAttribute("data-refresh")).then(function (html) {
        replace(overview, html);
      }).catch(function () {});
    });

    function rowOf(name) {
      var found = null;
      container.querySelectorAll("tr[data-name]").forEach(function (tr) {
        if (tr.getAttribute("data-name") === name) {
          found = tr;
        }
      });
      return found;
    }

    // The newest fetch of each worker's row: an older answer arriving later is dropped.
    var asked = {};
    var sequence = 0;

    function changed(name) {
      counts();
      if (!rowOf(name)) {
        table();
        return;
      }
      refreshRow(name);
    }

    // A job started or ended on a worker: only its row can change, and only if it is shown.
    function busy(name) {
      if (rowOf(name)) {
        refreshRow(name);
      }
    }

    function refreshRow(name) {
      sequence += 1;
      var mine = sequence;
      asked[name] = mine;
      fetchFragment("/workers/" + encodeURIComponent(name) + "/row").then(function (html) {
        if (asked[name] !== mine) {
          return;
        }
        delete asked[name];
        var row = rowOf(name);
        var template = document.createElement("template");
        template.innerHTML = html.trim();
        var fresh = template.content.firstElementChild;
        if (!row || !fresh) {
          return;
        }
        // A worker that left the status this page is filtered on: the table decides.
        var filtered = /[?&]status=[a-z]/.test(container.getAttribute("data-poll"));
        if (filtered && fresh.getAttribute("data-status") !== row.getAttribute("data-status")) {
          table();
          return;
        }
        fresh.classList.add("changed");
        row.replaceWith(fresh);
      }).catch(function () {
        // Removed, or the session ended: the table says which.
        table();
      });
    }

    var source = new EventSource(container.getAttribute("data-events"));
    var heard = 0;
    source.addEventListener("worker", function (event) {
      // How many changes the page heard, for whoever inspects it (and the browser tests).
      heard += 1;
      container.setAttribute("data-heard", String(heard));
      changed(event.data);
    });
    var busyHeard = 0;
    source.addEventListener("activity", function (event) {
      busyHeard += 1;
      container.setAttribute("data-activity-heard", String(busyHeard));
      busy(event.data);
    });
    // After the stream was down, anything may have changed.
    source.addEventListener("open", function () {
      if (container.hasAttribute("data-listened")) {
        table();
        counts();
      }
      container.setAttribute("data-listened", "");
    });
  }

  document.querySelectorAll("[data-poll]").forEach(function (container) {
    if (container.hasAttribute("data-events") && window.EventSource) {
      listen(container);
    } else {
      poll(container);
    }
  });
})();
