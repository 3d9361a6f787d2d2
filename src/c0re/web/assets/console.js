// The hive's web console: the page's only script (no library, no CDN; served by the core).
//
// - The live stream: an EventSource on body[data-stream]; each `pane` event carries one pane's
//   markup, which replaces the element with the same id (focus, typed text and scroll kept).
//   The browser reconnects by itself after a drop. When the stream stops for good (a `gone`
//   event: the agent left; or the browser gives up: a 401 or 503) a toast that stays says
//   so and body[data-live] is "off". The stream is closed while the tab is hidden
//   (visibilitychange) and reopened when it is shown.
// - Elapsed times: every [data-since-ms] element shows the time since then, each second.
// - Forms (form.act): posted with fetch (the form urlencoded; the session's CSRF token, from
//   the page's meta csrf-token, in the X-CSRF-Token header); those with data-confirm ask first
//   in #confirm; the button spins (.busy) while the post runs; the JSON answer ({ok, message})
//   is a toast in #toasts.
// - Keys: 1-5 switch tabs (nav#tabs), Esc closes the dialog (as "no").
"use strict";
(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  // ---- elapsed times ----
  function elapsed(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }
  function tick() {
    const now = Date.now();
    for (const el of $$("[data-since-ms]")) {
      const since = Number(el.dataset.sinceMs);
      if (Number.isFinite(since)) el.textContent = elapsed(now - since);
    }
  }

  // ---- tabs ----
  const tabLinks = () => $$("#tabs a[href^='#']");
  function showTab() {
    const links = tabLinks();
    if (links.length === 0) return;
    const want = location.hash.slice(1);
    const current = links.some((a) => a.hash.slice(1) === want) ? want : links[0].hash.slice(1);
    for (const a of links) {
      const id = a.hash.slice(1);
      const on = id === current;
      a.classList.toggle("active", on);
      a.setAttribute("aria-selected", on ? "true" : "false");
      const section = document.getElementById(id);
      if (section) section.hidden = !on;
    }
  }

  // ---- live panes ----
  // What the operator was doing inside a pane, to carry over to its new markup.
  function keyOf(el, root) {
    if (el.id) return `#${el.id}`;
    const form = el.closest("form");
    const where = form ? form.getAttribute("action") || "" : "";
    if (el.name) return `${where}|${el.name}`;
    return `${el.tagName}:${$$(el.tagName, root).indexOf(el)}`;
  }
  function find(root, key) {
    if (key.startsWith("#")) {
      return root.id === key.slice(1) ? root : root.querySelector(`[id="${CSS.escape(key.slice(1))}"]`);
    }
    const bar = key.indexOf("|");
    if (bar >= 0) {
      const where = key.slice(0, bar), name = key.slice(bar + 1);
      return $$(`[name="${CSS.escape(name)}"]`, root).find((el) => {
        const f = el.closest("form");
        return (f ? f.getAttribute("action") || "" : "") === where;
      }) || null;
    }
    const [tag, i] = key.split(":");
    return $$(tag, root)[Number(i)] || null;
  }
  function replacePane(html) {
    const tpl = document.createElement("template");
    tpl.innerHTML = html.trim();
    const fresh = tpl.content.firstElementChild;
    if (!fresh || !fresh.id) return;
    const old = document.getElementById(fresh.id);
    if (!old) return;
    const typed = $$("input[type=text], input:not([type]), textarea", old)
      .filter((el) => el.value !== "")
      .map((el) => [keyOf(el, old), el.value]);
    const scrolled = [old, ...$$("*", old)]
      .filter((el) => el.scrollHeight > el.clientHeight + 1)
      .map((el) => [keyOf(el, old), el.scrollTop, el.scrollTop + el.clientHeight >= el.scrollHeight - 2]);
    const active = old.contains(document.activeElement) ? document.activeElement : null;
    const focus = active && keyOf(active, old);
    const sel = active && "selectionStart" in active ? [active.selectionStart, active.selectionEnd] : null;
    old.replaceWith(fresh);
    for (const [k, v] of typed) {
      const el = find(fresh, k);
      if (el && el.value === "") el.value = v;
    }
    for (const [k, top, atEnd] of scrolled) {
      const el = find(fresh, k);
      if (el) el.scrollTop = atEnd ? el.scrollHeight : top;
    }
    if (focus) {
      const el = find(fresh, focus);
      if (el) {
        el.focus({ preventScroll: true });
        if (sel && "setSelectionRange" in el) {
          try { el.setSelectionRange(sel[0], sel[1]); } catch (_) { /* not a text field */ }
        }
      }
    }
    showTab();
    tick();
  }
  // The stream is open only while the tab is shown (a hidden tab holds none of the browser's
  // few connections to the console); once it stops for good (the session ended, the hive
  // refused it, or its agent left) the page says so and stays as it is.
  let es = null;
  let stopped = false;
  function stopLive(why) {
    if (stopped) return;
    stopped = true;
    if (es) { es.close(); es = null; }
    document.body.dataset.live = "off";
    if (why) toast(false, why);
    toast(false, "live updates stopped: reload the page (or log in again)", true);
  }
  function stream() {
    const url = document.body.dataset.stream;
    if (!url || !window.EventSource || stopped || es) return;
    const source = new EventSource(url);
    es = source;
    source.addEventListener("open", () => { document.body.dataset.live = "on"; });
    source.addEventListener("error", () => {
      if (es !== source) return; // closed on purpose (the tab was hidden)
      // CONNECTING: the browser retries by itself. CLOSED: a 401, a 503, not a stream: it
      // will not come back.
      if (source.readyState === EventSource.CLOSED) stopLive();
      else document.body.dataset.live = "retrying";
    });
    source.addEventListener("pane", (e) => replacePane(e.data));
    source.addEventListener("gone", () => {
      stopLive("this page is gone: its agent is no longer in the hive");
    });
  }
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      if (es) { const old = es; es = null; old.close(); }
    } else {
      stream();
    }
  });

  // ---- toasts ----
  // A toast; a `persistent` one stays until the page is reloaded.
  function toast(ok, message, persistent = false) {
    const box = $("#toasts");
    if (!box) return;
    const t = document.createElement("div");
    t.className = `toast ${ok ? "ok" : "err"}${persistent ? " persistent" : ""}`;
    t.setAttribute("role", ok ? "status" : "alert");
    t.textContent = message;
    box.appendChild(t);
    if (persistent) return;
    setTimeout(() => t.classList.add("fading"), 6000);
    setTimeout(() => t.remove(), 6600);
  }

  // ---- the confirm dialog ----
  function confirmFirst(text) {
    const dlg = $("#confirm");
    if (!dlg || typeof dlg.showModal !== "function") return Promise.resolve(window.confirm(text));
    return new Promise((resolve) => {
      const yes = $("#confirm-yes", dlg), no = $("#confirm-no", dlg);
      $("#confirm-text", dlg).textContent = text;
      const done = (answer) => {
        yes.removeEventListener("click", onYes);
        no.removeEventListener("click", onNo);
        dlg.removeEventListener("cancel", onCancel);
        if (dlg.open) dlg.close();
        resolve(answer);
      };
      const onYes = (e) => { e.preventDefault(); done(true); };
      const onNo = (e) => { e.preventDefault(); done(false); };
      const onCancel = (e) => { e.preventDefault(); done(false); }; // Esc
      yes.addEventListener("click", onYes);
      no.addEventListener("click", onNo);
      dlg.addEventListener("cancel", onCancel);
      dlg.showModal();
      no.focus(); // Enter answers "no" unless the operator moves to "yes"
    });
  }

  // ---- forms ----
  const csrfOf = (form) =>
    (form.elements.namedItem("csrf") || {}).value || ($("meta[name=csrf-token]") || {}).content || "";
  async function post(form, button, body) {
    if (button) { button.disabled = true; button.classList.add("busy"); }
    let outcome;
    try {
      const resp = await fetch(form.action, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/x-www-form-urlencoded",
          "X-CSRF-Token": csrfOf(form),
          Accept: "application/json",
        },
        body,
      });
      try {
        outcome = await resp.json();
      } catch (_) {
        outcome = { ok: false, message: `${resp.status} ${resp.statusText}` };
      }
      if (resp.status === 401) outcome.message = "not logged in: run `hive console` for a new link";
    } catch (e) {
      outcome = { ok: false, message: `the hive did not answer: ${e.message}` };
    } finally {
      if (button) { button.disabled = false; button.classList.remove("busy"); }
    }
    toast(Boolean(outcome.ok), String(outcome.message || (outcome.ok ? "done" : "failed")));
    if (outcome.ok) {
      for (const el of $$("input[type=text], input:not([type]), textarea", form)) el.value = "";
    }
  }
  document.addEventListener("submit", async (e) => {
    const form = e.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains("act")) return;
    e.preventDefault();
    const button = e.submitter || $("button[type=submit], button:not([type])", form);
    if (button && button.disabled) return;
    // Read now: the live stream may replace the form while the dialog is open.
    const body = new URLSearchParams(new FormData(form, e.submitter || undefined));
    const question = form.dataset.confirm;
    if (question && !(await confirmFirst(question))) return;
    post(form, button, body);
  });

  // ---- keys ----
  document.addEventListener("keydown", (e) => {
    if (e.altKey || e.ctrlKey || e.metaKey || e.shiftKey) return;
    const t = e.target;
    if (t && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName))) return;
    if ($("dialog[open]")) return;
    if (e.key >= "1" && e.key <= "5") {
      const link = tabLinks()[Number(e.key) - 1];
      if (link) { e.preventDefault(); switchTo(link.hash); }
    }
  });
  // A tab is shown in place: the page does not jump to the section's anchor.
  function switchTo(hash) {
    history.replaceState(null, "", hash);
    showTab();
  }
  document.addEventListener("click", (e) => {
    const a = e.target instanceof Element ? e.target.closest("#tabs a[href^='#']") : null;
    if (!a || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey) return;
    e.preventDefault();
    switchTo(a.hash);
  });

  function start() {
    showTab();
    tick();
    setInterval(tick, 1000);
    stream();
  }
  window.addEventListener("hashchange", showTab);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
