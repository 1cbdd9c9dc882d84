// distill's live updates: one WebSocket per page, HTML fragments swapped in by id.
// The server sends fragments whose root elements carry the id of the element they
// replace; `live-seq` carries the last event seq they include, which a reconnect sends
// back as `after` so the server replays exactly what this page has not seen.
(function () {
  "use strict";

  function swap(html) {
    const template = document.createElement("template");
    template.innerHTML = html;
    for (const element of Array.from(template.content.children)) {
      const old = element.id && document.getElementById(element.id);
      if (!old) continue;
      old.replaceWith(element);
      if (window.htmx) window.htmx.process(element);
    }
    document.dispatchEvent(new CustomEvent("distill:swapped"));
  }

  function connect(path) {
    let delay = 250;
    function open() {
      const url = new URL(path, window.location.href);
      url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
      const seq = document.getElementById("live-seq");
      url.searchParams.set("after", seq ? seq.dataset.seq : "0");
      const socket = new WebSocket(url);
      socket.onopen = function () {
        document.body.dataset.socket = "open";
      };
      socket.onmessage = function (message) {
        delay = 250;
        if (message.data.charAt(0) === "<") swap(message.data);
      };
      socket.onclose = function (event) {
        document.body.dataset.socket = "closed";
        if (event.code === 1000 || event.code === 1008) return; // the run ended, or refused
        setTimeout(open, event.code === 4000 ? 0 : delay); // 4000: resync at once
        delay = Math.min(delay * 2, 10000);
      };
    }
    open();
  }

  function uploads() {
    const form = document.getElementById("upload-form");
    if (!form) return;
    const input = document.getElementById("files");
    const zone = document.getElementById("dropzone");
    const progress = document.getElementById("upload-progress");
    zone.addEventListener("dragover", function (e) { e.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", function () { zone.classList.remove("over"); });
    zone.addEventListener("drop", function (e) {
      e.preventDefault();
      zone.classList.remove("over");
      input.files = e.dataTransfer.files;
      window.htmx.trigger(form, "submit");
    });
    form.addEventListener("htmx:xhr:progress", function (e) {
      progress.hidden = false;
      if (e.detail.lengthComputable) progress.value = (e.detail.loaded / e.detail.total) * 100;
    });
  }

  // A form with data-confirm asks first: the question is data the page filled in, never
  // script text a name could break out of.
  document.addEventListener("submit", function (event) {
    const question = event.target.dataset && event.target.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  });

  document.addEventListener("DOMContentLoaded", function () {
    const live = document.body.dataset.live;
    if (live) connect(live);
    uploads();
  });
})();
