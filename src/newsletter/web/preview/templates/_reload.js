{# Polls /__version and reloads on change, keeping the scroll position; frames grow to fit their email. #}
var nlBuilt = {{ version | tojson }};
function nlFit(frame) {
  try { frame.style.height = frame.contentDocument.documentElement.scrollHeight + "px"; } catch (e) {}
}
(function poll() {
  setTimeout(function () {
    fetch("/__version", {cache: "no-store"}).then(function (r) { return r.text(); }).then(function (v) {
      if (v === nlBuilt) { poll(); return; }
      sessionStorage.setItem("nl-scroll", String(window.scrollY));
      location.reload();
    }).catch(poll);  /* server stopped or restarting: keep asking */
  }, {{ poll_ms }});
})();
addEventListener("load", function () {
  var y = sessionStorage.getItem("nl-scroll");
  if (y !== null) { sessionStorage.removeItem("nl-scroll"); window.scrollTo(0, Number(y)); }
});
