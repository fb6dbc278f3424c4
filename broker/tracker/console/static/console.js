// Live updates for the console's lists (no library; the pages work without it).
// One server-sent-events stream says which handovers changed (the event id is the
// tracker's change number, so a reconnect resumes where it left off); the page then
// fetches its own list again, at most twice a second. "Pause" keeps the rows on
// screen until resumed.
(() => {
  "use strict";
  const live = document.querySelector("[data-live]");
  const status = document.getElementById("live-status");
  const toggle = document.getElementById("live-toggle");
  if (!live || !status || !toggle || !("EventSource" in window)) return;
  let paused = false;
  let stale = false;
  let timer = null;
  let changes = 0;

  const fragment = () => {
    const url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    return url.toString();
  };

  const refresh = async () => {
    timer = null;
    if (paused || !stale) return;
    stale = false;
    try {
      const answer = await fetch(fragment(), { credentials: "same-origin" });
      if (answer.status === 200) {
        live.innerHTML = await answer.text();
        live.dispatchEvent(new CustomEvent("crb:updated", { bubbles: true }));
      } else if (answer.status === 303 || answer.redirected) {
        window.location.reload();
      }
    } catch (err) {
      stale = true;
      status.textContent = "offline";
    }
  };

  const schedule = () => {
    if (!paused && stale && timer === null) timer = window.setTimeout(refresh, 500);
  };

  const events = new EventSource(live.dataset.events);
  events.addEventListener("open", () => { status.textContent = "live"; });
  events.addEventListener("error", () => { status.textContent = "reconnecting…"; });
  events.addEventListener("handover", () => {
    changes += 1;
    stale = true;
    if (paused) status.textContent = `paused (${changes} changes)`;
    schedule();
  });

  toggle.addEventListener("click", () => {
    paused = !paused;
    toggle.textContent = paused ? "Resume" : "Pause";
    toggle.setAttribute("aria-pressed", String(paused));
    status.textContent = paused ? `paused (${changes} changes)` : "live";
    if (!paused) { changes = 0; schedule(); }
  });
})();
