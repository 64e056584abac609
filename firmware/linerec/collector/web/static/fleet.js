// The fleet page refreshes its table from /api/fleet (no inline script: CSP allows 'self').
// Text goes in with textContent only: nothing a device publishes is ever parsed as HTML.
const EVERY_MS = 2000;

function utc(seconds) {
  return new Date(seconds * 1000).toISOString().slice(0, 19).replace("T", " ");
}

function cells(d) {
  // What the box left out, in words (templates/fleet.html says the same).
  const unknown = d.health_at ? "not reported" : "not reported yet";
  const missing = (value) => value === null || value === undefined;
  const lines = d.lines.map((l) => `${l.line}: ${l.state}, ${l.off_hook ? "off hook" : "on hook"}`);
  const gaps = d.event_gaps.map(([a, b]) => `events ${a}-${b}`)
    .concat(d.recording_gaps.map(([a, b]) => `recordings ${a}-${b}`));
  const clock = missing(d.clock_synchronized) ? unknown
    : d.clock_synchronized ? "synchronised" : "NOT synchronised";
  const release = d.release
    ? `${d.release.version || "version not reported"} (slot ${d.release.slot || "not reported"})`
      + (d.release.pending ? `, ${d.release.pending} pending` : "")
    : unknown;
  return [
    d.device,
    d.state + (d.since ? ` since ${utc(d.since)}` : ""),
    lines.length ? lines.join("; ") : unknown,
    missing(d.ring_fill) ? unknown : `${Math.round(d.ring_fill * 100)}% full`,
    clock,
    d.tls_cert_expires ? `until ${d.tls_cert_expires.slice(0, 16).replace("T", " ")}` : unknown,
    release,
    d.last_recording ? (d.last_recording.started_at || "").slice(0, 19).replace("T", " ") : "none",
    gaps.length ? gaps.join("; ") : "none",
    d.faults.length ? d.faults.join(", ") : "none",
  ];
}

async function refresh(table, updated) {
  const answer = await fetch("/api/fleet", { credentials: "same-origin" });
  if (!answer.ok) {
    updated.textContent = `not updated: ${answer.status}`;
    return;
  }
  const body = await answer.json();
  const rows = body.devices.map((d) => {
    const row = document.createElement("tr");
    row.dataset.device = d.device;
    cells(d).forEach((text, index) => {
      const cell = document.createElement("td");
      cell.textContent = text;
      if (index === 1) cell.className = `state ${d.state}`;
      row.appendChild(cell);
    });
    return row;
  });
  table.tBodies[0].replaceChildren(...rows);
  updated.textContent = `updated ${new Date().toISOString().slice(11, 19)} UTC`;
}

document.addEventListener("DOMContentLoaded", () => {
  const table = document.getElementById("fleet");
  const updated = document.getElementById("updated");
  if (!table) return;
  const tick = () => refresh(table, updated).catch(() => { updated.textContent = "not updated"; });
  setInterval(tick, EVERY_MS);
});
