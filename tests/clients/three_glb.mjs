// Runs three_glb.html in headless Chromium (Debian's, driven by playwright-core) on a GLB and prints the report
// as JSON. Files are served from the repository root on a loopback port; nothing leaves the machine.
// Usage: node tests/clients/three_glb.mjs FILE.glb CLIP [CHROMIUM] [TIMES]   (TIMES: seconds, comma-separated)
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { resolve, dirname, extname, join, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const glb = resolve(process.argv[2]);
const clip = process.argv[3];
const executablePath = process.argv[4] || "/usr/bin/chromium";
const times = process.argv[5] ? `&times=${encodeURIComponent(process.argv[5])}` : "";
const types = { ".html": "text/html", ".js": "text/javascript", ".glb": "model/gltf-binary" };

const server = createServer(async (req, res) => {
  const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
  const file = path === "/model.glb" ? glb : join(root, path);
  if (file !== glb && !file.startsWith(root + sep)) { res.writeHead(403).end(); return; }
  try {
    const body = await readFile(file);
    res.writeHead(200, { "content-type": types[extname(file)] || "application/octet-stream" }).end(body);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const { port } = server.address();

// no background networking: this machine's network is closed, and the test must not reach out
const browser = await chromium.launch({
  executablePath,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
let status = 0;
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`http://127.0.0.1:${port}/tests/clients/three_glb.html?glb=/model.glb&clip=${encodeURIComponent(clip)}${times}`);
  await page.waitForFunction(() => window.report !== undefined, null, { timeout: 60000 });
  const report = await page.evaluate(() => window.report);
  if (errors.length && !report.error) report.error = errors.join("\n");
  process.stdout.write(JSON.stringify(report));
  status = report.error ? 1 : 0;
} finally {
  await browser.close();
  server.close();
}
process.exit(status);
