// The live player (issue 15): the call's WAV read as it arrives and played through Web Audio.
// An <audio> element buffers seconds of a stream of unknown length before it starts; here the
// browser holds TARGET seconds, and when it falls further behind it drops what waits rather
// than drift. No inline script: the console's CSP allows 'self' only.
"use strict";

const TARGET = 0.3; // seconds held before a piece plays: covers the jitter of its arrival
const SLACK = 0.5; // held beyond TARGET + SLACK is behind live: what waits is dropped
const MAX_HEADER = 65536; // bytes: collector/listen.py's header is 44; a longer one is not WAV

// The stream is what collector/listen.py writes: a WAV header (RIFF, "fmt ", then "data" of
// unknown length) and 16-bit little-endian mono PCM, cut anywhere between two reads.
class WavStream {
  constructor() {
    this.pending = new Uint8Array(0);
    this.rate = 0;
    this.inData = false;
  }

  // The samples whole so far, as floats; a byte of a sample split by a read waits for its pair.
  push(bytes) {
    let data = new Uint8Array(this.pending.length + bytes.length);
    data.set(this.pending);
    data.set(bytes, this.pending.length);
    if (!this.inData) {
      const start = this.header(data);
      if (start < 0) {
        // held whole until the header is: a bogus one must not grow it without end
        if (data.length >= MAX_HEADER) {
          throw new Error(`byte ${MAX_HEADER}: WAV header too long (no audio in its first ${MAX_HEADER} bytes)`);
        }
        this.pending = data;
        return new Float32Array(0);
      }
      this.inData = true;
      data = data.subarray(start);
    }
    const whole = data.length - (data.length % 2);
    const view = new DataView(data.buffer, data.byteOffset, whole);
    const samples = new Float32Array(whole / 2);
    for (let i = 0; i < samples.length; i++) samples[i] = view.getInt16(2 * i, true) / 32768;
    this.pending = data.slice(whole);
    return samples;
  }

  // Where the audio begins, or -1 until the header is all here.
  header(data) {
    if (data.length < 12) return -1;
    const name = (at) => String.fromCharCode(...data.subarray(at, at + 4));
    if (name(0) !== "RIFF" || name(8) !== "WAVE") throw new Error("the server did not send WAV audio");
    const view = new DataView(data.buffer, data.byteOffset, data.length);
    let at = 12;
    while (at + 8 <= data.length) {
      const size = view.getUint32(at + 4, true);
      if (name(at) === "data") {
        if (!this.rate) throw new Error(`byte ${at}: WAV audio before its format`);
        return at + 8;
      }
      if (at + 8 + size > data.length) return -1;
      if (name(at) === "fmt ") {
        const format = view.getUint16(at + 8, true);
        const channels = view.getUint16(at + 10, true);
        const bits = view.getUint16(at + 22, true);
        if (format !== 1 || channels !== 1 || bits !== 16) {
          throw new Error(`byte ${at}: WAV format ${format}, ${channels} channels, ${bits} bits; this player plays 16-bit mono PCM`);
        }
        this.rate = view.getUint32(at + 12, true);
      }
      at += 8 + size + (size % 2);
    }
    return -1;
  }
}

// Pieces of audio played back to back, TARGET after the first arrives (and again after the
// stream ran dry). More than TARGET + SLACK still waiting when a piece arrives is behind live
// (a page held up, then the backlog at once): what waits is cut and the newest plays. A
// backlog read in one piece is caught up on the next one.
class Schedule {
  constructor(context) {
    this.context = context;
    this.next = 0; // context time at which the next piece starts
    this.sources = new Set();
    this.drained = null; // called when the last piece has played
  }

  play(samples, rate) {
    const context = this.context;
    const now = context.currentTime;
    if (this.next < now) {
      this.next = now + TARGET;
    } else if (this.next > now + TARGET + SLACK) {
      this.stop();
      this.next = now + TARGET;
    }
    const buffer = context.createBuffer(1, samples.length, rate);
    buffer.copyToChannel(samples, 0);
    const source = context.createBufferSource();
    source.buffer = buffer;
    source.connect(context.destination);
    source.addEventListener("ended", () => {
      this.sources.delete(source);
      if (this.sources.size === 0 && this.drained !== null) this.drained();
    });
    source.start(this.next);
    this.sources.add(source);
    this.next += buffer.duration;
  }

  stop() {
    for (const source of this.sources) source.stop();
    this.sources.clear();
  }

  // Resolves once every piece scheduled has played.
  finished() {
    if (this.sources.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.drained = resolve;
    });
  }
}

// Why the console refused: the message of its error page (or of the API's JSON).
async function refusal(answer) {
  const text = await answer.text();
  if ((answer.headers.get("content-type") || "").includes("json")) {
    try {
      return `${answer.status}: ${JSON.parse(text).detail}`;
    } catch (error) {
      return `${answer.status}: ${answer.statusText}`;
    }
  }
  const said = new DOMParser().parseFromString(text, "text/html").querySelector(".error");
  return `${answer.status}: ${(said ? said.textContent : answer.statusText).trim()}`;
}

class LivePlayer {
  constructor(box) {
    this.box = box;
    this.state = box.querySelector(".state");
    this.start = box.querySelector("button.start");
    this.stop = box.querySelector("button.stop");
    this.controller = null;
    // Created on the page the click on "Listen live" brought up: the browser counts that
    // click, so the context runs at once. Otherwise (a reload) it waits for a click here.
    this.context = new AudioContext({ latencyHint: "interactive" });
    this.schedule = new Schedule(this.context);
    this.start.addEventListener("click", () => this.context.resume());
    this.stop.addEventListener("click", () => this.end("stopped", "Stopped: the listening has ended."));
    this.context.addEventListener("statechange", () => this.ready());
    this.ready();
  }

  ready() {
    if (this.controller !== null) return;
    if (this.context.state === "running") {
      this.listen();
    } else {
      this.show("ready", "Press Listen live: the browser plays sound only after a click.");
    }
  }

  show(name, text) {
    this.box.dataset.state = name;
    this.state.textContent = text;
    this.start.hidden = name !== "ready";
    this.stop.disabled = name !== "connecting" && name !== "live";
  }

  end(name, text) {
    if (this.controller !== null) this.controller.abort(); // the console sees the browser go
    this.schedule.stop();
    this.context.close();
    this.show(name, text);
  }

  async listen() {
    const controller = new AbortController();
    this.controller = controller;
    this.show("connecting", "Connecting…");
    try {
      const answer = await fetch(this.box.dataset.src, {
        signal: controller.signal,
        credentials: "same-origin",
        cache: "no-store",
      });
      if (!answer.ok) throw new Error(await refusal(answer));
      if (new URL(answer.url).pathname === "/login") throw new Error("the session has ended: log in again");
      const reader = answer.body.getReader();
      const wav = new WavStream();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        const samples = wav.push(value);
        if (samples.length === 0) continue;
        this.schedule.play(samples, wav.rate);
        if (this.box.dataset.state !== "live") this.show("live", "Live.");
      }
      this.show("ended", "The call has ended.");
      await this.schedule.finished(); // what is scheduled still plays, then the device is let go
      this.context.close();
    } catch (error) {
      if (controller.signal.aborted) return; // stopped here: already said
      this.end("error", `Error: ${error.message}`);
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("live-player");
  if (!box) return;
  try {
    new LivePlayer(box);
  } catch (error) { // no Web Audio here: nothing was asked of the console yet
    box.dataset.state = "error";
    box.querySelector(".state").textContent = `Error: this browser cannot play live audio (${error.message})`;
    box.querySelector("button.stop").disabled = true;
  }
});
