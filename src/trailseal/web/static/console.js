// trailseal console: small enhancements over server-rendered pages. Everything here is
// optional: without it every page still works as plain links and forms.
(function () {
  "use strict";

  // "Between…" shows the from/until fields; a preset hides them.
  function syncRange(root) {
    root.querySelectorAll("select[data-range]").forEach(function (select) {
      var form = select.form;
      function apply() {
        var custom = select.value === "custom";
        form.querySelectorAll("[data-custom-time]").forEach(function (field) {
          var input = field.querySelector("input");
          field.hidden = !custom && !(input && input.value);
        });
      }
      if (!select.dataset.bound) {
        select.addEventListener("change", apply);
        select.dataset.bound = "1";
      }
      apply();
    });
  }

  // A search URL holds only the filters that were set: empty fields are left out of
  // GET requests (the server does the same for requests without scripts).
  document.addEventListener("htmx:configRequest", function (event) {
    var detail = event.detail;
    if (detail.verb !== "get" || !detail.formData) return;
    var empty = [];
    detail.formData.forEach(function (value, key) {
      if (value === "") empty.push(key);
    });
    empty.forEach(function (key) { detail.formData.delete(key); });
    var range = detail.formData.get("range");
    if (range && range !== "custom") {
      detail.formData.delete("since");
      detail.formData.delete("until");
    }
  });

  // Network failures get a visible banner instead of a page that silently stays put.
  function banner(show) {
    var element = document.getElementById("network-error");
    if (element) element.hidden = !show;
  }
  document.addEventListener("htmx:beforeRequest", function () { banner(false); });
  document.addEventListener("htmx:sendError", function () { banner(true); });
  document.addEventListener("htmx:timeout", function () { banner(true); });

  // After a boosted navigation, put keyboard focus where a full page load would: the
  // start of the page's content.
  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.detail.boosted && event.detail.target === document.body) {
      var main = document.getElementById("main");
      if (main) main.focus({ preventScroll: true });
    }
  });

  function init(root) { syncRange(root || document); }
  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (event) { init(event.target); });
})();
