// The console in a real browser (Debian's chromium driven by
// playwright-core): the provider admin logs in, adds a domain and a
// mailbox with the forms, as a person would. Run by
// tests/e2e/test_browser.py, which then logs the mailbox in over IMAP.
// Only 127.0.0.1 is contacted.
import { chromium } from "playwright-core";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const base = env("CONSOLE_URL");
const shots = env("SCREENSHOT_DIR");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // As root in a container chromium needs --no-sandbox.
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const fail = async (page, why) => {
  await page.screenshot({ path: `${shots}/failure.png`, fullPage: true });
  throw new Error(why);
};
try {
  const page = await browser.newPage();
  // Anything the CSP blocks, and any failed request, shows here as an
  // error (chromium's advice on form fields comes as verbose/warnings).
  const problems = [];
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(m.text());
  });
  page.on("pageerror", (e) => problems.push(String(e)));
  page.setDefaultTimeout(15000);

  await page.goto(`${base}/login`);
  await page.getByLabel("Address").fill(env("ADMIN_LOGIN"));
  await page.getByLabel("Password").fill(env("ADMIN_PASSWORD"));
  await page.getByRole("button", { name: "Log in" }).click();
  await page.waitForURL(`${base}/domains`);

  const domain = env("NEW_DOMAIN");
  await page.getByLabel("Domain name").fill(domain);
  await page.getByRole("button", { name: "Add domain" }).click();
  await page.waitForURL((u) => u.pathname === `/domains/${domain}`);
  if (!(await page.getByText("Created.").isVisible())) await fail(page, "no notice after adding the domain");

  const form = page.locator('form[action$="/mailboxes"]');
  await form.getByLabel("Name").fill(env("NEW_LOCAL"));
  await form.getByLabel("Password").fill(env("NEW_PASSWORD"));
  await form.getByRole("button", { name: "Add mailbox" }).click();
  await page.waitForURL((u) => u.searchParams.get("done") === "created");
  const address = `${env("NEW_LOCAL")}@${domain}`;
  if (!(await page.getByRole("cell", { name: address }).isVisible())) {
    await fail(page, `${address} is not listed`);
  }
  await page.screenshot({ path: `${shots}/domain.png`, fullPage: true });
  if (problems.length) await fail(page, `browser console: ${problems.join("; ")}`);
  console.log("ok");
} finally {
  await browser.close();
}
