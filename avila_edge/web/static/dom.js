// Building DOM nodes. Every piece of data goes in as textContent or an attribute, never as HTML.

/**
 * h("button", {test: "ack", class: "x", onclick: fn}, "text", childNode, [more])
 * `test` sets data-test; `on*` keys add listeners; other keys become attributes (booleans toggle).
 */
export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "test") node.dataset.test = v;
    else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (k === "value") node.value = v;
    else if (v === true) node.setAttribute(k, "");
    else node.setAttribute(k, String(v));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(node, c);
    else if (c instanceof Node) node.append(c);
    else node.append(document.createTextNode(String(c)));
  }
}

export function fmtValue(v, unit) {
  if (v === null || v === undefined) return "—";
  let text;
  if (typeof v === "number") text = Number.isInteger(v) ? String(v) : String(Math.round(v * 1000) / 1000);
  else if (typeof v === "boolean") text = v ? "true" : "false";
  else text = String(v);
  return unit ? `${text} ${unit}` : text;
}

export function fmtTime(ns) {
  if (ns === null || ns === undefined) return "—";
  return new Date(Number(ns) / 1e6).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

export function fmtBytes(n) {
  if (typeof n !== "number") return fmtValue(n);
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

/** A quality badge: good / uncertain / bad / none, with the reason as a tooltip. */
export function quality(q, reason) {
  const name = q || "none";
  return h("span", { class: `q q-${name}`, title: reason || name, test: "quality" }, name);
}

/** A two-column table of an object's keys and values (nested objects shown as JSON). */
export function kvTable(obj, test) {
  const rows = Object.entries(obj || {}).map(([k, v]) =>
    h("tr", { "data-key": k }, h("th", {}, k), h("td", {}, typeof v === "object" && v !== null ? JSON.stringify(v) : fmtValue(v))),
  );
  return h("table", { class: "kv", test }, h("tbody", {}, rows));
}

/** A table from a list of records; `columns` is [[key, title, render?]]. */
export function table(records, columns, test, rowTest, cls = "list") {
  const head = h("tr", {}, columns.map(([, title]) => h("th", {}, title)));
  const body = records.map((r) =>
    h(
      "tr",
      { test: rowTest ? rowTest(r) : undefined },
      columns.map(([key, title, render]) => h("td", { "data-label": title }, render ? render(r) : fmtValue(r[key]))),
    ),
  );
  return h("table", { class: cls, test }, h("thead", {}, head), h("tbody", {}, body));
}

export function message(text, kind = "error", test = "message") {
  return h("p", { class: `msg msg-${kind}`, test, role: kind === "error" ? "alert" : "status" }, text);
}
