// The console's pages. Each is `async (ctx, ...params) => Node`; data goes into the DOM as text only.

import { ApiError, api, point } from "./api.js";
import { LineChart } from "./chart.js";
import { fmtBytes, fmtTime, fmtValue, h, kvTable, message, quality, table } from "./dom.js";

const RANGES = [
  ["5m", "last 5 minutes", 5 * 60],
  ["15m", "last 15 minutes", 15 * 60],
  ["1h", "last hour", 3600],
  ["6h", "last 6 hours", 6 * 3600],
  ["24h", "last 24 hours", 86400],
  ["7d", "last 7 days", 7 * 86400],
];
const BUCKETS = 120;
const NEEDS_ACK = new Set(["active", "cleared_unacknowledged"]);
const ALARM_ACTIVE = new Set(["active", "acknowledged"]);

function errorText(exc) {
  if (exc instanceof ApiError && exc.status === 429) {
    return `${exc.message} (try again in ${exc.retryAfter || "a few"} seconds)`;
  }
  return exc.message || String(exc);
}

function field(label, input) {
  return h("label", { class: "field" }, h("span", {}, label), input);
}

// -- setup and login ----------------------------------------------------------------------------

async function setup(ctx) {
  const status = await api("GET", "/api/setup");
  if (!status.needed) {
    return h("section", { class: "narrow" }, h("h1", {}, "Setup"), message("Setup is done. Log in.", "info", "setup-done"),
      h("a", { href: "#/login", test: "to-login" }, "Log in"));
  }
  const token = h("input", { name: "token", required: true, autocomplete: "off", test: "setup-token" });
  const username = h("input", { name: "username", required: true, autocomplete: "username", test: "setup-username" });
  const password = h("input", { name: "password", type: "password", required: true, minlength: 8, autocomplete: "new-password", test: "setup-password" });
  const out = h("div", { test: "setup-result" });
  const form = h("form", { class: "card narrow", test: "setup-form" },
    h("p", {}, "First start: enter the one-time setup token from the gateway's log or console, and create the administrator."),
    field("Setup token", token), field("Administrator user name", username), field("Password", password),
    h("button", { type: "submit", test: "setup-submit" }, "Create administrator"), out);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    out.replaceChildren();
    try {
      await api("POST", "/api/setup", { token: token.value.trim(), username: username.value, password: password.value });
      await ctx.signedIn();
    } catch (exc) {
      out.replaceChildren(message(errorText(exc)));
    }
  });
  return h("section", {}, h("h1", {}, "Set up this gateway"), form);
}

async function login(ctx) {
  const status = await api("GET", "/api/setup").catch(() => ({ needed: false }));
  if (status.needed) {
    ctx.go("#/setup");
    return h("p", {}, "This gateway is not set up yet.");
  }
  const username = h("input", { name: "username", required: true, autocomplete: "username", test: "login-username" });
  const password = h("input", { name: "password", type: "password", required: true, autocomplete: "current-password", test: "login-password" });
  const out = h("div", { test: "login-result" });
  const form = h("form", { class: "card narrow", test: "login-form" },
    field("User name", username), field("Password", password),
    h("button", { type: "submit", test: "login-submit" }, "Log in"), out);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    out.replaceChildren();
    try {
      await api("POST", "/api/login", { username: username.value, password: password.value });
      await ctx.signedIn();
    } catch (exc) {
      out.replaceChildren(message(exc instanceof ApiError && exc.status === 401 ? "Wrong user name or password." : errorText(exc)));
    }
  });
  return h("section", {}, h("h1", {}, "Log in"), form);
}

// -- site overview ------------------------------------------------------------------------------

function keyValues(snapshot, limit) {
  const rows = [];
  for (const [name, r] of Object.entries(snapshot.reported || {})) rows.push([name, r]);
  for (const [name, r] of Object.entries(snapshot.derived || {})) rows.push([name, r]);
  return rows.slice(0, limit);
}

