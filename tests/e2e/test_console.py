"""The web console and the HTTP API (issue #11's foundation), driven over
loopback with Python's http.client: logins and their cookies, CSRF
refusals, security headers, a domain admin's scope, bad input, and a
mailbox made through the API logging in over IMAP."""

import http.client
import imaplib
import json
import os
import re
import ssl
import time
import urllib.parse

import pytest

import subprocess

from conftest import BIN, discard, free_port, make_server

PROVIDER = "boss@provider.example"
PROVIDER_PW = "provider-secret-1"
KENT = "kent@esoomllub.com"
KENT_PW = "kent-secret-1"


class Browser:
    """A tiny client that keeps cookies like a browser on one site."""

    def __init__(self, port):
        self.port = port
        self.cookies = {}

    def request(self, method, path, body=None, headers=None, json_body=None):
        h = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body)
            h.setdefault("Content-Type", "application/json")
        if isinstance(body, dict):
            body = urllib.parse.urlencode(body)
            h.setdefault("Content-Type", "application/x-www-form-urlencoded")
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
        finally:
            c.close()
        set_cookies = r.headers.get_all("Set-Cookie") or []
        for sc in set_cookies:
            name, _, rest = sc.partition("=")
            value = rest.split(";")[0]
            if "Max-Age=0" in sc:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return r.status, r.headers, data, set_cookies

    def login(self, login, password):
        status, _, page, _ = self.request("GET", "/login")
        assert status == 200
        token = re.search(rb'name="login_token" value="([^"]+)"', page).group(1).decode()
        return self.request("POST", "/login", {"login_token": token, "login": login, "password": password})

    def csrf(self):
        status, _, body, _ = self.request("GET", "/api/v1/session")
        assert status == 200, body
        return json.loads(body)["csrf_token"]

    def api(self, method, path, json_body=None, csrf=True, body=None, headers=None):
        h = dict(headers or {})
        if csrf and method not in ("GET", "HEAD"):
            h["X-CSRF-Token"] = self.csrf()
        status, _, data, _ = self.request(method, "/api/v1" + path, body=body, json_body=json_body, headers=h)
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = data
        return status, parsed


@pytest.fixture(scope="module")
def console():
    s = make_server()
    s.cli("admin", "add", PROVIDER, "--password-stdin", input=PROVIDER_PW + "\n")
    s.cli("user", "passwd", KENT, "--password-stdin", input=KENT_PW + "\n")
    s.cli("domain", "add", "other.example")
    s.cli("user", "add", "victim@other.example", "--password-stdin", input="victim-secret-1\n")
    s.cli("alias", "add", "team@other.example", "victim")
    s.start()
    yield s
    discard(s)


def escaped(html):
    """askama's escaping: numeric character references."""
    return html.replace(b"<", b"&#60;").replace(b">", b"&#62;")


def provider(s):
    b = Browser(s.http_port)
    status, headers, _, _ = b.login(PROVIDER, PROVIDER_PW)
    assert status == 303 and headers["Location"] == "/domains", status
    return b


def kent(s):
    b = Browser(s.http_port)
    status, _, _, _ = b.login(KENT, KENT_PW)
    assert status == 303
    return b


