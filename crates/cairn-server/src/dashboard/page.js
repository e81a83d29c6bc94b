// Live updates for the dashboard: watch every ref, and on a change (after
// a 200 ms quiet period) fetch /v1/dashboard and re-render <main>. The
// layout mirrors html.rs; every store string goes through esc().
"use strict";
(function () {
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const row = (cells) => "<tr>" + cells.map(([cls, text]) =>
    `<td class="${esc(cls)}">${esc(text)}</td>`).join("") + "</tr>";
  const errorRow = (name, error, span) =>
    `<tr class="bad"><td>${esc(name)}</td><td colspan="${span - 1}">${esc(error)}</td></tr>`;
  const table = (title, heads, rows) =>
    `<h3>${esc(title)}</h3><table><thead><tr>` +
    heads.map((h) => `<th>${esc(h)}</th>`).join("") + "</tr></thead><tbody>" +
    (rows.length ? rows.join("") :
      `<tr><td colspan="${heads.length}" class="empty">none</td></tr>`) +
    "</tbody></table>";

  const channelRow = (c) => c.error ? errorRow(c.name, c.error, 6) : row([
    ["name", c.name], ["digest", c.release], ["version", c.version],
    ["num", c.sequence], ["digest", c.signers.join(", ")],
    [c.expired ? "bad" : "", c.expires]]);
  const releaseRow = (r) => r.error ? errorRow("?", r.error, 4) : row([
    ["digest", r.digest], ["version", r.version], ["digest", r.provenance], ["", r.created]]);
  const memberRow = (m) => m.error ? errorRow(m.agent, m.error, 7) : row([
    ["name", m.agent], ["digest", m.release], ["num", m.sequence], ["", m.state],
    [m.health === "" || m.health === "healthy" ? "" : "bad", m.health], ["", m.heartbeat],
    [m.last_error ? "bad" : "", m.last_error]]);

  function rollout(r) {
    if (!r) return "";
    const pct = r.total ? Math.floor(r.done * 100 / r.total) : 0;
    return `<div class="rollout">rollout to <span class="digest">${esc(r.target)}</span> · ` +
      `${esc(r.strategy)} · phase ${esc(r.phase)} · slots ${r.slots} · failures ${r.failures} · ` +
      `${r.done}/${r.total} on target <progress max="100" value="${pct}"></progress></div>`;
  }
  const fleet = (set) => table("Fleet " + set.name,
    ["agent", "release", "seq", "state", "health", "heartbeat", "last error"],
    set.members.map(memberRow)) + rollout(set.rollout);
  const service = (s) => `<section><h2>${esc(s.name)}</h2>` +
    table("Channels", ["channel", "release", "version", "seq", "signed by", "expires"],
      s.channels.map(channelRow)) +
    table("Recent releases", ["release", "version", "provenance", "created"],
      s.releases.map(releaseRow)) +
    s.sets.map(fleet).join("") + "</section>";

  function render(summary) {
    document.getElementById("summary").innerHTML = summary.services.length
      ? summary.services.map(service).join("")
      : '<p class="empty">No services yet: publish a release.</p>';
    document.getElementById("generated").textContent = summary.generated;
  }

  let timer = null;
  async function refresh() {
    timer = null;
    try {
      const response = await fetch("/v1/dashboard", { cache: "no-store" });
      if (response.ok) render(await response.json());
    } catch (e) { /* the watch reconnects and triggers another refresh */ }
  }
  const soon = () => { if (timer === null) timer = setTimeout(refresh, 200); };

  const live = document.getElementById("live");
  const watch = new EventSource("/v1/watch?prefix=");
  watch.onopen = () => { live.textContent = "live"; live.className = ""; };
  watch.onerror = () => { live.textContent = "reconnecting…"; live.className = "off"; };
  // `hello` and `reset` also refresh: changes made before the watch opened
  // (or lost to a reconnect) are then picked up too.
  for (const kind of ["ref", "hello", "reset"]) watch.addEventListener(kind, soon);
})();