function activeAlarms(snapshot) {
  return Object.values(snapshot.alarms || {}).filter((a) => ALARM_ACTIVE.has(a.state)).length;
}

function assetCard(asset, snapshot) {
  const card = h("article", { class: "card asset", test: "asset-card", "data-asset": asset.id });
  const fill = (snap) => {
    const count = activeAlarms(snap);
    const all = [...Object.values(snap.reported || {}), ...Object.values(snap.derived || {})];
    const worst = all.reduce(
      (w, r) => (r.quality === "bad" ? "bad" : r.quality === "uncertain" && w !== "bad" ? "uncertain" : w), "good");
    card.dataset.quality = all.length ? worst : "none";
    card.replaceChildren(
      h("header", {},
        h("a", { href: `#/asset/${encodeURIComponent(asset.id)}`, test: "asset-link" }, asset.name || asset.id),
        h("span", { class: `badge ${count ? "alarm" : "ok"}`, test: "asset-alarm-count", title: "active alarms" }, String(count))),
      h("p", { class: "muted" }, [asset.type, asset.parent ? `in ${asset.parent}` : ""].filter(Boolean).join(" · ")),
      h("dl", {}, keyValues(snap, 6).map(([name, r]) => [
        h("dt", {}, name),
        h("dd", { test: "asset-value", "data-name": name, class: `q-text-${r.quality}` }, fmtValue(r.value, r.unit)),
      ])),
    );
  };
  fill(snapshot || { reported: {}, alarms: {} });
  card.update = fill;
  return card;
}

async function overview(ctx) {
  const [site, twins] = await Promise.all([api("GET", "/api/site"), api("GET", "/api/twins")]);
  const snaps = Object.fromEntries(twins.assets.map((s) => [s.asset, s]));
  const cards = {};
  const grid = h("div", { class: "grid", test: "assets" });
  for (const asset of site.assets) {
    cards[asset.id] = assetCard(asset, snaps[asset.id]);
    grid.append(cards[asset.id]);
  }
  const total = h("span", { test: "site-alarm-count" }, String(twins.assets.reduce((n, s) => n + activeAlarms(s), 0)));
  ctx.live((kind, data) => {
    if (kind !== "twin" || !cards[data.asset]) return;
    snaps[data.asset] = data;
    cards[data.asset].update(data);
    total.textContent = String(Object.values(snaps).reduce((n, s) => n + activeAlarms(s), 0));
  });
  return h("section", {},
    h("h1", { test: "site-title" }, site.site.name || site.site.id),
    h("p", {}, "Active alarms: ", total, " · ", h("a", { href: "#/alarms" }, "alarms and anomalies")),
    grid);
}

// -- one asset ----------------------------------------------------------------------------------

function reportedTable(snapshot, which) {
  const rows = Object.entries(snapshot[which] || {}).map(([name, r]) =>
    h("tr", { test: `${which}-row`, "data-name": name },
      h("th", {}, name),
      h("td", { test: `${which}-value`, class: "num" }, fmtValue(r.value, r.unit)),
      h("td", {}, quality(r.quality, r.reason)),
      h("td", { class: "muted when" }, fmtTime(r.ts_source ?? r.ts_gateway))));
  return h("table", { class: "values", test: `${which}-table` },
    h("thead", {}, h("tr", {}, h("th", {}, "name"), h("th", { class: "num" }, "value"), h("th", {}, "quality"), h("th", { class: "when" }, "time"))),
    h("tbody", {}, rows));
}

function desiredTable(snapshot) {
  const rows = Object.entries(snapshot.desired || {}).map(([name, d]) =>
    h("tr", { test: "desired-row", "data-name": name, "data-status": d.status },
      h("th", {}, name),
      h("td", { test: "desired-value", class: "num" }, fmtValue(d.value)),
      h("td", {}, h("span", { class: `status s-${d.status}`, test: "desired-status", title: d.reason || d.status }, d.status)),
      h("td", { class: "muted" }, `v${d.version}`),
      h("td", { class: "muted" }, d.requested_by || "")));
  if (rows.length === 0) return h("p", { class: "muted", test: "desired-none" }, "No desired values yet.");
  return h("table", { class: "list", test: "desired-table" }, h("tbody", {}, rows));
}

