"""Mail client autoconfiguration (issue #11): Thunderbird's autoconfig,
Outlook's Autodiscover (POX) and an Apple configuration profile, fetched
over loopback with http.client and read with xml.etree and plistlib as the
clients read them; only for hosted domains, everything escaped, malformed
requests refused with a 4xx."""

import http.client
import plistlib
import ssl
import urllib.parse
import xml.etree.ElementTree as ET

import pytest

from conftest import HOSTNAME, discard, free_port, make_server

ADDRESS = "kent@esoomllub.com"
TB = "{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}"
POX = """<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>{address}</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>"""


def get(port, path, method="GET", body=None, headers=None, https=False):
    if https:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx)
    else:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.headers, r.read()
    finally:
        c.close()


def check_thunderbird(s, data):
    root = ET.fromstring(data)
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    provider = root.find("emailProvider")
    assert provider.find("domain").text == "esoomllub.com"
    incoming = provider.findall("incomingServer")
    # Thunderbird takes the first server of a type: implicit TLS first.
    first = incoming[0]
    assert first.get("type") == "imap"
    assert first.find("hostname").text == HOSTNAME
    assert first.find("port").text == str(s.imaps_port)
    assert first.find("socketType").text == "SSL"
    assert first.find("username").text == "%EMAILADDRESS%"
    assert first.find("authentication").text == "password-cleartext"
    kinds = {(i.get("type"), i.find("port").text, i.find("socketType").text) for i in incoming}
    assert ("imap", str(s.imap_port), "STARTTLS") in kinds
    assert ("pop3", str(s.pop3s_port), "SSL") in kinds
    out = provider.findall("outgoingServer")[0]
    assert out.get("type") == "smtp"
    assert out.find("hostname").text == HOSTNAME
    assert out.find("port").text == str(s.submissions_port)
    assert out.find("socketType").text == "SSL"
    assert out.find("username").text == "%EMAILADDRESS%"


@pytest.fixture(scope="module")
def srv():
    s = make_server().start()
    yield s
    discard(s)


def test_thunderbird_autoconfig_both_paths(srv):
    q = urllib.parse.urlencode({"emailaddress": ADDRESS})
    status, h, data = get(srv.http_port, f"/.well-known/autoconfig/mail/config-v1.1.xml?{q}")
    assert status == 200, data
    assert h["Content-Type"].startswith("application/xml")
    assert h["X-Content-Type-Options"] == "nosniff"
    check_thunderbird(srv, data)
    # The autoconfig.DOMAIN host form, with and without the address.
    status, _, data = get(srv.http_port, f"/mail/config-v1.1.xml?{q}", headers={"Host": "autoconfig.esoomllub.com"})
    assert status == 200, data
    check_thunderbird(srv, data)
    status, _, data = get(srv.http_port, "/mail/config-v1.1.xml", headers={"Host": "autoconfig.esoomllub.com"})
    assert status == 200, data
    check_thunderbird(srv, data)


def test_unknown_domain_is_404(srv):
    q = urllib.parse.urlencode({"emailaddress": "someone@not-hosted.example"})
    for path in (f"/.well-known/autoconfig/mail/config-v1.1.xml?{q}", f"/apple/mail.mobileconfig?{q}"):
        status, _, data = get(srv.http_port, path)
        assert status == 404, (path, data)
        assert b"not-hosted" not in data
    status, _, _ = get(srv.http_port, "/mail/config-v1.1.xml", headers={"Host": "autoconfig.not-hosted.example"})
    assert status == 404
    status, _, _ = get(srv.http_port, "/autodiscover/autodiscover.xml", "POST",
                       POX.format(address="someone@not-hosted.example"), {"Content-Type": "text/xml"})
    assert status == 404


