// Validate an AsyncAPI document with the official parser; print the diagnostics as
// JSON and exit 1 on any error. Usage: node validate.mjs <document>
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";

const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(process.argv[2], "utf8"));
const levels = ["error", "warning", "info", "hint"];
const found = diagnostics.map((d) => ({
  severity: levels[d.severity] ?? String(d.severity),
  code: d.code,
  message: d.message,
  path: d.path.join("/"),
}));
console.log(JSON.stringify({ valid: document !== undefined && !found.some((d) => d.severity === "error"),
  version: document?.version(), channels: document?.channels().length ?? 0,
  operations: document?.operations().length ?? 0, messages: document?.allMessages().length ?? 0,
  diagnostics: found }, null, 2));
process.exit(found.some((d) => d.severity === "error") || document === undefined ? 1 : 0);