function parseValue(text, current) {
  const t = text.trim();
  if (typeof current === "boolean" || t === "true" || t === "false") return t === "true";
  if (t !== "" && !Number.isNaN(Number(t))) return Number(t);
  return t;
}

function desiredForm(ctx, asset, names, getSnapshot, out, requested) {
  const name = h("select", { test: "desired-name", name: "name" }, names.map((n) => h("option", { value: n }, n)));
  const value = h("input", { test: "desired-value-input", name: "value", required: true, inputmode: "decimal", autocomplete: "off" });
  const form = h("form", { class: "inline", test: "desired-form" },
    field("Property", name), field("Value", value), h("button", { type: "submit", test: "desired-submit" }, "Set"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const snap = getSnapshot();
    const current = snap.desired?.[name.value];
    const reported = snap.reported?.[name.value];
    const body = { value: parseValue(value.value, reported?.value), version: current ? current.version : 0 };
    out.replaceChildren();
    try {
      const r = await api("PUT", `/api/twins/${encodeURIComponent(asset)}/desired/${encodeURIComponent(name.value)}`, body);
      out.replaceChildren(message(`Requested ${name.value} = ${fmtValue(body.value)} (version ${r.version}): pending until a reading from the device confirms it.`, "info", "desired-accepted"));
      requested(name.value, r.version);
    } catch (exc) {
      const hint = exc instanceof ApiError && exc.status === 409 ? " Someone changed it meanwhile: check the value and try again." : "";
      out.replaceChildren(message(errorText(exc) + hint, "error", "desired-error"));
    }
  });
  return form;
}

function alarmRows(ctx, alarms, after) {
  const canAck = ctx.session.can("operator");
  return alarms.map((a) => {
    const ack = canAck && NEEDS_ACK.has(a.state)
      ? h("button", {
          class: "small", test: "alarm-ack",
          onclick: async (e) => {
            e.target.disabled = true;
            try {
              await api("POST", `/api/alarms/${encodeURIComponent(a.asset)}/${encodeURIComponent(a.id)}/ack`);
              await after();
            } catch (exc) {
              e.target.replaceWith(message(errorText(exc), "error", "alarm-error"));
            }
          },
        }, "Acknowledge")
      : null;
    return h("tr", { test: "alarm-row", "data-asset": a.asset, "data-alarm": a.id, "data-state": a.state, class: `alarm-${a.state}` },
      h("td", { "data-label": "asset" }, h("a", { href: `#/asset/${encodeURIComponent(a.asset)}` }, a.asset)),
      h("td", { "data-label": "alarm" }, a.id),
      h("td", { "data-label": "state" }, h("span", { class: `status a-${a.state}`, test: "alarm-state" }, a.state)),
      h("td", { "data-label": "severity" }, fmtValue(a.severity ?? "")),
      h("td", { "data-label": "message" }, a.message || ""),
      h("td", { "data-label": "since", class: "muted" }, a.since_ns ? fmtTime(a.since_ns) : ""),
      h("td", {}, ack));
  });
}

function alarmTable(ctx, alarms, after, test) {
  if (alarms.length === 0) return h("p", { class: "muted", test: `${test}-none` }, "No alarms configured.");
  return h("table", { class: "list", test },
    h("thead", {}, h("tr", {}, ["asset", "alarm", "state", "severity", "message", "since", ""].map((t) => h("th", {}, t)))),
    h("tbody", {}, alarmRows(ctx, alarms, after)));
}

function alarmStates(snapshot) {
  return Object.entries(snapshot.alarms || {}).map(([k, a]) => [k, a.state]);
}

function shortName(asset, id) {
  return id.startsWith(`${asset}/`) ? id.slice(asset.length + 1) : id;
}