def test_outlook_autodiscover_pox(srv):
    for path in ("/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"):
        status, h, data = get(srv.http_port, path, "POST", POX.format(address=ADDRESS), {"Content-Type": "text/xml"})
        assert status == 200, data
        assert h["Content-Type"].startswith("application/xml")
        root = ET.fromstring(data)
        assert root.tag == "{http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006}Autodiscover"
        account = root.find(f"{TB}Response/{TB}Account")
        assert account.find(f"{TB}AccountType").text == "email"
        assert account.find(f"{TB}Action").text == "settings"
        protocols = {p.find(f"{TB}Type").text: p for p in account.findall(f"{TB}Protocol")}
        assert set(protocols) == {"IMAP", "SMTP"}
        for kind, port in (("IMAP", srv.imaps_port), ("SMTP", srv.submissions_port)):
            p = protocols[kind]
            assert p.find(f"{TB}Server").text == HOSTNAME
            assert p.find(f"{TB}Port").text == str(port)
            assert p.find(f"{TB}SSL").text == "on"
            assert p.find(f"{TB}LoginName").text == ADDRESS
            assert p.find(f"{TB}SPA").text == "off"


def test_autodiscover_refuses_malformed_xml(srv):
    for body in (
        "not xml at all",
        "<Autodiscover><Request><EMailAddress>kent@esoomllub.com</Request></Autodiscover>",
        '<!DOCTYPE a [<!ENTITY e "kent@esoomllub.com">]><Autodiscover><Request>'
        "<EMailAddress>&e;</EMailAddress></Request></Autodiscover>",
        "<Autodiscover><Request></Request></Autodiscover>",
        "",
    ):
        status, _, data = get(srv.http_port, "/autodiscover/autodiscover.xml", "POST", body, {"Content-Type": "text/xml"})
        assert 400 <= status < 500, (body, status, data)
    # Oversized: refused before parsing.
    big = POX.format(address=ADDRESS).replace("<Request>", "<Request>" + " " * 100_000)
    status, _, _ = get(srv.http_port, "/autodiscover/autodiscover.xml", "POST", big, {"Content-Type": "text/xml"})
    assert status == 413


def test_apple_mobileconfig(srv):
    q = urllib.parse.urlencode({"emailaddress": ADDRESS})
    status, h, data = get(srv.http_port, f"/apple/mail.mobileconfig?{q}")
    assert status == 200, data
    assert h["Content-Type"] == "application/x-apple-aspen-config"
    profile = plistlib.loads(data)
    assert profile["PayloadType"] == "Configuration"
    (mail,) = profile["PayloadContent"]
    assert mail["PayloadType"] == "com.apple.mail.managed"
    assert mail["EmailAccountType"] == "EmailTypeIMAP"
    assert mail["EmailAddress"] == ADDRESS
    assert mail["IncomingMailServerHostName"] == HOSTNAME
    assert mail["IncomingMailServerPortNumber"] == srv.imaps_port
    assert mail["IncomingMailServerUseSSL"] is True
    assert mail["IncomingMailServerUsername"] == ADDRESS
    assert mail["OutgoingMailServerHostName"] == HOSTNAME
    assert mail["OutgoingMailServerPortNumber"] == srv.submissions_port
    assert mail["OutgoingMailServerUseSSL"] is True
    assert profile["PayloadUUID"] != mail["PayloadUUID"]
    # Stable per address, different for another.
    again = plistlib.loads(get(srv.http_port, f"/apple/mail.mobileconfig?{q}")[2])
    assert again["PayloadUUID"] == profile["PayloadUUID"]
    q2 = urllib.parse.urlencode({"emailaddress": "customseo@esoomllub.com"})
    other = plistlib.loads(get(srv.http_port, f"/apple/mail.mobileconfig?{q2}")[2])
    assert other["PayloadUUID"] != profile["PayloadUUID"]
    assert other["PayloadContent"][0]["PayloadUUID"] != mail["PayloadUUID"]


