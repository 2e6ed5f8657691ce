// The device page's live parts: log lines as they arrive (with filters)
// and app states, both read from the admin API with the session cookie.
(function () {
  const root = document.getElementById("device");
  if (!root) return;
  const uuid = root.dataset.uuid;
  const api = "/api/v1/devices/" + encodeURIComponent(uuid);
  const body = document.querySelector("#logs tbody");
  const severity = document.getElementById("log-severity");
  const contains = document.getElementById("log-contains");
  let after = 0;
  function utc(ms) {
    return new Date(ms).toISOString().replace("T", " ").replace("Z", "");
  }
  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
  }
  async function pollLogs() {
    const q = new URLSearchParams({ after: String(after), limit: "200" });
    if (severity.value) q.set("severity", severity.value);
    if (contains.value) q.set("contains", contains.value);
    try {
      const resp = await fetch(api + "/logs?" + q, { credentials: "same-origin" });
      if (resp.ok) {
        for (const line of await resp.json()) {
          after = Math.max(after, line.id);
          const row = document.createElement("tr");
          cell(row, utc(line.ts_ms));
          cell(row, line.severity);
          cell(row, line.source);
          cell(row, line.content);
          body.appendChild(row);
        }
        while (body.rows.length > 500) body.deleteRow(0);
      }
    } catch (e) { /* the next poll retries */ }
  }
  function restartLogs() {
    after = 0;
    body.replaceChildren();
    pollLogs();
  }
  severity.addEventListener("change", restartLogs);
  contains.addEventListener("input", restartLogs);
  async function pollApps() {
    try {
      const resp = await fetch(api + "/info", { credentials: "same-origin" });
      if (!resp.ok) return;
      for (const rec of await resp.json()) {
        const app = rec.info && rec.info.ainfo;
        if (!app || !app.AppName) continue;
        const badge = document.querySelector('[data-app="' + CSS.escape(app.AppName) + '"] .state');
        if (!badge) continue;
        const state = app.state || "INVALID";
        badge.textContent = state;
        badge.className = "state st-" + state;
      }
    } catch (e) { /* the next poll retries */ }
  }
  pollLogs();
  setInterval(pollLogs, 2000);
  setInterval(pollApps, 2000);
})();
