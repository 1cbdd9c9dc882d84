// distill's audio players. Every <audio> on a page becomes a player that draws the sound's
// waveform and spectrogram (wavesurfer.js and its spectrogram plugin, from /static/vendor)
// and follows playback on both, with a play/pause button. Without JavaScript the <audio>
// element stays as the server wrote it, with the browser's own controls. An <audio data-plain>
// is left as it is. A player whose sound changes (the code editor's, after every edit)
// draws the new one.
//
// Light on pages with many clips: the controls are built at once, but a sound is fetched
// and decoded only when its player comes into view (or is played). Fragments swapped in
// later (the run page's live updates, htmx swaps) are upgraded the same way, and players
// swapped out are destroyed.
//
// A/B: the players inside one [data-ab] element (a preview row) are numbered 1, 2, ... A
// player's A/B button, or its number key, moves playback to that sound at the same time
// offset: the sound that was playing pauses, the new one seeks there and plays. The keys
// act on the row last played (else the first row on the page). One sound plays at a time.
//
// Each player's box carries data-state (idle, loading, ready, error); data-ready="1" once
// its waveform and spectrogram are drawn.
(function () {
  "use strict";

  const players = new Map(); // audio element -> player
  let current = null; // the player last played or switched to
  const inView = "IntersectionObserver" in window
    ? new IntersectionObserver(function (entries) {
      for (const entry of entries) {
        if (!entry.isIntersecting) continue;
        inView.unobserve(entry.target);
        const player = players.get(entry.target.querySelector("audio"));
        if (player) load(player);
      }
    }, { rootMargin: "200px" })
    : null;

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text) node.textContent = text;
    return node;
  }

  function seconds(value) {
    return Number.isFinite(value) ? value.toFixed(2) : "–";
  }

  // The sample rate in a WAV's fmt chunk, so a sound is decoded (and its spectrogram drawn)
  // at its own rate; 0 for anything else.
  function wavRate(bytes) {
    const view = new DataView(bytes);
    const tag = function (at) {
      return String.fromCharCode(view.getUint8(at), view.getUint8(at + 1),
        view.getUint8(at + 2), view.getUint8(at + 3));
    };
    if (bytes.byteLength < 12 || tag(0) !== "RIFF" || tag(8) !== "WAVE") return 0;
    for (let at = 12; at + 16 <= bytes.byteLength;) {
      const size = view.getUint32(at + 4, true);
      if (tag(at) === "fmt ") return view.getUint32(at + 12, true);
      at += 8 + size + (size % 2);
    }
    return 0;
  }

  function upgrade(audio) {
    const box = element("div", "player");
    box.dataset.state = "idle";
    const group = audio.closest("[data-ab]");
    const caption = audio.closest("figure")?.querySelector("figcaption")?.textContent.trim();
    const name = caption || audio.getAttribute("src").split("/").pop();
    const controls = element("div", "player-controls");
    const play = element("button", "play", "▶");
    play.type = "button";
    play.setAttribute("aria-label", "play " + name);
    controls.append(play);
    const player = { audio: audio, box: box, group: group, play: play, ab: null, surfer: null };
    if (group) { // numbered in page order, whichever was upgraded first
      const number = Array.from(group.querySelectorAll("audio")).indexOf(audio) + 1;
      player.ab = element("button", "ab", "A/B " + number);
      player.ab.type = "button";
      player.ab.title = "switch to " + name + " at the same moment (key " + number + ")";
      player.ab.setAttribute("aria-pressed", "false");
      player.ab.addEventListener("click", function () { switchTo(player); });
      controls.append(player.ab);
    }
    player.time = element("span", "time");
    controls.append(player.time);
    player.wave = element("div", "wave");
    player.spectrum = element("div", "spectrogram");
    player.cursor = element("div", "cursor");
    player.spectrum.append(player.cursor);

    audio.replaceWith(box);
    audio.controls = false;
    audio.hidden = true;
    box.append(audio, controls, player.wave, player.spectrum);
    players.set(audio, player);

    play.addEventListener("click", function () {
      if (audio.paused) start(player);
      else audio.pause();
    });
    audio.addEventListener("play", function () { playing(player); });
    audio.addEventListener("pause", function () { show(player); });
    audio.addEventListener("ended", function () { show(player); });
    audio.addEventListener("timeupdate", function () { show(player); });
    audio.addEventListener("loadedmetadata", function () { show(player); });
    audio.addEventListener("emptied", function () { redraw(player); });
    show(player);
    if (inView) inView.observe(box);
    else load(player);
  }

  function show(player) {
    const audio = player.audio;
    const duration = Number.isFinite(audio.duration) ? audio.duration : player.duration;
    player.play.textContent = audio.paused ? "▶" : "❚❚";
    player.play.setAttribute("aria-pressed", audio.paused ? "false" : "true");
    player.time.textContent = seconds(audio.currentTime) + " / " + seconds(duration) + " s";
    if (duration) player.cursor.style.left = (100 * audio.currentTime / duration) + "%";
  }

  function start(player) {
    load(player);
    player.audio.play().catch(function (error) {
      player.box.title = "could not play this sound: " + error.message;
    });
  }

  function playing(player) {
    for (const other of players.values()) {
      if (other !== player && !other.audio.paused) other.audio.pause();
    }
    current = player;
    if (player.group) {
      for (const other of members(player.group)) {
        other.box.classList.toggle("ab-active", other === player);
        other.ab.setAttribute("aria-pressed", other === player ? "true" : "false");
      }
    }
    show(player);
  }

  function members(group) {
    return Array.from(group.querySelectorAll("audio"))
      .map(function (audio) { return players.get(audio); })
      .filter(function (player) { return player && player.group === group; });
  }

  // Playback moves to `target` at the position of the sound of its row that plays (or
  // played last).
  function switchTo(target) {
    const row = members(target.group);
    const from = row.find(function (p) { return !p.audio.paused; })
      || (current && current.group === target.group ? current : null);
    if (from && from !== target) {
      const time = from.audio.currentTime;
      from.audio.pause();
      target.audio.currentTime = time;
    }
    start(target);
  }

  // The element was given another sound: forget the drawn one, draw the new one.
  function redraw(player) {
    if (!player.loading) return; // never drawn: load() fetches whatever it holds then
    if (player.surfer) player.surfer.destroy();
    player.surfer = null;
    player.loading = null;
    player.wave.replaceChildren();
    player.spectrum.replaceChildren(player.cursor);
    delete player.box.dataset.ready;
    delete player.box.dataset.sound;
    load(player);
  }

  function load(player) {
    if (player.loading) return;
    player.box.dataset.state = "loading";
    const src = player.audio.src || player.audio.currentSrc;
    const drawing = player.drawing = (player.drawing || 0) + 1; // a newer sound wins
    player.loading = fetch(src)
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.arrayBuffer();
      })
      .then(function (bytes) {
        const rate = wavRate(bytes);
        const context = new OfflineAudioContext(1, 1, rate >= 3000 && rate <= 768000 ? rate : 44100);
        return context.decodeAudioData(bytes);
      })
      .then(function (buffer) {
        if (player.box.isConnected && player.drawing === drawing) draw(player, buffer, src);
      })
      .catch(function (error) {
        player.box.dataset.state = "error";
        player.box.title = "could not draw this sound: " + error.message;
      });
  }

  function draw(player, buffer, src) {
    const samples = buffer.getChannelData(0);
    let fft = 512; // shorter windows for very short sounds, so they still get a picture
    while (fft > 32 && fft * 2 > samples.length) fft /= 2;
    const spectrogram = window.WaveSurfer.Spectrogram.create({
      container: player.spectrum, height: 64, fftSamples: fft, scale: "mel", colorMap: "roseus",
    });
    spectrogram.on("click", function (fraction) { player.surfer.seekTo(fraction); });
    spectrogram.on("ready", function () {
      player.box.dataset.state = "ready";
      player.box.dataset.ready = "1";
      player.box.dataset.sound = src;
    });
    player.duration = buffer.duration;
    player.surfer = window.WaveSurfer.create({
      container: player.wave, media: player.audio, peaks: [samples], duration: buffer.duration,
      height: 40, waveColor: "#9db7e8", progressColor: "#2f6fde", cursorColor: "#1d1f24",
      dragToSeek: true, plugins: [spectrogram],
    });
    player.surfer.on("timeupdate", function () { show(player); });
    show(player);
    player.surfer.on("error", function (error) {
      player.box.dataset.state = "error";
      player.box.title = "could not draw this sound: " + (error.message || error);
    });
  }

  // Upgrade what is new, destroy what was swapped out.
  function scan() {
    for (const [audio, player] of players) {
      if (audio.isConnected) continue;
      if (player.surfer) player.surfer.destroy();
      if (inView) inView.unobserve(player.box);
      players.delete(audio);
      if (current === player) current = null;
    }
    if (!window.WaveSurfer) return; // the vendored scripts are missing: keep the plain players
    for (const audio of document.querySelectorAll("audio[src]:not([data-plain])")) {
      if (!players.has(audio)) upgrade(audio);
    }
    for (const hint of document.querySelectorAll(".ab-hint[hidden]")) hint.hidden = false;
  }

  function typing(target) {
    return target instanceof HTMLElement
      && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (!/^[1-9]$/.test(event.key) || typing(event.target)) return;
    const group = current && current.group && current.group.isConnected
      ? current.group : document.querySelector("[data-ab]");
    const target = group && members(group)[Number(event.key) - 1];
    if (!target) return;
    event.preventDefault();
    switchTo(target);
  });

  document.addEventListener("DOMContentLoaded", scan);
  document.addEventListener("distill:swapped", scan); // live.js
  document.addEventListener("htmx:load", scan);
  document.addEventListener("htmx:afterSwap", scan);
})();