async function assetPage(ctx, id) {
  const [site, first] = await Promise.all([api("GET", "/api/site"), api("GET", `/api/twins/${encodeURIComponent(id)}`)]);
  const asset = site.assets.find((a) => a.id === id) || { id, name: id, points: [] };
  let snapshot = first;

  const reported = h("div", {});
  const derived = h("div", {});
  const desired = h("div", {});
  const alarms = h("div", {});
  const refreshAlarms = async () => {
    const all = (await api("GET", "/api/alarms")).alarms.filter((a) => a.asset === id);
    const known = new Set(all.map((a) => shortName(id, a.id)));
    for (const [aid, a] of Object.entries(snapshot.alarms || {})) {
      if (!known.has(aid)) all.push({ asset: id, id: aid, state: a.state });
    }
    for (const a of all) a.id = shortName(id, a.id);
    if (ctx.stillHere()) alarms.replaceChildren(alarmTable(ctx, all, refreshAlarms, "asset-alarms"));
  };
  const fill = () => {
    reported.replaceChildren(reportedTable(snapshot, "reported"));
    derived.replaceChildren(Object.keys(snapshot.derived || {}).length ? reportedTable(snapshot, "derived") : h("p", { class: "muted" }, "None."));
    desired.replaceChildren(desiredTable(snapshot));
  };
  fill();
  await refreshAlarms();

  const setOut = h("div", { test: "desired-result" });
  let pending = null;
  const outcome = () => {
    const d = pending && snapshot.desired?.[pending.name];
    if (d && d.version === pending.version && d.status !== "pending") {
      setOut.replaceChildren(d.status === "confirmed"
        ? message(`${pending.name} = ${fmtValue(d.value)} confirmed by the device.`, "ok", "desired-outcome")
        : message(`${pending.name} = ${fmtValue(d.value)} failed: ${d.reason || "no reason given"}`, "error", "desired-outcome"));
      pending = null;
    }
  };

  // history chart
  const values = Object.entries({ ...snapshot.reported, ...snapshot.derived });
  const numeric = values.filter(([, r]) => typeof r.value === "number").map(([n]) => n)
    .concat(values.filter(([, r]) => typeof r.value === "boolean").map(([n]) => n));
  const points = (asset.points || []).map((p) => (typeof p === "string" ? p : p.id));
  const chartNames = numeric.length ? numeric : points.map((p) => shortName(id, p));
  const pointSelect = h("select", { test: "history-point" }, chartNames.map((n) => h("option", { value: n }, n)));
  const rangeSelect = h("select", { test: "history-range" }, RANGES.map(([v, label]) => h("option", { value: v }, label)));
  const chartBox = h("div", { class: "chart-box" });
  const chart = new LineChart(chartBox);
  ctx.onLeave(() => chart.close());
  const chartNote = h("p", { class: "muted", test: "history-note" });
  const loadHistory = async () => {
    const name = pointSelect.value;
    if (!name) return;
    const seconds = RANGES.find(([v]) => v === rangeSelect.value)[2];
    const toNs = Date.now() * 1e6;
    const fromNs = toNs - seconds * 1e9;
    chart.unit = snapshot.reported?.[name]?.unit || "";
    if (snapshot.derived?.[name] && !snapshot.reported?.[name]) {
      chart.setBuckets([], fromNs, toNs);
      chartNote.textContent = "Derived values have no stored history; live values are drawn as they arrive.";
      return;
    }
    try {
      const r = await api("GET", `/api/points/${point(`${id}/${name}`)}/history?from=${fromNs}&to=${toNs}&buckets=${BUCKETS}`);
      if (!ctx.stillHere()) return;
      chart.setBuckets(r.buckets || [], fromNs, toNs);
      const n = (r.buckets || []).reduce((s, b) => s + b.count, 0);
      chartNote.textContent = `${n} readings in ${(r.buckets || []).length} buckets: band = min to max, line = mean; live readings are added in colour.`;
      chartBox.dataset.loaded = "true";
    } catch (exc) {
      chartNote.textContent = errorText(exc);
    }
  };
  pointSelect.addEventListener("change", loadHistory);
  rangeSelect.addEventListener("change", loadHistory);
  await loadHistory();

  ctx.live((kind, data) => {
    if (kind === "twin" && data.asset === id) {
      const alarmsChanged = JSON.stringify(alarmStates(data)) !== JSON.stringify(alarmStates(snapshot));
      snapshot = data;
      fill();
      const r = data.reported?.[pointSelect.value] || data.derived?.[pointSelect.value];
      if (r && r.quality !== "bad") chart.addPoint(r.ts_gateway ?? Date.now() * 1e6, r.value);
      if (alarmsChanged) refreshAlarms().catch(() => {});
      outcome();
    } else if (kind === "event" && data.kind === "alarm") {
      refreshAlarms().catch(() => {});
    }
  });

  const writable = Array.isArray(asset.writable) ? asset.writable
    : (asset.points || []).filter((p) => typeof p === "object" && p.writable).map((p) => shortName(id, p.id));
  const setNames = writable.length ? writable : Object.keys(snapshot.reported || {});
  const setControls = ctx.session.can("operator") && setNames.length
    ? [desiredForm(ctx, id, setNames, () => snapshot, setOut, (name, version) => { pending = { name, version }; outcome(); }), setOut]
    : [];

  const maintenance = snapshot.maintenance
    ? h("section", { class: "card", test: "maintenance" }, h("h2", {}, "Maintenance"), kvTable(snapshot.maintenance, "maintenance-table"))
    : null;
  const anomaly = snapshot.anomaly && Object.keys(snapshot.anomaly).length
    ? h("section", { class: "card", test: "anomaly" }, h("h2", {}, "Anomaly"), kvTable(snapshot.anomaly, "anomaly-table"))
    : null;

  return h("section", {},
    h("p", { class: "crumbs" }, h("a", { href: "#/" }, "site"), " / ", asset.parent ? [h("a", { href: `#/asset/${encodeURIComponent(asset.parent)}` }, asset.parent), " / "] : null, id),
    h("h1", { test: "asset-title" }, asset.name || id),
    h("div", { class: "cols" },
      h("section", { class: "card", test: "live-values" }, h("h2", {}, "Live values"), reported),
      h("section", { class: "card" }, h("h2", {}, "Derived"), derived)),
    h("section", { class: "card", test: "history" },
      h("h2", {}, "History"),
      h("div", { class: "inline" }, field("Value", pointSelect), field("Range", rangeSelect)),
      chartBox, chartNote),
    h("section", { class: "card", test: "desired" }, h("h2", {}, "Desired values"), desired, setControls),
    h("section", { class: "card", test: "asset-alarm-section" }, h("h2", {}, "Alarms"), alarms),
    maintenance, anomaly);
}

