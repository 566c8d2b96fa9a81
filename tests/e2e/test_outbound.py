"""Outbound delivery to a real SMTP server on loopback (aiosmtpd), with MX
and A records from a DNS server the test runs on 127.0.0.1 (dnsmasq):
delivery, a retry after 451, a bounce after 550, delivery after the
receiver comes back, A-record fallback."""

import shutil
import smtplib
import ssl
import subprocess
import threading
import time

import pytest

from conftest import free_port, make_server


def insecure():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Receiver:
    """An aiosmtpd server that keeps what it receives and refuses some
    recipients as told."""

    def __init__(self, port, smtputf8=True):
        from aiosmtpd.controller import Controller

        self.messages = []
        self.seen_451 = set()
        outer = self

        class Handler:
            async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
                if address.startswith("nobody@"):
                    return "550 5.1.1 <%s>: no such user here" % address
                if address.startswith("later@") and address not in outer.seen_451:
                    outer.seen_451.add(address)
                    return "451 4.3.0 try again later"
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server, session, envelope):
                outer.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
                return "250 2.0.0 Ok: stored"

        self.handler = Handler()
        self.port = port
        self.controller = None
        self.make = lambda: Controller(self.handler, hostname="127.0.0.1", port=self.port, enable_SMTPUTF8=smtputf8)

    def start(self):
        # A controller cannot be restarted: each start is a new one.
        self.controller = self.make()
        self.controller.start()
        return self

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def dns_and_receiver():
    dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not shutil.os.path.exists(dnsmasq):
        pytest.skip("dnsmasq not installed")
    pytest.importorskip("aiosmtpd")
    dns_port, smtp_port = free_port(), free_port()
    dns = subprocess.Popen(
        [dnsmasq, "--no-daemon", "--keep-in-foreground", f"--port={dns_port}", "--listen-address=127.0.0.1",
         "--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
         "--mx-host=remote.example,mx.remote.example,10",
         "--address=/mx.remote.example/127.0.0.1",
         "--address=/aonly.example/127.0.0.1",
         "--mx-host=nullmx.example,.,0", "--local=/nullmx.example/",
         # Authoritative for the test names: NODATA/NXDOMAIN, not REFUSED.
         "--local=/remote.example/", "--local=/aonly.example/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    receiver = Receiver(smtp_port).start()
    yield dns_port, smtp_port, receiver
    receiver.stop()
    dns.terminate()
    dns.wait()


def outbound_server(dns_port, smtp_port):
    s = make_server(extra_toml=f"""
[queue]
remote_port = {smtp_port}
retry_min_secs = 1
retry_max_secs = 2
""")
    with open(s.config) as f:
        cfg = f.read().replace("[dns]\nenabled = false", f'[dns]\nenabled = true\nresolvers = ["127.0.0.1:{dns_port}"]')
    with open(s.config, "w") as f:
        f.write(cfg)
    return s.start()


def submit(server, to, subject="hello"):
    with smtplib.SMTP("127.0.0.1", server.submission_port) as s:
        s.starttls(context=insecure())
        s.login("customseo@esoomllub.com", "99test99")
        s.sendmail("customseo@esoomllub.com", to if isinstance(to, list) else [to],
                   f"From: customseo@esoomllub.com\r\nSubject: {subject}\r\n\r\nbody\r\n".encode())


def wait_for(pred, seconds=15):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def test_delivery_retry_bounce_and_fallback(dns_and_receiver):
    dns_port, smtp_port, receiver = dns_and_receiver
    server = outbound_server(dns_port, smtp_port)
    try:
        submit(server, ["friend@remote.example", "other@aonly.example"], "to the world")
        assert wait_for(lambda: len(receiver.messages) >= 2), server.read_log()[-3000:]
        got = {tuple(m[1]) for m in receiver.messages}
        assert ("friend@remote.example",) in got and ("other@aonly.example",) in got
        mail_from, _, content = receiver.messages[0]
        assert mail_from == "customseo@esoomllub.com"
        assert b"Subject: to the world" in content
        assert wait_for(lambda: server.queue() == [])

        # 451 first: retried and delivered.
        submit(server, "later@remote.example", "patience")
        assert wait_for(lambda: any("later@remote.example" in m[1] for m in receiver.messages), 20)

        # 550: the sender gets a bounce in their mailbox.
        submit(server, "nobody@remote.example", "into the void")
        assert wait_for(lambda: len(server.messages("customseo@esoomllub.com")) == 1)
        dsn = server.show("customseo@esoomllub.com", 1)
        assert "Undelivered Mail Returned to Sender" in dsn
        assert "Final-Recipient: rfc822; nobody@remote.example" in dsn
        assert "Status: 5.1.1" in dsn
        assert "Subject: into the void" in dsn
        assert "Return-Path: <>" in dsn
        assert server.queue() == []
    finally:
        server.stop()


def test_delivery_after_the_receiver_comes_back(dns_and_receiver):
    dns_port, smtp_port, receiver = dns_and_receiver
    receiver.stop()
    server = outbound_server(dns_port, smtp_port)
    try:
        submit(server, "friend@remote.example", "eventually")
        assert wait_for(lambda: any(q[1] == "deferred" for q in server.queue()))
        receiver.start()
        assert wait_for(lambda: len(receiver.messages) == 1, 20), server.read_log()[-2000:]
        assert wait_for(lambda: server.queue() == [])
        # Restarted server with nothing lost: the queue is durable (a
        # second message deferred, server restarted, then delivered).
        receiver.stop()
        submit(server, "friend@remote.example", "after restart")
        assert wait_for(lambda: any(q[1] == "deferred" for q in server.queue()))
        server.kill()
        server.start()
        receiver.start()
        assert wait_for(lambda: len(receiver.messages) == 2, 20)
    finally:
        server.stop()


def test_sendmail_from_a_script(dns_and_receiver, tmp_path):
    import os

    from conftest import BIN

    dns_port, smtp_port, receiver = dns_and_receiver
    server = outbound_server(dns_port, smtp_port)
    try:
        # A website's PHP mail() runs `sendmail -t -i`; some scripts call
        # /usr/sbin/sendmail directly, which can be a link to postroom.
        link = tmp_path / "sendmail"
        os.symlink(BIN, link)
        msg = ("To: friend@remote.example\nCc: customseo@esoomllub.com\nBcc: kent@esoomllub.com\n"
               "Subject: from cron\n\n.a line starting with a dot\n")
        # As /usr/sbin/sendmail it takes its configuration from POSTROOM_CONFIG.
        r = subprocess.run([str(link), "-t", "-i", "-f", "www-data@esoomllub.com"], input=msg,
                           capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, POSTROOM_CONFIG=server.config))
        assert r.returncode == 0, r.stderr
        assert wait_for(lambda: len(receiver.messages) == 1, 20), server.read_log()[-2000:]
        mail_from, rcpts, content = receiver.messages[0]
        assert mail_from == "www-data@esoomllub.com" and rcpts == ["friend@remote.example"]
        assert b"Bcc:" not in content and b"\r\n.a line starting with a dot" in content
        assert b"Message-ID: <" in content and b"Date: " in content
        assert len(server.messages("customseo@esoomllub.com")) == 1
        assert len(server.messages("kent@esoomllub.com")) == 1
        # Without -t: recipients from the arguments; a lone dot ends input.
        r = subprocess.run([BIN, "--config", server.config, "sendmail", "dbrooks@esoomllub.com"],
                           input="Subject: x\n\nfirst\n.\nnever read\n", capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        stored = server.show("dbrooks@esoomllub.com", 1)
        assert "first" in stored and "never read" not in stored
    finally:
        server.stop()


def test_dkim_signatures_verify_with_dkimpy(tmp_path):
    """Mail leaving for another server carries RSA and Ed25519 DKIM
    signatures that dkimpy verifies, its DNS lookups answered by the test's
    own DNS server."""
    dkim = pytest.importorskip("dkim")
    resolver_mod = pytest.importorskip("dns.resolver")
    pytest.importorskip("nacl")
    pytest.importorskip("aiosmtpd")
    dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    dns_port, smtp_port = free_port(), free_port()
    server = make_server(extra_toml=f"\n[queue]\nremote_port = {smtp_port}\nretry_min_secs = 1\n")
    out = server.cli("dkim", "generate", "esoomllub.com").stdout
    records = [l for l in out.splitlines() if "._domainkey." in l]
    assert len(records) == 2 and any("k=ed25519" in r for r in records) and any("k=rsa" in r for r in records)
    txt_args = []
    for r in records:
        name, _, value = r.partition(". IN TXT ")
        txt_args.append(f"--txt-record={name}," + ",".join(re_strings(value)))
    dns = subprocess.Popen(
        [dnsmasq, "--no-daemon", "--keep-in-foreground", f"--port={dns_port}", "--listen-address=127.0.0.1",
         "--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
         "--mx-host=remote.example,mx.remote.example,10", "--address=/mx.remote.example/127.0.0.1",
         "--local=/remote.example/", "--local=/esoomllub.com/", *txt_args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    receiver = Receiver(smtp_port).start()
    with open(server.config) as f:
        cfg = f.read().replace("[dns]\nenabled = false", f'[dns]\nenabled = true\nresolvers = ["127.0.0.1:{dns_port}"]')
    with open(server.config, "w") as f:
        f.write(cfg)
    server.start()
    try:
        submit(server, "friend@remote.example", "signed")
        assert wait_for(lambda: len(receiver.messages) == 1, 20), server.read_log()[-2000:]
        content = receiver.messages[0][2]
        assert content.count(b"DKIM-Signature:") == 2

        def dnsfunc(name, timeout=5):
            r = resolver_mod.Resolver(configure=False)
            r.nameservers = ["127.0.0.1"]
            r.port = dns_port
            answer = r.resolve(name.decode().rstrip("."), "TXT")
            return b"".join(b"".join(rdata.strings) for rdata in answer)

        d = dkim.DKIM(content)
        for i in range(2):
            assert d.verify(idx=i, dnsfunc=dnsfunc), f"signature {i} does not verify"
        # A changed From: breaks them (From is oversigned).
        tampered = content.replace(b"From: customseo@esoomllub.com", b"From: ceo@esoomllub.com", 1)
        assert not dkim.DKIM(tampered).verify(idx=0, dnsfunc=dnsfunc)
    finally:
        receiver.stop()
        server.stop()
        dns.terminate()
        dns.wait()


def re_strings(value):
    """The strings of a TXT record line; dnsmasq takes them unquoted,
    separated by commas (on its command line quotes would be kept)."""
    import re

    return re.findall(r'"([^"]*)"', value)


def test_forwarding_rewrites_the_sender_with_srs(dns_and_receiver):
    dns_port, smtp_port, receiver = dns_and_receiver
    server = outbound_server(dns_port, smtp_port)
    try:
        server.cli("alias", "add", "forward@esoomllub.com", "friend@remote.example,customseo@esoomllub.com")
        with smtplib.SMTP("127.0.0.1", server.port) as s:
            s.sendmail("alice@sender.example", ["forward@esoomllub.com"],
                       b"From: alice@sender.example\r\nSubject: fwd\r\n\r\nunchanged body\r\n")
        assert wait_for(lambda: len(receiver.messages) == 1, 20), server.read_log()[-2000:]
        mail_from, rcpts, content = receiver.messages[0]
        assert mail_from.startswith("SRS0=") and mail_from.endswith("=sender.example=alice@mx.test.example"), mail_from
        assert content.endswith(b"Subject: fwd\r\n\r\nunchanged body\r\n")
        # The local copy keeps the real sender.
        assert "Return-Path: <alice@sender.example>" in server.show("customseo@esoomllub.com", 1)
        # A bounce to the SRS address goes back to the original sender...
        with smtplib.SMTP("127.0.0.1", server.port) as s:
            s.ehlo("remote.example")
            s.mail("")
            assert s.rcpt(mail_from)[0] == 250
            s.data(b"Subject: Undelivered\r\n\r\nbounce\r\n")
            # ...and a forged one is refused like a relay attempt.
            s.mail("")
            forged = mail_from.replace("=alice@", "=mallory@")
            code, msg = s.rcpt(forged)
            assert (code, msg[:5]) == (554, b"5.7.1")
        assert wait_for(lambda: any(q[3] == "alice@sender.example" for q in server.queue()), 10)
    finally:
        server.stop()


def test_null_mx_domains(dns_and_receiver):
    """RFC 7505: mail to a null-MX domain bounces at once (556 5.1.10), and
    a null-MX domain may not send to us (550 5.7.27)."""
    dns_port, smtp_port, receiver = dns_and_receiver
    server = outbound_server(dns_port, smtp_port)
    try:
        with smtplib.SMTP("127.0.0.1", server.port) as s:
            s.ehlo("client.example.org")
            code, msg = s.mail("someone@nullmx.example")
            assert (code, msg[:6]) == (550, b"5.7.27")
        submit(server, "nobody@nullmx.example", "to a null MX")
        assert wait_for(lambda: len(server.messages("customseo@esoomllub.com")) == 1)
        dsn = server.show("customseo@esoomllub.com", 1)
        assert "Status: 5.1.10" in dsn and "null MX" in dsn
    finally:
        server.stop()


def test_utf8_addresses_to_a_server_without_smtputf8_bounce(dns_and_receiver):
    """A receiver that does not offer SMTPUTF8: a UTF-8 recipient bounces
    with 5.6.7 (RFC 6531 3.2) instead of being sent mangled."""
    dns_port, smtp_port, receiver = dns_and_receiver
    receiver.stop()
    receiver = Receiver(smtp_port, smtputf8=False).start()
    server = outbound_server(dns_port, smtp_port)
    try:
        with smtplib.SMTP("127.0.0.1", server.submission_port) as s:
            s.starttls(context=insecure())
            s.login("customseo@esoomllub.com", "99test99")
            s.ehlo("laptop.example")
            s.sendmail("customseo@esoomllub.com", ["jösé@remote.example"],
                       b"From: customseo@esoomllub.com\r\nSubject: utf8\r\n\r\nx\r\n", mail_options=["SMTPUTF8"])
        assert wait_for(lambda: len(server.messages("customseo@esoomllub.com")) == 1)
        assert "Status: 5.6.7" in server.show("customseo@esoomllub.com", 1)
        assert receiver.messages == []
    finally:
        receiver.stop()
        server.stop()
