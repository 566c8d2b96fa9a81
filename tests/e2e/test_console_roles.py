"""Issue #11's roles and limits over the real server: customers with caps
made by a provider admin through the API, the caps refusing the next
mailbox with a 4xx (never a 5xx) whoever asks, and a domain admin of one
customer unable to see or change another customer's domain."""

import pytest

from conftest import discard, make_server
from test_console import Browser

PROVIDER = "staff@provider.example"
PROVIDER_PW = "provider-secret-2"
ANNA = "anna@a-customer.example"
ANNA_PW = "anna-secret-1"


@pytest.fixture(scope="module")
def roles():
    s = make_server()
    s.cli("admin", "add", PROVIDER, "--password-stdin", input=PROVIDER_PW + "\n")
    s.cli("domain", "add", "a-customer.example")
    s.cli("domain", "add", "b-customer.example")
    s.cli("user", "add", ANNA, "--password-stdin", "--domain-admin", input=ANNA_PW + "\n")
    s.cli("user", "add", "bob@b-customer.example", "--password-stdin", input="bob-secret-12\n")
    s.start()
    yield s
    discard(s)


def login(s, who, pw):
    b = Browser(s.http_port)
    status, _, _, _ = b.login(who, pw)
    assert status == 303, status
    return b


def test_customers_and_caps_over_the_api(roles):
    p = login(roles, PROVIDER, PROVIDER_PW)
    status, body = p.api("POST", "/customers", {"name": "acme", "max_mailboxes": 2, "max_domains": 1})
    assert status == 201, body
    assert body["caps"]["max_mailboxes"] == 2 and body["usage"]["mailboxes"] == 0
    status, body = p.api("POST", "/customers", {"name": "acme"})
    assert status == 409, body
    status, body = p.api("POST", "/customers", {"name": "x", "unknown": 1})
    assert 400 <= status < 500, body
    status, body = p.api("PATCH", "/customers/acme", {"add_domains": ["a-customer.example"]})
    assert status == 200 and body["domains"] == ["a-customer.example"], body
    assert body["usage"]["mailboxes"] == 1
    # The domains cap: a second domain is refused, naming the cap.
    status, body = p.api("POST", "/domains", {"name": "a-second.example", "customer": "acme"})
    assert status == 409 and "domains cap" in body["error"], body
    status, body = p.api("PATCH", "/customers/acme", {"add_domains": ["b-customer.example"]})
    assert status == 409 and "domains cap" in body["error"], body
    # The mailboxes cap: the second fits, the third is refused with a 4xx
    # (never 5xx), and nothing is made.
    status, body = p.api("POST", "/domains/a-customer.example/mailboxes",
                         {"local": "two", "password": "two-secret-123"})
    assert status == 201, body
    status, body = p.api("POST", "/domains/a-customer.example/mailboxes",
                         {"local": "three", "password": "three-secret-123"})
    assert status == 409 and "mailboxes cap" in body["error"], body
    status, _ = p.api("GET", "/domains/a-customer.example/mailboxes/three")
    assert status == 404
    # The CLI is refused by the same check.
    r = roles.cli("user", "add", "three@a-customer.example", "--password-stdin",
                  input="three-secret-123\n", check=False)
    assert r.returncode != 0 and "mailboxes cap" in r.stderr, r.stderr
    # A domain admin is refused too: the cap is the customer's, not the
    # session's.
    anna = login(roles, ANNA, ANNA_PW)
    status, body = anna.api("POST", "/domains/a-customer.example/mailboxes",
                            {"local": "four", "password": "four-secret-123"})
    assert status == 409 and "mailboxes cap" in body["error"], body
    # Raised, the next one fits.
    status, body = p.api("PATCH", "/customers/acme", {"max_mailboxes": None})
    assert status == 200 and body["caps"]["max_mailboxes"] is None, body
    status, body = anna.api("POST", "/domains/a-customer.example/mailboxes",
                            {"local": "four", "password": "four-secret-123"})
    assert status == 201, body
    status, body = p.api("GET", "/customers/acme")
    assert status == 200 and body["usage"]["mailboxes"] == 3, body
    audit = roles.cli("audit", "--object", "acme").stdout
    assert "customer.add" in audit and "customer.set" in audit and f"api:{PROVIDER}" in audit, audit


def test_customers_are_for_provider_staff_only(roles):
    anna = login(roles, ANNA, ANNA_PW)
    for method, path, body in (
        ("GET", "/customers", None),
        ("POST", "/customers", {"name": "mine", "max_mailboxes": 1000}),
        ("GET", "/customers/acme", None),
        ("PATCH", "/customers/acme", {"max_mailboxes": 1000}),
        ("DELETE", "/customers/acme", None),
    ):
        status, answer = anna.api(method, path, body)
        assert status == 403, (method, path, status, answer)