// -- alarms and anomalies -----------------------------------------------------------------------

// An anomaly's acknowledgement: who acknowledged it, or (for operators) the button that does.
function anomalyAck(ctx, e, after) {
  if (e.acked) return h("span", { test: "anomaly-acked" }, `by ${e.acked_by || "?"}`);
  if (!ctx.session.can("operator")) return h("span", { class: "muted" }, "no");
  return h("button", {
    class: "small", test: "anomaly-ack", "data-seq": String(e.seq),
    onclick: async (ev) => {
      ev.target.disabled = true;
      try {
        await api("POST", `/api/anomalies/${encodeURIComponent(e.seq)}/ack`);
        await after();
      } catch (exc) {
        ev.target.replaceWith(message(errorText(exc), "error", "anomaly-error"));
      }
    },
  }, "Acknowledge");
}

async function alarmsPage(ctx) {
  const alarmsBox = h("div", {});
  const anomaliesBox = h("div", {});
  const refresh = async () => {
    const [alarms, anomalies] = await Promise.all([api("GET", "/api/alarms"), api("GET", "/api/anomalies?limit=100")]);
    if (!ctx.stillHere()) return;
    const list = alarms.alarms.map((a) => ({ ...a, id: shortName(a.asset, a.id) }));
    list.sort((a, b) => Number(NEEDS_ACK.has(b.state) || ALARM_ACTIVE.has(b.state)) - Number(NEEDS_ACK.has(a.state) || ALARM_ACTIVE.has(a.state)));
    alarmsBox.replaceChildren(alarmTable(ctx, list, refresh, "alarms-table"));
    const events = (anomalies.events || []).slice().reverse();
    anomaliesBox.replaceChildren(events.length
      ? table(events, [
          ["seq", "seq"],
          ["ts", "time", (e) => fmtTime(e.ts)],
          ["source", "source"],
          ["attrs", "details", (e) => Object.entries(e.attrs || {}).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ")],
          ["acked", "acknowledged", (e) => anomalyAck(ctx, e, refresh)],
        ], "anomalies-table", () => "anomaly-row")
      : h("p", { class: "muted", test: "anomalies-none" }, "No anomalies recorded."));
  };
  await refresh();
  let timer = null;
  ctx.live((kind, data) => {
    if (kind === "event" && (data.kind === "alarm" || data.kind === "anomaly" || data.kind === "anomaly_ack")) {
      clearTimeout(timer);
      timer = setTimeout(() => refresh().catch(() => {}), 150);
    }
  });
  ctx.onLeave(() => clearTimeout(timer));
  return h("section", {},
    h("h1", {}, "Alarms and anomalies"),
    h("section", { class: "card" }, h("h2", {}, "Alarms"), alarmsBox),
    h("section", { class: "card" }, h("h2", {}, "Anomalies"), anomaliesBox));
}

function leafText(leaf) {
  if (typeof leaf !== "string") return JSON.stringify(leaf, null, 2);
  if (!/^([0-9a-f]{2})+$/i.test(leaf)) return leaf;
  const bytes = new Uint8Array(leaf.match(/../g).map((b) => parseInt(b, 16)));
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return leaf;
  }
}

