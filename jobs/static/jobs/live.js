/* Live refresh for the console's pages (the dashboard, the queues page, an unfinished job).
 *
 * The page marks one element with data-live="<seconds>" and an id: every few seconds
 * this script fetches the page's own URL (its filters included), takes the element of
 * the same id from the answer and puts its content in place, keeping the scroll position
 * and which <details> are open. The bar (data-live-bar) says when the numbers were made
 * (the region's data-updated, the server's time) and has a pause toggle, remembered in
 * localStorage for every live page. The region's data-live-stop ends the refreshing (a
 * job that finished); so does starting to edit a form field inside it.
 */
(function () {
  "use strict";
  var KEY = "jobs-live-paused";
  var region = document.querySelector("[data-live][id]");
  var bar = document.querySelector("[data-live-bar]");
  if (!region || !bar || !window.fetch || !window.DOMParser) {
    return;
  }
  var status = bar.querySelector(".jobs-live-status");
  var toggle = bar.querySelector(".jobs-live-toggle");
  var seconds = Math.max(parseFloat(region.getAttribute("data-live")) || 5, 1);
  var timer = null;
  var stopped = region.getAttribute("data-live-stop");
  var editing = false;
  var failure = null;

  function paused() {
    try {
      return window.localStorage.getItem(KEY) === "1";
    } catch (error) {
      return false;
    }
  }

  function remember(value) {
    try {
      if (value) {
        window.localStorage.setItem(KEY, "1");
      } else {
        window.localStorage.removeItem(KEY);
      }
    } catch (error) {
      /* storage refused (private mode): the toggle still works for this page */
    }
  }

  function show() {
    var text = "Updated at " + region.getAttribute("data-updated");
    if (failure) {
      text += " · not refreshed: " + failure + " (trying again)";
    } else if (stopped) {
      text += " · " + stopped + ": no more refreshing";
    } else if (editing) {
      text += " · paused while you edit (reload to refresh)";
    } else if (paused()) {
      text += " · live refresh paused";
    } else {
      text += " · refreshes every " + seconds + " s";
    }
    status.textContent = text;
    toggle.hidden = Boolean(stopped || editing);
    toggle.textContent = paused() ? "Resume live refresh" : "Pause live refresh";
    toggle.setAttribute("aria-pressed", paused() ? "true" : "false");
  }

  function schedule() {
    window.clearTimeout(timer);
    if (!stopped && !editing && !paused()) {
      timer = window.setTimeout(refresh, seconds * 1000);
    }
  }

  function swap(fresh) {
    var x = window.scrollX;
    var y = window.scrollY;
    var open = [];
    region.querySelectorAll("details").forEach(function (item, index) {
      if (item.open) {
        open.push(index);
      }
    });
    region.innerHTML = fresh.innerHTML;
    region.setAttribute("data-updated", fresh.getAttribute("data-updated") || "");
    var details = region.querySelectorAll("details");
    open.forEach(function (index) {
      if (details[index]) {
        details[index].open = true;
      }
    });
    window.scrollTo(x, y);
    if (fresh.hasAttribute("data-live-stop")) {
      stopped = fresh.getAttribute("data-live-stop");
    }
  }

  function refresh() {
    if (document.hidden) {
      schedule();
      return;
    }
    window
      .fetch(window.location.href, {
        credentials: "same-origin",
        cache: "no-store",
        headers: { "X-Live-Refresh": "1" },
      })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("the server answered " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var page = new DOMParser().parseFromString(html, "text/html");
        var fresh = page.getElementById(region.id);
        if (!fresh) {
          throw new Error("the answer lacks this page's content (signed out?)");
        }
        failure = null;
        if (!editing && !paused()) {
          swap(fresh);
        }
      })
      .catch(function (error) {
        failure = error.message;
      })
      .then(function () {
        show();
        schedule();
      });
  }

  function startEditing(event) {
    var field = event.target;
    if (field && /^(INPUT|SELECT|TEXTAREA)$/.test(field.tagName) && field.type !== "submit") {
      editing = true;
      window.clearTimeout(timer);
      show();
    }
  }

  region.addEventListener("focusin", startEditing);
  region.addEventListener("input", startEditing);
  toggle.addEventListener("click", function () {
    remember(!paused());
    show();
    if (!paused()) {
      refresh();
    } else {
      window.clearTimeout(timer);
    }
  });
  window.addEventListener("storage", function (event) {
    if (event.key === KEY) {
      show();
      schedule();
    }
  });
  show();
  schedule();
})();