def test_login_cookies_and_security_headers(console):
    b = Browser(console.http_port)
    status, headers, page, cookies = b.request("GET", "/login")
    assert status == 200
    assert any(c.startswith("postroom_login=") and "HttpOnly" in c and "SameSite=Strict" in c for c in cookies)
    for h in (headers,):
        assert "default-src 'self'" in h["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in h["Content-Security-Policy"]
        assert "unsafe-inline" not in h["Content-Security-Policy"]
        assert h["X-Content-Type-Options"] == "nosniff"
        assert h["Referrer-Policy"] == "no-referrer"
    assert b"<script" not in page and b"style=" not in page
    status, headers, _, cookies = b.login(PROVIDER, PROVIDER_PW)
    assert status == 303
    session = [c for c in cookies if c.startswith("postroom_session=")]
    assert len(session) == 1
    attrs = [a.strip() for a in session[0].split(";")]
    assert "HttpOnly" in attrs and "SameSite=Strict" in attrs and "Path=/" in attrs
    # Plain HTTP on loopback (the trial): no Secure, which the browser
    # would refuse to send back.
    assert "Secure" not in attrs
    status, headers, page, _ = b.request("GET", "/domains")
    assert status == 200 and b"esoomllub.com" in page and b"other.example" in page
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"
    # Every response has the headers, errors and the API included.
    for path in ("/api/v1/domains", "/nowhere", "/api/v1/nowhere", "/static/console.css", "/api/openapi.json"):
        _, h, _, _ = b.request("GET", path)
        assert "frame-ancestors 'none'" in h["Content-Security-Policy"], path
        assert h["Referrer-Policy"] == "no-referrer", path


def test_login_csrf_and_wrong_passwords(console):
    b = Browser(console.http_port)
    # A login form posted from elsewhere has no login cookie: refused,
    # even with the right password.
    status, _, _, cookies = b.request(
        "POST", "/login", {"login_token": "x" * 43, "login": PROVIDER, "password": PROVIDER_PW}
    )
    assert status == 403 and not any(c.startswith("postroom_session=") for c in cookies)
    status, _, page, cookies = b.login(PROVIDER, "wrong-password")
    assert status == 401 and b"Wrong address or password" in page
    assert not any(c.startswith("postroom_session=") for c in cookies)
    # A mailbox that is no admin cannot log in to the console.
    status, _, _, _ = b.login("customseo@esoomllub.com", "99test99")
    assert status == 401
    # Without a session, the API answers 401 in JSON.
    status, body = Browser(console.http_port).api("GET", "/domains")
    assert status == 401 and "error" in body


def test_changes_need_the_csrf_token(console):
    b = provider(console)
    status, body = b.api("POST", "/domains", {"name": "nocsrf.example"}, csrf=False)
    assert status == 403 and "X-CSRF-Token" in body["error"]
    status, body = b.api("POST", "/domains", {"name": "nocsrf.example"}, csrf=False,
                         headers={"X-CSRF-Token": "wrong"})
    assert status == 403
    assert "nocsrf.example" not in console.cli("domain", "list").stdout
    # The console's forms too.
    status, _, _, _ = b.request("POST", "/domains", {"csrf": "wrong", "name": "nocsrf.example"})
    assert status == 403
    assert "nocsrf.example" not in console.cli("domain", "list").stdout
    status, body = b.api("POST", "/domains", {"name": "withcsrf.example"})
    assert status == 201 and body["name"] == "withcsrf.example"
    audit = console.cli("audit", "--object", "withcsrf.example").stdout
    assert f"api:{PROVIDER}" in audit and "127.0.0.1" in audit, audit


def test_a_mailbox_made_through_the_api_logs_in_over_imap(console):
    b = provider(console)
    status, body = b.api("POST", "/domains/esoomllub.com/mailboxes",
                         {"local": "apimade", "password": "api-made-secret", "quota": "1G"})
    assert status == 201, body
    assert body["address"] == "apimade@esoomllub.com" and body["quota"] == 1 << 30
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    m = imaplib.IMAP4_SSL("127.0.0.1", console.imaps_port, ssl_context=ctx, timeout=10)
    assert m.login("apimade@esoomllub.com", "api-made-secret")[0] == "OK"
    m.logout()
    status, page = b.api("GET", "/domains/esoomllub.com/mailboxes?q=apimade")
    assert status == 200 and page["total"] == 1 and page["mailboxes"][0]["address"] == "apimade@esoomllub.com"
    status, body = b.api("PATCH", "/domains/esoomllub.com/mailboxes/apimade", {"enabled": False})
    assert status == 200 and body["enabled"] is False
    m = imaplib.IMAP4_SSL("127.0.0.1", console.imaps_port, ssl_context=ctx, timeout=10)
    with pytest.raises(imaplib.IMAP4.error):
        m.login("apimade@esoomllub.com", "api-made-secret")


def test_a_domain_admin_never_reaches_another_domain(console):
    b = kent(console)
    status, body = b.api("GET", "/session")
    assert body["role"] == "domain-admin" and body["domain"] == "esoomllub.com"
    status, body = b.api("GET", "/domains")
    assert status == 200 and sorted(d["name"] for d in body) == ["esoomllub.com", "esoomllub.net"], body
    other = "/domains/other.example"
    tries = [
        ("GET", other, None),
        ("PATCH", other, {"default_quota": "10G"}),
        ("DELETE", other + "?force=true", None),
        ("GET", other + "/mailboxes", None),
        ("POST", other + "/mailboxes", {"local": "intruder", "password": "intruder-secret"}),
        ("GET", other + "/mailboxes/victim", None),
        ("PATCH", other + "/mailboxes/victim", {"password": "taken-over-1"}),
        ("PATCH", other + "/mailboxes/victim", {"enabled": False}),
        ("DELETE", other + "/mailboxes/victim?force=true", None),
        ("GET", other + "/aliases", None),
        ("POST", other + "/aliases", {"local": "steal", "members": ["kent@esoomllub.com"]}),
        ("GET", other + "/aliases/team", None),
        ("POST", other + "/aliases/team/members", {"members": ["kent@esoomllub.com"]}),
        ("DELETE", other + "/aliases/team/members/victim@other.example", None),
        ("DELETE", other + "/aliases/team", None),
        # Another domain's mailbox named through one's own domain.
        ("GET", "/domains/esoomllub.com/mailboxes/victim%40other.example", None),
        ("PATCH", "/domains/esoomllub.com/mailboxes/victim%40other.example", {"enabled": False}),
        ("POST", "/domains", {"name": "kents-own.example"}),
        ("DELETE", "/domains/esoomllub.com", None),
        ("PATCH", "/domains/esoomllub.com", {"default_quota": "100G"}),
    ]
    for method, path, body in tries:
        status, answer = b.api(method, path, body)
        assert status in (400, 403, 404), (method, path, status, answer)
        # Only an error, never the object's data.
        assert set(answer) == {"error"}, (method, path, answer)
    # A domain admin cannot raise their own limits.
    status, answer = b.api("PATCH", "/domains/esoomllub.com/mailboxes/kent", {"quota": "100G"})
    assert status == 403, answer
    # The pages refuse the same.
    status, _, page, _ = b.request("GET", "/domains/other.example")
    assert status == 404 and b"victim" not in page
    # Nothing changed.
    show = console.cli("user", "show", "victim@other.example").stdout
    assert "enabled\tyes" in show, show
    assert "victim@other.example" in console.cli("alias", "list", "other.example").stdout
    assert "intruder" not in console.cli("user", "list", "other.example").stdout
    assert "kents-own.example" not in console.cli("domain", "list").stdout
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    m = imaplib.IMAP4_SSL("127.0.0.1", console.imaps_port, ssl_context=ctx, timeout=10)
    assert m.login("victim@other.example", "victim-secret-1")[0] == "OK"
    m.logout()
    # Within its own domain the domain admin works.
    status, answer = b.api("POST", "/domains/esoomllub.com/aliases", {"local": "kents-list", "members": ["kent", "customseo"]})
    assert status == 201, answer


def test_bad_input_is_4xx_never_5xx(console):
    b = provider(console)
    csrf = b.csrf()
    h = {"X-CSRF-Token": csrf, "Content-Type": "application/json"}
    cases = [
        ("POST", "/api/v1/domains", "{not json", h, 400),
        ("POST", "/api/v1/domains", json.dumps({"name": "x.example", "surprise": 1}), h, 422),
        ("POST", "/api/v1/domains", json.dumps({"name": 5}), h, 422),
        ("POST", "/api/v1/domains", "name=x.example", {"X-CSRF-Token": csrf, "Content-Type": "text/plain"}, 415),
        ("POST", "/api/v1/domains", json.dumps({"name": "x" * 3_000_000}), h, 413),
        ("GET", "/api/v1/domains/..%2F..%2Fetc%2Fpasswd", None, {}, 404),
        ("GET", "/api/v1/domains/esoomllub.com/mailboxes?page=-1", None, {}, 400),
        ("GET", "/api/v1/domains/esoomllub.com/mailboxes/%00", None, {}, 422),
        ("POST", "/api/v1/domains", json.dumps({"name": "<script>alert(1)</script>"}), h, 422),
    ]
    for method, path, body, headers, want in cases:
        status, _, data, _ = b.request(method, path, body=body, headers=headers)
        assert status == want, (method, path, status, data[:200])
        if path.startswith("/api/"):
            assert "error" in json.loads(data), data[:200]
    # HTML typed into a field comes back escaped on the page.
    status, _, page, _ = b.request("POST", "/domains", {"csrf": csrf, "name": "<script>alert(1)</script>"})
    assert status == 422 and b"<script>alert" not in page and escaped(b"<script>") in page
    b2 = Browser(console.http_port)
    status, _, page, _ = b2.login("<b>x</b>@esoomllub.com", "nope-nope")
    assert status == 401 and b"<b>x</b>" not in page and escaped(b"<b>x</b>") in page
    status, _, page, _ = b.request("POST", "/domains/esoomllub.com/aliases",
                                   {"csrf": csrf, "local": "html", "members": "<img src=x>"})
    assert status == 422 and b"<img" not in page


def test_a_password_change_ends_the_other_sessions(console):
    console.cli("admin", "add", "aide@provider.example", "--password-stdin", input="aide-secret-1\n")
    first = Browser(console.http_port)
    assert first.login("aide@provider.example", "aide-secret-1")[0] == 303
    second = Browser(console.http_port)
    assert second.login("aide@provider.example", "aide-secret-1")[0] == 303
    status, body = first.api("POST", "/password", {"current": "wrong", "new": "aide-secret-2"})
    assert status == 403
    status, body = first.api("POST", "/password", {"current": "aide-secret-1", "new": "aide-secret-2"})
    assert status == 200, body
    assert first.api("GET", "/domains")[0] == 200
    assert second.api("GET", "/domains")[0] == 401
    # A change made with the CLI ends the sessions too.
    console.cli("admin", "passwd", "aide@provider.example", "--password-stdin", input="aide-secret-3\n")
    assert first.api("GET", "/domains")[0] == 401
    # Logging out ends the session on the server, not only in the browser.
    b = Browser(console.http_port)
    assert b.login("aide@provider.example", "aide-secret-3")[0] == 303
    saved = dict(b.cookies)
    status, _, _, cookies = b.request("POST", "/logout", {"csrf": b.csrf()})
    assert status == 303 and any("Max-Age=0" in c for c in cookies)
    b.cookies = saved
    assert b.api("GET", "/domains")[0] == 401


def test_a_domain_admin_session_follows_the_mailbox(console):
    """Each request reads the login's row again: a domain admin whose
    flag is taken away, or whose mailbox moves to another domain, is
    logged out at once."""
    console.cli("user", "add", "deputy@esoomllub.com", "--password-stdin", "--domain-admin",
                input="deputy-secret-1\n")
    b = Browser(console.http_port)
    assert b.login("deputy@esoomllub.com", "deputy-secret-1")[0] == 303
    assert b.api("GET", "/domains/esoomllub.com")[0] == 200
    console.cli("user", "admin", "deputy@esoomllub.com", "--off")
    assert b.api("GET", "/domains/esoomllub.com")[0] == 401
    console.cli("user", "admin", "deputy@esoomllub.com")
    assert b.login("deputy@esoomllub.com", "deputy-secret-1")[0] == 303
    console.cli("user", "rename", "deputy@esoomllub.com", "deputy@other.example")
    status, body = b.api("GET", "/domains/other.example")
    assert status == 401, body


def test_the_console_pages_manage_mailboxes_and_aliases(console):
    b = provider(console)
    csrf = b.csrf()
    status, _, _, _ = b.request("POST", "/domains/esoomllub.com/mailboxes",
                                {"csrf": csrf, "local": "paged", "password": "paged-secret-1", "quota": ""})
    assert status == 303
    status, _, page, _ = b.request("GET", "/domains/esoomllub.com?q=paged")
    assert status == 200 and b"<td>paged@esoomllub.com" in page and b"<td>customseo@" not in page
    status, _, _, _ = b.request("POST", "/domains/esoomllub.com/mailboxes/paged/disable", {"csrf": csrf})
    assert status == 303
    assert "enabled\tno" in console.cli("user", "show", "paged@esoomllub.com").stdout
    status, _, _, _ = b.request("POST", "/domains/esoomllub.com/aliases",
                                {"csrf": csrf, "local": "sales", "members": "customseo, paged"})
    assert status == 303
    assert "sales@esoomllub.com" in console.cli("alias", "list", "esoomllub.com").stdout
    status, _, _, _ = b.request("POST", "/domains/esoomllub.com/mailboxes/paged/remove", {"csrf": csrf})
    assert status == 303


def test_openapi_document(console):
    status, _, body, _ = Browser(console.http_port).request("GET", "/api/openapi.json")
    assert status == 200
    doc = json.loads(body)
    assert doc["openapi"].startswith("3.")
    for p in ("/api/v1/domains", "/api/v1/domains/{domain}/mailboxes", "/api/v1/domains/{domain}/aliases"):
        assert p in doc["paths"], p


def test_a_storage_failure_is_503(tmp_path):
    s = make_server()
    s.cli("admin", "add", PROVIDER, "--password-stdin", input=PROVIDER_PW + "\n")
    fault = os.path.join(s.tmp, "fail-storage")
    s.env["POSTROOM_TEST_STORE_FAULTS"] = fault
    s.start()
    try:
        b = provider(s)
        open(fault, "w").close()
        time.sleep(0.3)
        status, body = b.api("GET", "/domains", csrf=False)
        assert status == 503 and "error" in body
        status, _, _, _ = b.request("GET", "/domains")
        assert status == 503
    finally:
        discard(s)


def test_https_with_secure_cookies_and_port_80_redirects():
    https_port = free_port()
    s = make_server(extra_http=f'tls_listen = ["127.0.0.1:{https_port}"]')
    s.cli("admin", "add", PROVIDER, "--password-stdin", input=PROVIDER_PW + "\n")
    s.start()
    try:
        # The plain listener only redirects, keeping the path.
        c = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=10)
        c.request("POST", "/login?x=1", body="a=b", headers={"Host": "mail.example.com:80"})
        r = c.getresponse()
        assert r.status == 308 and r.headers["Location"] == "https://mail.example.com/login?x=1"
        c.close()
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c = http.client.HTTPSConnection("127.0.0.1", https_port, timeout=10, context=ctx)
        c.request("GET", "/login")
        r = c.getresponse()
        page = r.read()
        assert r.status == 200
        assert r.headers["Strict-Transport-Security"].startswith("max-age=")
        login_cookie = r.headers["Set-Cookie"]
        assert "Secure" in login_cookie and "HttpOnly" in login_cookie
        token = re.search(rb'name="login_token" value="([^"]+)"', page).group(1).decode()
        body = urllib.parse.urlencode({"login_token": token, "login": PROVIDER, "password": PROVIDER_PW})
        c.request("POST", "/login", body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": login_cookie.split(";")[0],
        })
        r = c.getresponse()
        r.read()
        assert r.status == 303
        attrs = [a.strip() for a in r.headers["Set-Cookie"].split(";")]
        assert attrs[0].startswith("postroom_session=")
        assert {"HttpOnly", "SameSite=Strict", "Path=/", "Secure"} <= set(attrs), attrs
        c.close()
    finally:
        discard(s)