def test_a_domain_admin_never_reaches_another_customers_domain(roles):
    p = login(roles, PROVIDER, PROVIDER_PW)
    p.api("POST", "/customers", {"name": "globex"})
    status, body = p.api("PATCH", "/customers/globex", {"add_domains": ["b-customer.example"]})
    assert status == 200, body
    anna = login(roles, ANNA, ANNA_PW)
    status, body = anna.api("GET", "/domains")
    assert status == 200 and [d["name"] for d in body] == ["a-customer.example"], body
    for method, path, body in (
        ("GET", "/domains/b-customer.example", None),
        ("GET", "/domains/b-customer.example/mailboxes", None),
        ("GET", "/domains/b-customer.example/mailboxes/bob", None),
        ("PATCH", "/domains/b-customer.example/mailboxes/bob", {"enabled": False}),
        ("DELETE", "/domains/b-customer.example/mailboxes/bob", None),
        ("POST", "/domains/b-customer.example/mailboxes", {"local": "evil", "password": "evil-secret-123"}),
        ("POST", "/domains/b-customer.example/aliases", {"local": "evil", "members": ["anna@a-customer.example"]}),
    ):
        status, answer = anna.api(method, path, body)
        assert status in (403, 404), (method, path, status, answer)
    assert "evil" not in roles.cli("user", "list", "b-customer.example").stdout
    status, body = p.api("GET", "/domains/b-customer.example/mailboxes/bob")
    assert status == 200 and body["enabled"] is True, body


def test_the_customers_page(roles):
    p = login(roles, PROVIDER, PROVIDER_PW)
    status, _, page, _ = p.request("GET", "/customers")
    assert status == 200 and b"Customers" in page
    csrf = p.csrf()
    status, headers, _, _ = p.request("POST", "/customers", {
        "csrf": csrf, "name": "initech", "max_mailboxes": "5", "max_storage": "10G", "add_domain": ""})
    assert status == 303 and headers["Location"] == "/customers?done=created", status
    status, _, page, _ = p.request("GET", "/customers")
    assert b"initech" in page and b"0 of 5" in page and b"0 bytes of 10G" in page, page
    # Without the CSRF token nothing changes; HTML in a name is refused.
    status, _, _, _ = p.request("POST", "/customers", {"csrf": "wrong", "name": "evil"})
    assert status == 403
    status, _, page, _ = p.request("POST", "/customers", {"csrf": csrf, "name": "<b>x</b>"})
    assert 400 <= status < 500 and b"<b>x</b>" not in page, status
    assert "evil" not in roles.cli("customer", "list").stdout
    # A domain admin is refused the page and its form.
    anna = login(roles, ANNA, ANNA_PW)
    status, _, _, _ = anna.request("GET", "/customers")
    assert status == 403
    status, _, _, _ = anna.request("POST", "/customers", {"csrf": anna.csrf(), "name": "mine"})
    assert status == 403
    assert "mine" not in roles.cli("customer", "list").stdout


def test_domain_admin_permissions(roles):
    p = login(roles, PROVIDER, PROVIDER_PW)
    anna = login(roles, ANNA, ANNA_PW)
    s, body = p.api("POST", "/domains/a-customer.example/mailboxes", {"local": "carl", "password": "carl-secret-123"})
    assert s in (201, 409), body
    # Without the quotas permission a domain admin sets no quota.
    s, body = anna.api("PATCH", "/domains/a-customer.example/mailboxes/carl", {"quota": "1G"})
    assert s == 403 and "quotas" in body["error"], body
    # Nobody grants what they do not hold, nor changes their own role.
    s, body = anna.api("PUT", "/domains/a-customer.example/mailboxes/carl/role",
                       {"domain_admin": True, "permissions": ["quotas"]})
    assert s == 403 and "quotas" in body["error"], body
    s, body = anna.api("PUT", "/domains/a-customer.example/mailboxes/anna/role",
                       {"domain_admin": True, "permissions": ["quotas"]})
    assert s == 403, body
    # The provider gives anna quotas (and the CLI shows the same rule).
    s, body = p.api("PUT", "/domains/a-customer.example/mailboxes/anna/role",
                    {"domain_admin": True, "permissions": ["quotas", "quarantine"]})
    assert s == 200 and body["permissions"] == ["quarantine", "quotas"], body
    s, body = anna.api("PATCH", "/domains/a-customer.example/mailboxes/carl", {"quota": "1G"})
    assert s == 200 and body["quota"] == 1 << 30, body
    # Now anna may pass quotas on, but not gateway.
    s, body = anna.api("PUT", "/domains/a-customer.example/mailboxes/carl/role",
                       {"domain_admin": True, "permissions": ["quotas", "gateway"]})
    assert s == 403 and "gateway" in body["error"], body
    s, body = anna.api("PUT", "/domains/a-customer.example/mailboxes/carl/role",
                       {"domain_admin": True, "permissions": ["quotas"]})
    assert s == 200 and body == {"domain_admin": True, "permissions": ["quotas"]}, body
    s, body = anna.api("GET", "/domains/a-customer.example/mailboxes/carl/role")
    assert s == 200 and body["permissions"] == ["quotas"], body
    # Another customer's mailbox: as if it did not exist.
    s, body = anna.api("PUT", "/domains/b-customer.example/mailboxes/bob/role",
                       {"domain_admin": True, "permissions": []})
    assert s == 404, body
    s, body = anna.api("PUT", "/domains/a-customer.example/mailboxes/carl/role",
                       {"domain_admin": True, "permissions": ["root"]})
    assert s == 422, body
    audit = roles.cli("audit", "--object", "carl@a-customer.example").stdout
    assert "user.role" in audit and f"api:{ANNA}" in audit, audit
    r = roles.cli("user", "admin", "carl@a-customer.example", "--permissions", "gateway")
    assert "permissions: gateway" in r.stdout, r.stdout


