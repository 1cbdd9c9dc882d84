// The model page's sample pack (server/packs.py): every picked sound becomes a pad of the
// grid; a click, or the key printed on it, plays it from its start, as a sampler's pad
// does (a sound hit again restarts). Each pad carries data-played="1" once it has played.
(() => {
  "use strict";
  const form = document.getElementById("pack-form");
  if (!form) return;
  const KEYS = "qwerasdfzxcvtyui"; // four rows of four, as on a pad controller
  const pads = document.getElementById("pads");
  const download = document.getElementById("pack-download");
  const sounds = new Map(); // src -> its Audio, made on the first hit

  function build() {
    const picked = [...form.querySelectorAll("input[type=checkbox]:checked")];
    pads.replaceChildren(...picked.map((box, index) => {
      const pad = document.createElement("button");
      pad.type = "button";
      pad.className = "pad";
      pad.dataset.src = box.dataset.src;
      pad.dataset.key = KEYS[index] || "";
      const key = document.createElement("kbd");
      key.textContent = KEYS[index] || "";
      const label = document.createElement("span");
      label.textContent = box.dataset.label;
      pad.title = box.value;
      pad.append(key, label);
      return pad;
    }));
    pads.hidden = picked.length === 0;
    download.disabled = picked.length === 0;
  }

  function hit(pad) {
    const src = pad.dataset.src;
    let audio = sounds.get(src);
    if (!audio) {
      audio = new Audio(src);
      sounds.set(src, audio);
    }
    audio.onplaying = () => { pad.dataset.played = "1"; pad.classList.add("hit"); };
    audio.onended = audio.onpause = () => pad.classList.remove("hit");
    audio.currentTime = 0;
    audio.play().catch((error) => { pad.title = `could not play: ${error.message}`; });
  }

  pads.addEventListener("click", (event) => {
    const pad = event.target.closest(".pad");
    if (pad) hit(pad);
  });
  form.addEventListener("change", build);
  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (/^(TEXTAREA|SELECT)$/.test(target.tagName)) return;
    if (target.tagName === "INPUT" && target.type !== "checkbox") return; // typing
    const key = event.key.toLowerCase();
    const pad = key.length === 1 && pads.querySelector(`.pad[data-key="${key}"]`);
    if (!pad) return;
    event.preventDefault();
    hit(pad);
  });
  build();
})();