def test_the_trial_prints_the_console_and_its_first_login(tmp_path):
    p = subprocess.Popen([BIN, "--data-dir", str(tmp_path / "trial"), "serve"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        text = ""
        for _ in range(40):
            line = p.stdout.readline()
            text += line
            if not line or "Stop with" in line or "already in use" in line:
                break
        # Another process on this machine may hold a trial port.
        if "already in use" not in text:
            assert "Web console and API:      http://127.0.0.1:10080/" in text, text
            assert "admin add you@example.com --password-stdin" in text, text
    finally:
        p.terminate()
        p.wait(timeout=30)


def test_request_head_and_connection_limits():
    s = make_server(extra_http="max_connections = 2")
    s.start()
    try:
        # A request head past 16 KiB (a cookie stuffed with junk) is refused
        # by status, not read into memory.
        c = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=10)
        c.request("GET", "/login", headers={"Cookie": "x=" + "a" * 20000})
        r = c.getresponse()
        assert r.status == 431, r.status
        c.close()
        # Two connections open and silent take both slots: a third is
        # closed at once without an answer.
        import socket
        def served():
            """A connection that was answered once and stays open
            (keep-alive), so it holds a slot. Retried while the 431
            connection above may still hold its slot."""
            for _ in range(50):
                h = socket.create_connection(("127.0.0.1", s.http_port), timeout=10)
                h.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")
                try:
                    if h.recv(100).startswith(b"HTTP/1.1 200"):
                        return h
                except ConnectionResetError:
                    pass
                h.close()
                time.sleep(0.1)
            raise AssertionError("no slot came free")

        held = [served() for _ in range(2)]
        third = socket.create_connection(("127.0.0.1", s.http_port), timeout=10)
        try:
            third.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")
            assert third.recv(100) == b""
        except ConnectionResetError:
            pass
        third.close()
        for h in held:
            h.close()
        # Their slots come back once they are gone.
        deadline = time.time() + 10
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=10)
                c.request("GET", "/login")
                assert c.getresponse().status == 200
                c.close()
                break
            except (ConnectionError, http.client.HTTPException):
                assert time.time() < deadline
                time.sleep(0.1)
    finally:
        discard(s)


