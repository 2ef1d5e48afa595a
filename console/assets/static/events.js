// The live event feed: reads /events/stream (server-sent events) with the
// page's filter and adds each event at the top of the table.
(function () {
  "use strict";
  var table = document.getElementById("events");
  var body = table.tBodies[0];
  var state = document.getElementById("stream-state");
  var max = 500;
  var query = table.getAttribute("data-query");
  var src = new EventSource("/events/stream" + (query ? "?" + query : ""));

  function cell(tr, text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) { td.className = cls; }
    tr.appendChild(td);
    return td;
  }
  function link(td, href) {
    var a = document.createElement("a");
    a.href = href;
    a.textContent = td.textContent;
    td.textContent = "";
    td.appendChild(a);
  }
  src.addEventListener("ev", function (e) {
    var ev = JSON.parse(e.data);
    var tr = document.createElement("tr");
    tr.className = "event new";
    tr.setAttribute("data-device", ev.device);
    tr.setAttribute("data-kind", ev.kind);
    cell(tr, ev.time.replace("T", " ").replace(/\.\d+/, "").replace("Z", ""));
    cell(tr, ev.tenant);
    cell(tr, ev.site);
    var dev = cell(tr, ev.device);
    if (!table.hasAttribute("data-ops")) {
      link(dev, "/sites/" + encodeURIComponent(ev.site) + "/devices/" + encodeURIComponent(ev.device));
    }
    cell(tr, ev.kind);
    cell(tr, ev.check);
    cell(tr, ev.severity, "sev-" + ev.severity);
    cell(tr, ev.message);
    body.insertBefore(tr, body.firstChild);
    while (body.rows.length > max) { body.deleteRow(body.rows.length - 1); }
  });
  src.addEventListener("live", function () { state.textContent = "live: new events appear at the top"; });
  src.addEventListener("notice", function (e) { state.textContent = JSON.parse(e.data); });
  src.onerror = function () {
    state.textContent = src.readyState === EventSource.CLOSED ? "disconnected: reload the page (the session may have expired)" : "reconnecting…";
  };
})();