// -- audit --------------------------------------------------------------------------------------

async function audit(ctx) {
  let cp = null;
  try {
    cp = await api("GET", "/api/audit/checkpoint");
  } catch (exc) {
    if (!(exc instanceof ApiError) || exc.status !== 404) throw exc;
  }
  const points = await api("GET", "/api/points").catch(() => ({ points: [] }));
  const seq = h("input", { type: "number", min: 0, required: true, test: "proof-seq", name: "seq", inputmode: "numeric" });
  const latest = points.points.filter((p) => p.seq !== null && p.seq !== undefined && cp !== null && p.seq < cp.tree_size);
  const choose = h("select", { test: "proof-choose", onchange: (e) => { if (e.target.value) seq.value = e.target.value; } },
    h("option", { value: "" }, "a recent reading…"),
    latest.map((p) => h("option", { value: p.seq }, `${p.id} = ${fmtValue(p.value, p.unit)} (seq ${p.seq})`)));
  const out = h("div", { test: "proof-result" });
  const uploadOut = h("div", { test: "proof-file-result" });
  const upload = h("input", { type: "file", accept: "application/json,.json", test: "proof-file", onchange: async (e) => {
    uploadOut.replaceChildren();
    const file = e.target.files[0];
    if (!file) return;
    try {
      const r = await api("POST", "/api/audit/verify", JSON.parse(await file.text()));
      uploadOut.replaceChildren(r.ok
        ? message(r.reason || "The proof verifies.", "ok", "verify-ok")
        : message(`The proof does not verify: ${r.reason || "no reason given"}`, "error", "verify-failed"));
    } catch (exc) {
      uploadOut.replaceChildren(message(exc instanceof SyntaxError ? `${file.name} is not JSON: ${exc.message}` : errorText(exc), "error", "verify-failed"));
    }
  } });
  const form = h("form", { class: "inline", test: "proof-form" },
    field("Journal seq", seq), field("or choose", choose), h("button", { type: "submit", test: "proof-submit" }, "Get proof"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    out.replaceChildren();
    const n = Number(seq.value);
    try {
      const proof = await api("GET", `/api/audit/proof/${n}`);
      const verifyOut = h("div", { test: "verify-result" });
      const verify = h("button", { type: "button", test: "proof-verify", onclick: async () => {
        verifyOut.replaceChildren();
        try {
          const r = await api("POST", "/api/audit/verify", proof);
          verifyOut.replaceChildren(r.ok
            ? message("The proof verifies against the signed checkpoint.", "ok", "verify-ok")
            : message(`The proof does not verify: ${r.reason || "no reason given"}`, "error", "verify-failed"));
        } catch (exc) {
          verifyOut.replaceChildren(message(errorText(exc), "error", "verify-failed"));
        }
      } }, "Verify");
      out.replaceChildren(
        h("p", {}, h("span", { class: `status ${proof.verified ? "s-confirmed" : "s-failed"}`, test: "proof-verified", "data-verified": String(!!proof.verified) },
          proof.verified ? "verified" : "NOT verified"), ` seq ${proof.seq} is leaf ${proof.seq} of a tree of ${proof.tree_size}; path of ${proof.path.length} hashes.`),
        kvTable({ seq: proof.seq, leaf_hash: proof.leaf_hash, tree_size: proof.tree_size }, "proof-table"),
        h("details", {}, h("summary", {}, "Journal entry (leaf)"), h("pre", { test: "proof-leaf" }, leafText(proof.leaf))),
        h("p", { class: "inline" }, verify,
          h("a", { class: "button", href: `/api/audit/proof/${n}?download=1`, download: `avila-proof-${n}.json`, test: "proof-download" }, "Download proof JSON")),
        verifyOut);
    } catch (exc) {
      out.replaceChildren(message(errorText(exc), "error", "proof-error"));
    }
  });
  return h("section", {},
    h("h1", {}, "Audit"),
    h("section", { class: "card", test: "checkpoint" }, h("h2", {}, "Latest signed checkpoint"),
      cp === null
        ? message("No checkpoint is signed yet: the first comes with the next checkpoint interval.", "info", "checkpoint-none")
        : [kvTable({ origin: cp.origin, tree_size: cp.tree_size, root_hash: cp.root_hash, public_key: cp.public_key }, "checkpoint-table"),
           h("pre", { test: "checkpoint-note", class: "note" }, cp.note || "")]),
    h("section", { class: "card", test: "proof" }, h("h2", {}, "Prove a reading"),
      h("p", { class: "muted" }, "Every journal entry is a leaf of the Merkle tree. Fetch an entry's inclusion proof against the signed checkpoint, verify it, and keep the JSON: anyone holding the verifier key can check it offline."),
      form, out),
    h("section", { class: "card", test: "proof-check" }, h("h2", {}, "Check a saved proof"),
      h("p", { class: "muted" }, "Choose a proof JSON file saved earlier: the gateway checks it against its verifier keys and says why it fails if it does."),
      h("div", { class: "inline" }, field("Proof file", upload)), uploadOut));
}

