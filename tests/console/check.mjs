// Loads every page of a running Shoal console in headless Chromium and checks that it
// shows the demo's real, moving numbers; saves a screenshot of each page.
//
//   node check.mjs CONSOLE_URL SCREENSHOT_DIR
//
// Chromium comes from Debian (`chromium`; its binary, not the /usr/bin wrapper script);
// set CHROMIUM to use another one.
import { chromium } from "playwright-core";
import { existsSync, mkdirSync } from "node:fs";

const [base, shots] = process.argv.slice(2);
if (!base || !shots) {
  console.error("usage: node check.mjs CONSOLE_URL SCREENSHOT_DIR");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const failures = [];
const check = (ok, what) => {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures.push(what);
};

const browser = await chromium.launch({
  executablePath:
    process.env.CHROMIUM || ["/usr/lib/chromium/chromium", "/usr/bin/chromium"].find((p) => existsSync(p)),
  headless: true,
  args: ["--no-sandbox", "--disable-gpu"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));

  // Throughput: the plots must draw points, and the produce series must move and be > 0.
  await page.goto(new URL("/", base).href);
  const chart = async (id) =>
    page.$eval(`#${id}`, (f) => ({
      points: Number(f.dataset.points || 0),
      last: Number(f.dataset.last || 0),
      line: f.querySelector("polyline")?.getAttribute("points") || "",
    }));
  await page.waitForFunction(
    () => Number(document.querySelector("#chart-produce")?.dataset.points || 0) >= 3,
    null,
    { timeout: 30_000 },
  );
  const first = await chart("chart-produce");
  await page.waitForFunction(
    (n) => Number(document.querySelector("#chart-produce").dataset.points) > n,
    first.points,
    { timeout: 15_000 },
  );
  const second = await chart("chart-produce");
  check(second.points > first.points, `produce series grows (${first.points} -> ${second.points} points)`);
  check(second.line !== first.line && second.line.split(" ").length >= 3, "produce line is redrawn with new points");
  check(second.last > 0, `produce rate is above zero (${second.last} bytes/s)`);
  const fetchRate = await chart("chart-fetch");
  check(fetchRate.points > 0, `fetch plot has points (${fetchRate.points})`);
  const api = await (await page.request.get(new URL("/api/throughput", base).href)).json();
  const peak = (f) => Math.max(...api.samples.map((s) => s[f]));
  check(peak("produce_bytes_s") > 0 && peak("fetch_bytes_s") > 0, "API: produce and fetch rates above zero");
  check(peak("puts_s") > 0, "API: object-store PUTs per second above zero");
  const dollars = await page.$eval("#cost .dollars", (e) => e.textContent);
  check(/^\$\d+\.\d\d \/ month$/.test(dollars), `cost estimate shown (${dollars})`);
  await page.screenshot({ path: `${shots}/throughput.png`, fullPage: true });

  // Agents: this agent, with an uptime and a version.
  await page.goto(new URL("/agents", base).href);
  const agents = await page.$$eval("#agents tbody tr", (rows) => rows.map((r) => r.innerText));
  check(agents.length >= 1 && agents[0].includes("(this agent)"), `agents page lists this agent (${agents[0]})`);
  check(/\d+s/.test(agents[0] || "") && /\d+\.\d+\.\d+/.test(agents[0] || ""), "agent row has uptime and version");
  await page.screenshot({ path: `${shots}/agents.png`, fullPage: true });

  // Topics: the demo topic's offsets grow while the page refreshes itself.
  await page.goto(new URL("/topics", base).href);
  const hwm = () =>
    page.$$eval('section[data-topic="demo"] td.hwm', (tds) => tds.reduce((a, td) => a + Number(td.textContent), 0));
  const before = await hwm();
  check(before > 0, `demo topic has records (${before})`);
  await page.waitForFunction(
    (n) =>
      [...document.querySelectorAll('section[data-topic="demo"] td.hwm')].reduce((a, td) => a + Number(td.textContent), 0) > n,
    before,
    { timeout: 15_000 },
  );
  check((await hwm()) > before, "demo topic's high watermarks grow on the refreshed page");
  await page.screenshot({ path: `${shots}/topics.png`, fullPage: true });

  // Consumer groups: the demo group, a member, and a lag number per partition.
  await page.goto(new URL("/groups", base).href);
  await page.waitForSelector('section[data-group="demo-group"] table.members', { timeout: 20_000 });
  const group = await page.$eval('section[data-group="demo-group"]', (s) => ({
    text: s.querySelector("p").innerText,
    lags: [...s.querySelectorAll("td.lag-value")].map((td) => td.textContent),
    members: s.querySelectorAll("table.members tbody tr").length,
  }));
  check(group.text.includes("Stable"), `demo group is Stable (${group.text})`);
  check(group.members === 1, `demo group has its member (${group.members})`);
  check(group.lags.length === 3 && group.lags.every((l) => /^\d+$/.test(l)), `lag per partition: ${group.lags.join(", ")}`);
  await page.screenshot({ path: `${shots}/groups.png`, fullPage: true });

  check(errors.length === 0, `no script errors in the pages ${errors.join("; ")}`);
} finally {
  await browser.close();
}
if (failures.length > 0) {
  console.error(`${failures.length} console check(s) failed`);
  process.exit(1);
}
console.log(`console checks passed; screenshots in ${shots}`);