def test_hostile_addresses_refused_or_escaped(srv):
    hostile = [
        '"<script>&\'x"@esoomllub.com',
        "a<b>@esoomllub.com",
        "x&y@esoomllub.com",
        "a" * 5000 + "@esoomllub.com",
        "kent@" + "a" * 300 + ".com",
        "no-at-sign",
    ]
    # A quoted local part may hold markup: it is a valid address, served
    # escaped.
    q = urllib.parse.urlencode({"emailaddress": hostile[0]})
    status, _, data = get(srv.http_port, f"/apple/mail.mobileconfig?{q}")
    assert status == 200 and b"<script>" not in data
    assert plistlib.loads(data)["PayloadContent"][0]["EmailAddress"] == hostile[0]
    for a in hostile:
        q = urllib.parse.urlencode({"emailaddress": a})
        for path in (f"/.well-known/autoconfig/mail/config-v1.1.xml?{q}", f"/apple/mail.mobileconfig?{q}"):
            status, _, data = get(srv.http_port, path)
            assert status < 500, (a, path, status)
            if status == 200:
                # Escaped: the document still parses, the address intact.
                if path.startswith("/apple"):
                    assert plistlib.loads(data)["PayloadContent"][0]["EmailAddress"] == a
                else:
                    ET.fromstring(data)
            else:
                assert 400 <= status < 500
        esc = a.replace("&", "&amp;").replace("<", "&lt;")
        status, _, data = get(srv.http_port, "/autodiscover/autodiscover.xml", "POST", POX.format(address=esc),
                              {"Content-Type": "text/xml"})
        assert status < 500, (a, status)
        if status == 200:
            root = ET.fromstring(data)
            names = [e.text for e in root.iter(f"{TB}LoginName")]
            assert names and all(n == a for n in names)
        else:
            assert 400 <= status < 500


def test_answered_on_the_redirect_listener_and_https():
    """Production: port 80 redirects everything else to https://, but
    answers autoconfig itself (Thunderbird asks http://autoconfig.DOMAIN/
    first); HTTPS answers it too."""
    https_port = free_port()
    s = make_server(extra_http=f'tls_listen = ["127.0.0.1:{https_port}"]').start()
    try:
        q = urllib.parse.urlencode({"emailaddress": ADDRESS})
        status, h, data = get(s.http_port, "/mail/config-v1.1.xml", headers={"Host": "autoconfig.esoomllub.com"})
        assert status == 200, data
        assert h["X-Content-Type-Options"] == "nosniff" and "frame-ancestors 'none'" in h["Content-Security-Policy"]
        check_thunderbird(s, data)
        status, _, _ = get(s.http_port, "/login", headers={"Host": "mail.example.com"})
        assert status == 308
        status, _, _ = get(s.http_port, "/mail/config-v1.1.xml?emailaddress=x@not-hosted.example")
        assert status == 404
        # Outlook's HTTP redirect method: a GET on port 80 is sent to the
        # server's own HTTPS name, where it POSTs.
        status, h, _ = get(s.http_port, "/autodiscover/autodiscover.xml", headers={"Host": "autodiscover.esoomllub.com"})
        assert status == 302 and h["Location"] == f"https://{HOSTNAME}/autodiscover/autodiscover.xml"
        status, _, _ = get(https_port, "/autodiscover/autodiscover.xml", https=True)
        assert status == 405
        status, _, data = get(https_port, f"/.well-known/autoconfig/mail/config-v1.1.xml?{q}", https=True)
        assert status == 200, data
        check_thunderbird(s, data)
        status, _, data = get(https_port, "/autodiscover/autodiscover.xml", "POST", POX.format(address=ADDRESS),
                              {"Content-Type": "text/xml"}, https=True)
        assert status == 200, data
        status, _, data = get(https_port, f"/apple/mail.mobileconfig?{q}", https=True)
        assert status == 200 and plistlib.loads(data)["PayloadContent"][0]["EmailAddress"] == ADDRESS
    finally:
        discard(s)