// -- sync, drivers, configuration ---------------------------------------------------------------

async function sync() {
  const s = await api("GET", "/api/sync");
  const j = s.journal || {};
  const journal = { ...j };
  if (typeof j.bytes === "number") journal.bytes = fmtBytes(j.bytes);
  const cursors = Object.entries(s.cursors || {}).map(([name, c]) => ({ name, ...(typeof c === "object" ? c : { position: c }) }));
  const records = (list, test) => (list && list.length
    ? h("div", {}, list.map((u, i) => h("article", { class: "card sub", test: `${test}-item`, "data-index": i },
        h("h3", {}, u.name || u.id || u.kind || `#${i + 1}`), kvTable(u, `${test}-table`))))
    : h("p", { class: "muted", test: `${test}-none` }, "None configured."));
  return h("section", {},
    h("h1", {}, "Sync"),
    h("section", { class: "card", test: "sync-journal" }, h("h2", {}, "Journal"),
      h("p", {}, "Gaps: ", h("strong", { test: "sync-gaps" }, fmtValue(j.gaps ?? 0)), " · dropped: ", h("strong", { test: "sync-dropped" }, fmtValue(j.dropped ?? 0))),
      kvTable(journal, "journal-table")),
    h("section", { class: "card", test: "sync-cursors" }, h("h2", {}, "Cursors (lag in entries)"),
      cursors.length ? table(cursors, [["name", "cursor"], ["position", "position"], ["lag", "lag"],
        ["queued_bytes", "queued (≈)", (c) => h("span", { test: "cursor-queued" }, fmtBytes(c.queued_bytes))]],
        "cursors-table", () => "cursor-row", "values") : h("p", { class: "muted" }, "None.")),
    h("section", { class: "card", test: "sync-uplinks" }, h("h2", {}, "Uplinks"), records(s.uplinks, "uplink")),
    h("section", { class: "card", test: "sync-sinks" }, h("h2", {}, "Sinks"), records(s.sinks, "sink")));
}

