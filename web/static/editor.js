// The code editor (server/editor.py): the grid lives here, with its undo history; each
// edit sends the whole grid to be decoded and plays the result. window.distillEditor is
// what a test (or a curious user's console) reads.
(() => {
  "use strict";

  const root = document.getElementById("editor");
  if (!root) return;
  const data = JSON.parse(document.getElementById("edit-data").textContent);
  // The server's addresses, from url_for in edit.html: they stay under its root path.
  const urls = { decode: root.dataset.decodeUrl, regenerate: root.dataset.regenerateUrl, save: root.dataset.saveUrl };
  const colours = data.colours;
  const CELL = 10; // px per time step, the mel image drawn to the same width
  const $ = (id) => document.getElementById(id);
  const gridEl = $("grid"), mel = $("edit-mel"), edited = $("edited"), original = $("original");

  let grid = data.grid; // the distill-codes JSON: grid.codes[level][step]
  const undoStack = [], redoStack = [];
  let cursor = { level: 0, step: 0 }, anchor = null;
  const muted = new Set();
  let typed = "", version = 0, lastWav = null, rendering = Promise.resolve();
  const clipboardKey = `distill-codes-clipboard-${root.dataset.fingerprint}`;

  const steps = () => grid.codes[0].length;
  const levels = () => grid.codes.length;
  const copyCodes = () => grid.codes.map((row) => row.slice());

  function selection() {
    const a = anchor || cursor;
    return {
      l0: Math.min(a.level, cursor.level), l1: Math.max(a.level, cursor.level),
      s0: Math.min(a.step, cursor.step), s1: Math.max(a.step, cursor.step),
    };
  }

  function draw() {
    gridEl.style.gridTemplateColumns = `repeat(${steps()}, ${CELL - 1}px)`;
    gridEl.style.width = mel.style.width = `${steps() * CELL}px`;
    const sel = selection();
    const cells = [];
    grid.codes.forEach((row, level) => row.forEach((code, step) => {
      const classes = ["cell"];
      if (level >= sel.l0 && level <= sel.l1 && step >= sel.s0 && step <= sel.s1) classes.push("selected");
      if (level === cursor.level && step === cursor.step) classes.push("cursor");
      if (muted.has(level)) classes.push("muted");
      cells.push(`<div class="${classes.join(" ")}" data-level="${level}" data-step="${step}" ` +
        `style="background:${colours[level][code]}" title="level ${level + 1}, step ${step}: code ${code}"></div>`);
    }));
    gridEl.innerHTML = cells.join("");
    $("grid-size").textContent = `${levels()} levels x ${steps()} steps`;
    $("palette-level").textContent = cursor.level + 1;
    const current = grid.codes[cursor.level][cursor.step];
    $("palette").innerHTML = colours[cursor.level].map((colour, code) =>
      `<button type="button" class="${code === current ? "current" : ""}" data-code="${code}" ` +
      `style="background:${colour}" title="code ${code}"></button>`).join("");
    $("mutes").innerHTML = grid.codes.map((_, level) =>
      `<label><input type="checkbox" data-mute="${level}" ${muted.has(level) ? "checked" : ""}> mute ${level + 1}</label>`).join(" ");
  }

  async function post(action, body) {
    const response = await fetch(urls[action], {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    if (!response.ok) {
      const reason = await response.json().catch(() => ({ error: response.statusText }));
      const error = new Error(reason.error || response.statusText);
      error.exists = Boolean(reason.exists); // a save under a name in use: ask first
      throw error;
    }
    return response;
  }

  function status(text) { $("edit-status").textContent = text; }

  // Decode the grid as it is now into `player`; edits made meanwhile wait their turn.
  function render(player = edited) {
    const body = { grid, muted: [...muted] };
    rendering = rendering.then(async () => {
      status("decoding…");
      try {
        const wav = await (await post("decode", body)).arrayBuffer();
        const at = player.currentTime, playing = !player.paused;
        if (player.src) URL.revokeObjectURL(player.src);
        player.src = URL.createObjectURL(new Blob([wav], { type: "audio/wav" }));
        if (player === edited) {
          lastWav = new Uint8Array(wav);
          $("download").href = player.src;
          version += 1;
          root.dataset.version = version;
          player.currentTime = at;
          if (playing || version > 1) player.play().catch(() => {}); // an edit plays at once
        }
        status("ready");
      } catch (error) { status(`error: ${error.message}`); }
    });
    return rendering;
  }

  function apply(codes) {
    undoStack.push(grid.codes);
    redoStack.length = 0;
    grid = { ...grid, codes };
    cursor.step = Math.min(cursor.step, steps() - 1);
    if (anchor) anchor.step = Math.min(anchor.step, steps() - 1);
    draw();
    return render();
  }

  function setCode(code) {
    const sel = selection(), codes = copyCodes();
    for (let l = sel.l0; l <= sel.l1; l++) for (let s = sel.s0; s <= sel.s1; s++) codes[l][s] = code;
    return apply(codes);
  }

  function columns() { // the selected time steps, every level
    const sel = selection();
    return grid.codes.map((row) => row.slice(sel.s0, sel.s1 + 1));
  }

  function removeSteps() {
    const sel = selection();
    if (sel.s1 - sel.s0 + 1 >= steps()) { status("a sound keeps at least one step"); return null; }
    const codes = grid.codes.map((row) => row.filter((_, s) => s < sel.s0 || s > sel.s1));
    anchor = null; cursor.step = Math.min(sel.s0, codes[0].length - 1);
    return apply(codes);
  }

  function insertAt(step, block) {
    return apply(grid.codes.map((row, l) => [...row.slice(0, step), ...block[l], ...row.slice(step)]));
  }

  async function regenerate(start, end) {
    const body = {
      grid, start, end, seed: Number($("seed").value) || 0,
      temperature: Number($("temperature").value), top_k: Number($("top-k").value) || 0,
    };
    status("regenerating…");
    try {
      const result = await (await post("regenerate", body)).json();
      return apply(result.grid.codes);
    } catch (error) { status(`error: ${error.message}`); }
  }

  const actions = {
    undo() {
      if (!undoStack.length) return;
      redoStack.push(grid.codes);
      grid = { ...grid, codes: undoStack.pop() };
      draw();
      return render();
    },
    redo() {
      if (!redoStack.length) return;
      undoStack.push(grid.codes);
      grid = { ...grid, codes: redoStack.pop() };
      draw();
      return render();
    },
    copy() { localStorage.setItem(clipboardKey, JSON.stringify(columns())); status("copied"); },
    cut() { actions.copy(); return removeSteps(); },
    paste() {
      const block = JSON.parse(localStorage.getItem(clipboardKey) || "null");
      if (!block || block.length !== levels()) { status("nothing to paste from this model"); return; }
      return insertAt(cursor.step, block);
    },
    duplicate() { return insertAt(selection().s1 + 1, columns()); },
    delete() { return removeSteps(); },
    insert() { return insertAt(cursor.step, grid.codes.map((row) => [row[cursor.step]])); },
    regenerate() { const sel = selection(); return regenerate(sel.s0, sel.s1 + 1); },
    variation() { return regenerate(0, steps()); },
    ab() {
      const [from, to] = edited.paused && !original.paused ? [original, edited] : [edited, original];
      to.currentTime = from.currentTime;
      from.pause();
      to.play();
    },
    async save() {
      const name = $("save-name").value;
      try {
        try {
          await post("save", { grid, name });
        } catch (error) {
          if (!error.exists || !window.confirm(`${error.message} (${name})`)) throw error;
          await post("save", { grid, name, overwrite: true });
        }
        status(`saved as ${name}`);
        root.dataset.saved = name;
      } catch (error) { status(`error: ${error.message}`); }
    },
  };

  root.addEventListener("click", (event) => {
    const target = event.target.closest("[data-action], [data-code], .cell");
    if (!target) return;
    if (target.dataset.action) actions[target.dataset.action]();
    else if (target.dataset.code !== undefined) setCode(Number(target.dataset.code));
    else {
      const at = { level: Number(target.dataset.level), step: Number(target.dataset.step) };
      anchor = event.shiftKey ? (anchor || { ...cursor }) : null;
      cursor = at;
      draw();
      gridEl.focus();
    }
  });
  root.addEventListener("change", (event) => {
    const level = event.target.dataset.mute;
    if (level === undefined) return;
    event.target.checked ? muted.add(Number(level)) : muted.delete(Number(level));
    draw();
    render();
  });
  gridEl.addEventListener("keydown", (event) => {
    const moves = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] };
    const keys = { z: "undo", y: "redo", c: "copy", x: "cut", v: "paste", d: "duplicate", i: "insert", r: "regenerate", a: "ab" };
    if (moves[event.key]) {
      const [dl, ds] = moves[event.key];
      anchor = event.shiftKey ? (anchor || { ...cursor }) : null;
      cursor = {
        level: Math.max(0, Math.min(levels() - 1, cursor.level + dl)),
        step: Math.max(0, Math.min(steps() - 1, cursor.step + ds)),
      };
      draw();
      gridEl.querySelector(".cursor")?.scrollIntoView({ block: "nearest", inline: "nearest" });
    } else if (/^[0-9]$/.test(event.key)) {
      typed += event.key;
      status(`code ${typed} (Enter sets it)`);
    } else if (event.key === "Enter" && typed) {
      const code = Math.min(Number(typed), colours[cursor.level].length - 1);
      typed = "";
      setCode(code);
    } else if (event.key === "Delete" || event.key === "Backspace") {
      actions.delete();
    } else if (event.key === "m") {
      muted.has(cursor.level) ? muted.delete(cursor.level) : muted.add(cursor.level);
      draw();
      render();
    } else if (keys[event.key.toLowerCase()]) {
      actions[keys[event.key.toLowerCase()]]();
    } else return;
    event.preventDefault();
  });

  async function digest() {
    if (!lastWav) return null;
    const hash = await crypto.subtle.digest("SHA-256", lastWav);
    return [...new Uint8Array(hash)].map((b) => b.toString(16).padStart(2, "0")).join("");
  }

  window.distillEditor = {
    codes: () => grid.codes, version: () => version, wavDigest: digest, settled: () => rendering,
    select(level, s0, s1) { anchor = { level, step: s0 }; cursor = { level, step: s1 }; draw(); },
  };
  draw();
  const originalGrid = grid;
  rendering = rendering.then(async () => {
    const wav = await (await post("decode", { grid: originalGrid, muted: [] })).arrayBuffer();
    original.src = URL.createObjectURL(new Blob([wav], { type: "audio/wav" }));
  }).catch((error) => status(`error: ${error.message}`));
  render();
})();
