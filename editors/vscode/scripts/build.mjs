// Bundles the extension into one file (dist/extension.js) with esbuild. The server version the
// managed environment installs is read here from the server's own __init__.py, so the two
// never drift apart.
import { build } from "esbuild";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const init = readFileSync(join(here, "..", "..", "..", "server", "crucible", "__init__.py"), "utf8");
const match = /^__version__ = "([^"]+)"$/m.exec(init);
if (!match) throw new Error("no __version__ in server/crucible/__init__.py");

await build({
  entryPoints: [join(here, "..", "src", "extension.ts")],
  bundle: true,
  outfile: join(here, "..", "dist", "extension.js"),
  external: ["vscode"],
  format: "cjs",
  platform: "node",
  target: "node20",
  sourcemap: true,
  minify: process.argv.includes("--minify"),
  define: { __CRUCIBLE_SERVER_VERSION__: JSON.stringify(match[1]) },
  logLevel: "warning",
});
