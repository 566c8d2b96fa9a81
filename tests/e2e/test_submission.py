"""Submission as Outlook, Thunderbird or a phone uses it (587/2525 with
STARTTLS, 465 with implicit TLS, AUTH PLAIN and LOGIN with the mailbox
login), and the seed's section C5 swaks transcript adapted to Postroom's
secure defaults."""

import imaplib
import re
import smtplib
import socket
import ssl
import subprocess
import time

from conftest import HOSTNAME


def insecure():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def swaks(*args):
    r = subprocess.run(["swaks", "--helo", "client.example.org", *args], capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


def test_seed_c5_transcript(server):
    host = ["-s", "127.0.0.1"]
    code, out = swaks(*host, "-p", str(server.port), "-f", "jlarsen@richweb.example", "-t", "jlarsen@richweb.example")
    assert "<** 554 5.7.1" in out
    code, out = swaks(*host, "-p", str(server.port), "-f", "jlarsen@richweb.example", "-t", "customseo@esoomllub.com")
    assert re.search(r"<- +250 2\.0\.0 Ok: queued as \S+", out), out
    code, out = swaks(*host, "-p", str(server.submission_port), "-tls", "-f", "customseo@esoomllub.com",
                      "-t", "jlarsen@richweb.example", "-au", "customseo@esoomllub.com", "-ap", "99test99")
    assert code == 0, out
    assert re.search(r"<~ +250 2\.0\.0 Ok: queued as \S+", out), out
    code, out = swaks(*host, "-p", str(server.submission_port), "-tls", "-f", "customseo@esoomllub.com",
                      "-t", "jlarsen@richweb.example", "-au", "customseo@esoomllub.com", "-ap", "99test9XX")
    assert code != 0
    assert "<~* 535 5.7.8" in out
    # The relayed message waits in the outbound queue.
    assert [q[3] for q in server.queue() if q[1] in ("queued", "deferred")] == ["jlarsen@richweb.example"]


def test_auth_login_over_implicit_tls_and_fixes(server):
    with smtplib.SMTP_SSL("127.0.0.1", server.submissions_port, context=insecure()) as s:
        s.ehlo("laptop.example")
        assert "PLAIN" in s.esmtp_features["auth"] and "LOGIN" in s.esmtp_features["auth"]
        s.login("customseo@esoomllub.com", "99test99", initial_response_ok=False)
        s.sendmail("customseo@esoomllub.com", ["dbrooks@esoomllub.com"],
                   b"From: SEO <customseo@esoomllub.com>\r\nSubject: hi\r\n\r\nno date, no message-id\r\n")
        code, msg = s.docmd("AUTH PLAIN AGN1c3RvbXNlb0Blc29vbWxsdWIuY29tADk5dGVzdDk5")
        assert (code, msg[:5]) == (503, b"5.5.1")
    stored = server.show("dbrooks@esoomllub.com", 1)
    head = stored.split("\r\n\r\n")[0].replace("\r\n", "\n")
    assert re.search(r"^Message-ID: <\S+@" + re.escape(HOSTNAME) + ">$", head, re.M)
    assert re.search(r"^Date: ", head, re.M)
    assert "with ESMTPSA" in head
    assert "127.0.0.1" not in head  # the client's address stays private


def test_starttls_and_auth_are_required(server):
    with smtplib.SMTP("127.0.0.1", server.submission_port) as s:
        s.ehlo("laptop.example")
        assert "auth" not in s.esmtp_features and s.has_extn("starttls")
        code, msg = s.docmd("MAIL FROM:<customseo@esoomllub.com>")
        assert (code, msg) == (530, b"5.7.0 Must issue a STARTTLS command first")
        code, msg = s.docmd("AUTH PLAIN AGN1c3RvbXNlb0Blc29vbWxsdWIuY29tADk5dGVzdDk5")
        assert (code, msg[:6]) == (538, b"5.7.11")
        s.starttls(context=insecure())
        s.ehlo("laptop.example")
        code, msg = s.docmd("MAIL FROM:<customseo@esoomllub.com>")
        assert (code, msg[:5]) == (530, b"5.7.0")


def test_senders_must_be_the_users_own(server):
    server.cli("alias", "add", "sales@esoomllub.com", "customseo@esoomllub.com")
    server.cli("alias", "add", "team@esoomllub.com", "customseo,dbrooks")
    with smtplib.SMTP("127.0.0.1", server.submission_port) as s:
        s.starttls(context=insecure())
        s.login("customseo@esoomllub.com", "99test99")
        for ok in ["customseo@esoomllub.com", "customseo+shop@esoomllub.net", "sales@esoomllub.com", ""]:
            code, _ = s.mail(ok) if ok else s.docmd("MAIL FROM:<>")
            assert code == 250, ok
            s.rset()
        for bad in ["dbrooks@esoomllub.com", "team@esoomllub.com", "ceo@bigbank.example"]:
            code, msg = s.mail(bad)
            assert (code, msg[:5]) == (553, b"5.7.1"), bad
            s.rset()
        s.mail("customseo@esoomllub.com")
        s.rcpt("someone@elsewhere.example")
        code, msg = s.data(b"From: The CEO <ceo@bigbank.example>\r\nSubject: wire money\r\n\r\nnow\r\n")
        assert (code, msg[:5]) == (550, b"5.7.1")


def test_a_second_from_is_refused_and_from_is_read_as_imap_shows_it(server):
    """Issue #8: `From: bob` then `From: alice` (the user's own) was accepted
    (the check read the last From, the recipient's ENVELOPE the first);
    `From :` was skipped by the check; a quoted local part was refused."""
    with smtplib.SMTP("127.0.0.1", server.submission_port) as s:
        s.starttls(context=insecure())
        s.login("customseo@esoomllub.com", "99test99")
        for head in [b"From: dbrooks@esoomllub.com\r\nFrom: customseo@esoomllub.com\r\n",
                     b"From : dbrooks@esoomllub.com\r\nFrom: customseo@esoomllub.com\r\n",
                     b"From: customseo@esoomllub.com\r\nFrom: customseo@esoomllub.com\r\n"]:
            s.mail("customseo@esoomllub.com")
            s.rcpt("dbrooks@esoomllub.com")
            code, msg = s.data(head + b"Subject: spoof\r\n\r\nx\r\n")
            assert (code, msg[:5]) == (550, b"5.7.1"), (head, msg)
            assert b"more than one From:" in msg, msg
        s.mail("customseo@esoomllub.com")
        s.rcpt("dbrooks@esoomllub.com")
        code, msg = s.data(b"From : dbrooks@esoomllub.com\r\nSubject: spoof\r\n\r\nx\r\n")
        assert (code, msg[:5]) == (550, b"5.7.1"), msg
        s.mail("customseo@esoomllub.com")
        s.rcpt("customseo@esoomllub.com")
        code, msg = s.data(b'From: "customseo"@esoomllub.com\r\nSubject: quoted\r\n\r\nx\r\n')
        assert code == 250, msg
    # The recipient's client is shown that address.
    m = imaplib.IMAP4_SSL("127.0.0.1", server.imaps_port, ssl_context=insecure(), timeout=10)
    m.login("customseo@esoomllub.com", "99test99")
    m.select("INBOX")
    typ, data = m.fetch("1", "(ENVELOPE)")
    assert typ == "OK"
    assert b'((NIL NIL "customseo" "esoomllub.com"))' in data[0], data
    m.logout()


def test_mx_port_offers_auth_after_starttls(server):
    with smtplib.SMTP("127.0.0.1", server.port) as s:
        s.ehlo("laptop.example")
        assert "auth" not in s.esmtp_features
        s.starttls(context=insecure())
        s.ehlo("laptop.example")
        assert "auth" in s.esmtp_features
        s.login("customseo@esoomllub.com", "99test99")
        s.sendmail("customseo@esoomllub.com", ["friend@elsewhere.example"], b"Subject: via mx\r\n\r\nx\r\n")
    assert "friend@elsewhere.example" in [q[3] for q in server.queue()]


def test_submission_takes_a_thousand_recipients(server):
    with smtplib.SMTP("127.0.0.1", server.submission_port) as s:
        s.starttls(context=insecure())
        s.login("customseo@esoomllub.com", "99test99")
        s.mail("customseo@esoomllub.com")
        for i in range(1000):
            assert s.rcpt(f"r{i}@elsewhere.example")[0] == 250
        code, msg = s.rcpt("r1000@elsewhere.example")
        assert (code, msg[:5]) == (452, b"4.5.3")
        assert s.data(b"Subject: newsletter\r\n\r\nx\r\n")[0] == 250
    assert len([q for q in server.queue() if q[1] in ("queued", "deferred")]) == 1000


def test_sending_limits_refuse_then_hold(server_factory):
    server = server_factory(extra_toml="").start()
    with open(server.config) as f:
        cfg = f.read().replace("[submission]\n", "[submission]\nmax_messages_per_user_per_hour = 2\nhold_after_caps = 1\n", 1)
    with open(server.config, "w") as f:
        f.write(cfg)
    server.stop()
    server.start()
    with smtplib.SMTP("127.0.0.1", server.submission_port) as s:
        s.starttls(context=insecure())
        s.login("customseo@esoomllub.com", "99test99")
        for i in range(2):
            s.sendmail("customseo@esoomllub.com", ["x@elsewhere.example"], b"Subject: ok\r\n\r\nx\r\n")
        code, msg = s.mail("customseo@esoomllub.com")
        assert (code, msg[:5]) == (451, b"4.7.1")
        s.rset()
    # Far past the cap: the next message flags the account, and what it
    # queued is held for the admin.
    with smtplib.SMTP("127.0.0.1", server.submission_port) as s:
        s.starttls(context=insecure())
        s.login("customseo@esoomllub.com", "99test99")
        s.mail("customseo@esoomllub.com")
        s.rset()
        try:
            s.sendmail("customseo@esoomllub.com", ["y@elsewhere.example"], b"Subject: more\r\n\r\nx\r\n")
        except smtplib.SMTPException:
            pass
    assert "sending limit" in server.read_log()
    states = {q[1] for q in server.queue() if q[2] == "customseo@esoomllub.com"}
    assert states == {"held"}, server.queue()


def submission_settings(server, settings):
    """Adds settings to the [submission] table of a server not yet started."""
    with open(server.config) as f:
        cfg = f.read()
    cfg = cfg.replace("[submission]\n", "[submission]\n" + settings + "\n", 1)
    with open(server.config, "w") as f:
        f.write(cfg)


def raw_banner(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        return s.recv(512).decode()


def fill_connections(port, n):
    """`n` connections greeted with 220. The harness's readiness probe has
    just closed its connection; until the server has seen that, its slot
    is still taken, so a 421 is retried for a little while."""
    conns = []
    deadline = time.monotonic() + 10
    while len(conns) < n:
        c = socket.create_connection(("127.0.0.1", port), timeout=10)
        banner = c.recv(512)
        if banner.startswith(b"220"):
            conns.append(c)
            continue
        c.close()
        assert banner.startswith(b"421") and time.monotonic() < deadline, banner
        time.sleep(0.1)
    return conns


def test_submission_is_served_while_the_mx_is_full(server_factory):
    # Issue #8: ports 25, 587 and 465 shared one limiter, so idle MX
    # connections (from anyone, or from an office's own NAT address) made
    # submission answer every user 421.
    server = server_factory(extra_smtp="max_connections_per_client = 3").start()
    mx = fill_connections(server.port, 3)
    assert raw_banner(server.port).startswith("421 4.7.0")
    with smtplib.SMTP_SSL("127.0.0.1", server.submissions_port, context=insecure()) as s:
        s.login("customseo@esoomllub.com", "99test99")
        s.sendmail("customseo@esoomllub.com", ["dbrooks@esoomllub.com"], b"Subject: still here\r\n\r\nx\r\n")
    with smtplib.SMTP("127.0.0.1", server.submission_port) as s:
        s.starttls(context=insecure())
        s.login("customseo@esoomllub.com", "99test99")
    for c in mx:
        c.close()
    assert len(server.messages("dbrooks@esoomllub.com")) == 1


def test_logged_in_connections_have_a_pool_of_their_own(server_factory):
    server = server_factory()
    submission_settings(server, "max_connections_per_client = 2\nmax_authenticated_connections_per_client = 5")
    server.start()
    users = []
    for _ in range(3):
        s = smtplib.SMTP_SSL("127.0.0.1", server.submissions_port, context=insecure())
        s.login("customseo@esoomllub.com", "99test99")
        users.append(s)
    # Three logged in, yet two unauthenticated connections still fit...
    waiting = [socket.create_connection(("127.0.0.1", server.submission_port), timeout=10) for _ in range(2)]
    assert all(c.recv(512).startswith(b"220") for c in waiting)
    # ...and no more: those cannot push logged-in users out.
    assert raw_banner(server.submission_port).startswith("421 4.7.0")
    for s in users:
        s.sendmail("customseo@esoomllub.com", ["dbrooks@esoomllub.com"], b"Subject: in\r\n\r\nx\r\n")
        s.quit()
    for c in waiting:
        c.close()
    assert len(server.messages("dbrooks@esoomllub.com")) == 3