def test_manage_this_domain(roles):
    roles.cli("admin", "add", "aide@provider.example", "--password-stdin", input="aide-secret-123\n")
    aide = login(roles, "aide@provider.example", "aide-secret-123")
    # Without the permission: refused, whatever the session asks.
    s, body = aide.api("POST", "/domains/a-customer.example/act-as")
    assert s == 403 and "manage-domains" in body["error"], body
    roles.cli("admin", "set", "aide@provider.example", "--manage-domains")
    s, body = aide.api("POST", "/domains/a-customer.example/act-as")
    assert s == 200 and body["role"] == "acting-domain-admin" and body["domain"] == "a-customer.example", body
    # Now scoped as the domain's admin: its domain only, no customers.
    s, body = aide.api("GET", "/domains")
    assert s == 200 and [d["name"] for d in body] == ["a-customer.example"], body
    s, _ = aide.api("GET", "/domains/b-customer.example/mailboxes/bob")
    assert s == 404
    s, _ = aide.api("GET", "/customers")
    assert s == 403
    s, body = aide.api("GET", "/domains/a-customer.example/mailboxes/anna")
    assert s == 200, body
    audit = roles.cli("audit", "--domain", "a-customer.example").stdout
    line = [l for l in audit.splitlines() if "domain.act-as" in l]
    assert line and "api:aide@provider.example" in line[0] and "127.0.0.1" in line[0], audit
    s, body = aide.api("POST", "/act-as/end")
    assert s == 200 and body["role"] == "provider", body
    s, body = aide.api("GET", "/customers")
    assert s == 200
    # Taken away while acting: the session ends at the next request.
    aide.api("POST", "/domains/a-customer.example/act-as")
    roles.cli("admin", "set", "aide@provider.example", "--manage-domains=false")
    s, _ = aide.api("GET", "/domains")
    assert s == 401
    # A domain admin cannot act as another domain's admin.
    anna = login(roles, ANNA, ANNA_PW)
    s, _ = anna.api("POST", "/domains/b-customer.example/act-as")
    assert s == 403


def test_manage_this_domain_from_the_console(roles):
    roles.cli("admin", "add", "desk@provider.example", "--password-stdin", input="desk-secret-123\n")
    roles.cli("admin", "set", "desk@provider.example", "--manage-domains")
    desk = login(roles, "desk@provider.example", "desk-secret-123")
    status, _, page, _ = desk.request("GET", "/domains/a-customer.example")
    assert status == 200 and b"Manage this domain as its admin" in page
    csrf = desk.csrf()
    status, _, _, _ = desk.request("POST", "/domains/a-customer.example/act-as", {"csrf": "wrong"})
    assert status == 403
    status, headers, _, _ = desk.request("POST", "/domains/a-customer.example/act-as", {"csrf": csrf})
    assert status == 303 and headers["Location"] == "/domains/a-customer.example", status
    status, _, page, _ = desk.request("GET", "/domains")
    assert b"a-customer.example" in page and b"b-customer.example" not in page
    status, _, page, _ = desk.request("GET", "/domains/a-customer.example")
    assert b"You are managing this domain" in page
    status, headers, _, _ = desk.request("POST", "/act-as/end", {"csrf": csrf})
    assert status == 303
    status, _, page, _ = desk.request("GET", "/domains")
    assert b"b-customer.example" in page
    audit = roles.cli("audit", "--domain", "a-customer.example").stdout
    assert "api:desk@provider.example" in audit, audit
