"""The console in a real browser: Debian's chromium driven by
playwright-core (tests/browser, installed by scripts/test-all). The
provider admin logs in, adds a domain and a mailbox with the forms; then
the mailbox logs in over IMAP. Screenshots are kept in the test's folder
(tmp_path) as artifacts."""

import imaplib
import os
import shutil
import ssl
import subprocess

import pytest

from conftest import discard, make_server

HERE = os.path.dirname(os.path.abspath(__file__))
BROWSER_DIR = os.path.join(HERE, "..", "browser")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def test_provider_admin_adds_a_domain_and_a_mailbox_in_the_browser(tmp_path):
    if not os.path.exists(CHROMIUM) or not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
        pytest.skip("chromium and tests/browser's playwright-core are needed (scripts/test-all installs them)")
    s = make_server()
    s.cli("admin", "add", "staff@provider.example", "--password-stdin", input="staff-secret-1\n")
    s.start()
    try:
        r = subprocess.run(
            ["node", os.path.join(BROWSER_DIR, "console.mjs")],
            cwd=BROWSER_DIR,
            env={
                **os.environ,
                "CONSOLE_URL": f"http://127.0.0.1:{s.http_port}",
                "SCREENSHOT_DIR": str(tmp_path),
                "CHROMIUM": CHROMIUM,
                "ADMIN_LOGIN": "staff@provider.example",
                "ADMIN_PASSWORD": "staff-secret-1",
                "NEW_DOMAIN": "browser.example",
                "NEW_LOCAL": "ann",
                "NEW_PASSWORD": "ann-browser-secret",
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0 and "ok" in r.stdout, r.stdout + r.stderr
        assert os.path.getsize(tmp_path / "domain.png") > 1000
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        m = imaplib.IMAP4_SSL("127.0.0.1", s.imaps_port, ssl_context=ctx, timeout=10)
        assert m.login("ann@browser.example", "ann-browser-secret")[0] == "OK"
        m.logout()
        audit = s.cli("audit", "--domain", "browser.example").stdout
        assert "api:staff@provider.example" in audit, audit
    finally:
        discard(s)
