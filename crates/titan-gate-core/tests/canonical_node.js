// Computes the signer's canonical form for a batch of payload texts.
//
// Reads one JSON-encoded payload text per stdin line and writes one line per input:
// {"ok": canonical} with JSON.stringify(sortKeysDeep(JSON.parse(text))), or
// {"error": message} when JSON.parse throws.
"use strict";

const fs = require("fs");

// The signer's sortKeysDeep: objects are rebuilt with their keys in default sort order,
// and arrays are mapped element by element.
function sortKeysDeep(v) {
  if (Array.isArray(v)) return v.map(sortKeysDeep);
  if (v !== null && typeof v === "object") {
    const out = {};
    for (const k of Object.keys(v).sort()) out[k] = sortKeysDeep(v[k]);
    return out;
  }
  return v;
}

const lines = fs.readFileSync(0, "utf8").split("\n");
const results = [];
for (const line of lines) {
  if (line === "") continue;
  const text = JSON.parse(line);
  try {
    results.push(JSON.stringify({ ok: JSON.stringify(sortKeysDeep(JSON.parse(text))) }));
  } catch (error) {
    results.push(JSON.stringify({ error: String(error) }));
  }
}
process.stdout.write(results.join("\n") + "\n");
