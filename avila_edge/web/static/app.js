// The avila-edge console: a hash router, the session, and the shell around the pages.

import { ApiError, LiveStream, api } from "./api.js";
import { h, message } from "./dom.js";
import { PAGES } from "./pages.js";

const ROLES = { viewer: 0, operator: 1, admin: 2 };

const session = {
  me: null,
  live: new LiveStream(),
  site: null,
  can(role) {
    return this.me !== null && (ROLES[this.me.role] ?? -1) >= ROLES[role];
  },
};

let generation = 0;
let cleanups = [];

function route() {
  const parts = (location.hash || "#/").replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  return { name: parts[0] || "overview", params: parts.slice(1) };
}

function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

function shell() {
  const nav = document.querySelector("[data-test=nav]");
  const signedIn = session.me !== null;
  document.body.classList.toggle("signed-in", signedIn);
  nav.hidden = !signedIn;
  document.querySelector("[data-test=menu-toggle]").hidden = !signedIn;
  document.querySelector("[data-test=user-name]").textContent = signedIn ? session.me.user : "";
  document.querySelector("[data-test=user-role]").textContent = signedIn ? session.me.role : "";
  document.querySelector("[data-test=logout]").hidden = !signedIn;
  document.querySelector("[data-test=site-name]").textContent = session.site ? session.site.name || session.site.id : "";
  const { name } = route();
  for (const a of nav.querySelectorAll("a")) a.classList.toggle("current", a.dataset.route === name);
}

async function loadMe() {
  try {
    session.me = await api("GET", "/api/me");
  } catch (exc) {
    if (!(exc instanceof ApiError) || exc.status !== 401) throw exc;
    session.me = null;
  }
  if (session.me) {
    session.live.start();
    try {
      session.site = (await api("GET", "/api/site")).site;
    } catch {
      session.site = null;
    }
  } else {
    session.live.stop();
    session.site = null;
  }
}

async function render() {
  const mine = ++generation;
  for (const fn of cleanups) fn();
  cleanups = [];
  const view = document.getElementById("view");
  let { name, params } = route();
  if (name !== "setup" && name !== "login" && session.me === null) {
    let needed = false;
    try {
      needed = (await api("GET", "/api/setup")).needed;
    } catch {
      needed = false;
    }
    if (mine !== generation) return;
    name = needed ? "setup" : "login";
    history.replaceState(null, "", `#/${name}`);
  }
  shell();
  const page = PAGES[name];
  if (page === undefined) {
    view.replaceChildren(h("h1", {}, "Not found"), message(`There is no page "${name}".`));
    return;
  }
  view.setAttribute("data-page", name);
  view.setAttribute("aria-busy", "true");
  const ctx = {
    session,
    go,
    signedIn: async () => {
      await loadMe();
      go("#/");
    },
    stillHere: () => mine === generation,
    onLeave: (fn) => cleanups.push(fn),
    live: (fn) => cleanups.push(session.live.listen(fn)),
  };
  try {
    const node = await page(ctx, ...params);
    if (mine !== generation) return;
    view.replaceChildren(node);
  } catch (exc) {
    if (mine !== generation) return;
    if (exc instanceof ApiError && exc.status === 401) {
      session.me = null;
      session.live.stop();
      go("#/login");
      return;
    }
    view.replaceChildren(h("h1", {}, "Something went wrong"), message(exc.message || String(exc)));
  } finally {
    if (mine === generation) view.setAttribute("aria-busy", "false");
  }
}

async function logout() {
  try {
    await api("POST", "/api/logout");
  } finally {
    session.me = null;
    session.live.stop();
    go("#/login");
  }
}

function start() {
  document.querySelector("[data-test=logout]").addEventListener("click", logout);
  const toggle = document.querySelector("[data-test=menu-toggle]");
  toggle.addEventListener("click", () => {
    const open = document.body.classList.toggle("menu-open");
    toggle.setAttribute("aria-expanded", String(open));
  });
  document.querySelector("[data-test=nav]").addEventListener("click", () => document.body.classList.remove("menu-open"));
  const state = document.querySelector("[data-test=live-state]");
  session.live.onstate = (up) => {
    state.textContent = up ? "live" : "offline";
    state.className = up ? "live up" : "live down";
  };
  window.addEventListener("hashchange", render);
  loadMe()
    .catch(() => {})
    .then(render);
}

start();