async function drivers() {
  const d = await api("GET", "/api/drivers");
  const rows = d.drivers.map((x) => ({ ...x }));
  return h("section", {},
    h("h1", {}, "Drivers and devices"),
    h("div", { class: "card" }, table(rows, [
      ["device", "device"],
      ["driver", "driver"],
      ["connected", "link", (x) => h("span", { class: `status ${x.connected ? "s-confirmed" : "s-failed"}`, test: "driver-connected" }, x.connected ? "connected" : "down")],
      ["requests", "requests"],
      ["errors", "errors", (x) => Object.entries(x.errors || {}).map(([k, v]) => `${k}: ${v}`).join(", ") || "0"],
      ["last_success_ns", "last success", (x) => fmtTime(x.last_success_ns)],
      ["last_poll_seconds", "poll (s)", (x) => fmtValue(x.last_poll_seconds)],
      ["restarts", "restarts"],
      ["last_error", "last error", (x) => x.last_error || x.last_failure || ""],
    ], "drivers-table", (x) => "driver-row")));
}

async function config(ctx) {
  const c = await api("GET", "/api/config");
  const parts = [
    h("h1", {}, "Configuration"),
    h("section", { class: "card" }, h("h2", {}, "Loaded configuration"),
      c.files && c.files.length ? h("p", { class: "muted", test: "config-files" }, c.files.join(", ")) : null,
      h("pre", { class: "yaml", test: "config-yaml" }, c.yaml || "")),
  ];
  if (ctx.session.can("admin")) {
    const input = h("textarea", { rows: 14, spellcheck: "false", test: "config-input", name: "yaml" });
    input.value = c.yaml || "";
    const out = h("div", { test: "config-result" });
    const validate = h("button", { type: "button", test: "config-validate", onclick: async () => {
      out.replaceChildren();
      try {
        await api("POST", "/api/config/validate", input.value);
        out.replaceChildren(message("The configuration is valid.", "ok", "config-ok"));
      } catch (exc) {
        const issues = (exc.body && exc.body.issues) || [];
        out.replaceChildren(message(errorText(exc), "error", "config-invalid"),
          h("ul", { class: "issues", test: "config-issues" }, issues.map((i) =>
            typeof i === "string"
              ? h("li", { test: "config-issue" }, i)
              : h("li", { test: "config-issue", "data-line": i.line },
                  h("code", {}, `${i.file || "config"}:${i.line ?? "?"}`), " ", i.path ? h("code", {}, i.path) : null, " ", i.message))));
      }
    } }, "Validate");
    parts.push(h("section", { class: "card", test: "config-check" }, h("h2", {}, "Check a configuration"),
      h("p", { class: "muted" }, "Paste a site configuration to validate it. Nothing is applied."), input, h("p", {}, validate), out));
  }
  return h("section", {}, parts);
}

export const PAGES = {
  setup,
  login,
  overview,
  asset: assetPage,
  alarms: alarmsPage,
  audit,
  sync,
  drivers,
  config,
};