def test_api_tokens(console):
    def token(*args):
        r = console.cli("api-token", "create", *args)
        return r.stdout.strip()

    def call(tok, method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", console.http_port, timeout=10)
        h = {"Authorization": f"Bearer {tok}"}
        data = None
        if body is not None:
            data = json.dumps(body)
            h["Content-Type"] = "application/json"
        c.request(method, "/api/v1" + path, body=data, headers=h)
        r = c.getresponse()
        out = json.loads(r.read() or b"null")
        c.close()
        return r.status, out

    # Refused for a mailbox that is no admin.
    r = console.cli("api-token", "create", "--for", "customseo@esoomllub.com", check=False)
    assert r.returncode != 0 and "not a domain admin" in r.stderr
    kent_token = token("--for", KENT)
    assert kent_token.startswith("prt_")
    # A token needs no CSRF token (a browser never sends one by itself)
    # and keeps the scope of its login.
    status, body = call(kent_token, "POST", "/domains/esoomllub.com/mailboxes",
                        {"local": "bytoken", "password": "by-token-secret"})
    assert status == 201, body
    assert call(kent_token, "GET", "/domains/other.example")[0] == 404
    assert call(kent_token, "POST", "/password", {"current": KENT_PW, "new": "x" * 12})[0] == 403
    # Read-only tokens read.
    ro = token("--for", PROVIDER, "--read-only")
    assert call(ro, "GET", "/domains/other.example")[0] == 200
    status, body = call(ro, "POST", "/domains", {"name": "readonly.example"})
    assert status == 403 and "only read" in body["error"]
    # An allow-list that does not hold the client.
    far = token("--for", PROVIDER, "--allow-from", "192.0.2.0/24")
    assert call(far, "GET", "/domains")[0] == 403
    near = token("--for", PROVIDER, "--allow-from", "127.0.0.0/8,::1")
    assert call(near, "GET", "/domains")[0] == 200
    # Unknown, revoked, or for a login that lost its rights: 401.
    assert call("prt_" + "x" * 43, "GET", "/domains")[0] == 401
    listing = console.cli("api-token", "list", "--for", PROVIDER).stdout
    assert kent_token not in listing and kent_token[4:] not in listing
    first_id = listing.split("\t")[0]
    console.cli("api-token", "revoke", first_id)
    assert call(ro, "GET", "/domains")[0] == 401
    console.cli("user", "admin", KENT, "--off")
    try:
        assert call(kent_token, "GET", "/domains")[0] == 401
    finally:
        console.cli("user", "admin", KENT)
    # Never a password for the mail protocols.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    m = imaplib.IMAP4_SSL("127.0.0.1", console.imaps_port, ssl_context=ctx, timeout=10)
    with pytest.raises(imaplib.IMAP4.error):
        m.login(KENT, kent_token)
    # The audit names the token's login and never the token.
    audit = console.cli("audit", "--object", "bytoken@esoomllub.com").stdout
    assert f"api:{KENT}" in audit
    assert kent_token[4:] not in console.cli("audit", "--limit", "1000").stdout
