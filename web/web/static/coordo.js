// Small progressive enhancements; every page works without them.
(function () {
  "use strict";
  // Break-the-glass banner: minutes and seconds left before the access ends.
  function tick() {
    document.querySelectorAll(".compte-a-rebours[data-expires]").forEach(function (el) {
      var left = Math.max(0, Math.floor((Date.parse(el.dataset.expires) - Date.now()) / 1000));
      if (isNaN(left)) return;
      var h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
      el.textContent = (h ? h + " h " : "") + String(m).padStart(2, "0") + " min " + String(s).padStart(2, "0") + " s";
    });
  }
  // JJ/MM/AAAA mask: the slashes come by themselves while typing digits.
  function mask(event) {
    var el = event.target;
    if (!el.matches || !el.matches("input[data-masque=date]")) return;
    if (event.inputType && event.inputType.indexOf("delete") === 0) return;
    var digits = el.value.replace(/\D/g, "").slice(0, 8);
    var out = digits.slice(0, 2);
    if (digits.length > 2) out += "/" + digits.slice(2, 4);
    if (digits.length > 4) out += "/" + digits.slice(4);
    el.value = out;
  }
  document.addEventListener("input", mask);
  // Search forms: empty criteria stay out of the address (shorter links to share or bookmark).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form[role=search][method=get]")) return;
    form.querySelectorAll("input, select").forEach(function (el) {
      if (el.value === "" && (el.type !== "radio" || el.checked)) el.disabled = true;
    });
  });
  // Keyboard: after htmx replaces a block (one-click task status), focus stays in it.
  var swapped = null;
  document.addEventListener("htmx:beforeSwap", function (event) {
    swapped = event.detail.target && event.detail.target.id;
  });
  document.addEventListener("htmx:afterSettle", function () {
    if (!swapped) return;
    var block = document.getElementById(swapped);
    swapped = null;
    if (!block) return;
    var next = block.querySelector("button, a[href]");
    if (!next) { block.setAttribute("tabindex", "-1"); next = block; }
    next.focus();
  });
  document.addEventListener("DOMContentLoaded", function () {
    // On a phone the list comes first: the search criteria fold away (one tap opens them).
    if (window.matchMedia("(max-width: 40rem)").matches) {
      document.querySelectorAll("details.criteres[open]").forEach(function (el) { el.open = false; });
    }
    tick();
    setInterval(tick, 1000);
  });
})();
