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

from conftest import free_port, make_server, sqlite_only


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
    pytest.importorskip("dns.resolver")
    pytest.importorskip("nacl")
    pytest.importorskip("aiosmtpd")
    dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    dns_port, smtp_port = free_port(), free_port()
    server = make_server(extra_toml=f"\n[queue]\nremote_port = {smtp_port}\nretry_min_secs = 1\n")
    records, txt_args = dkim_keys(server)
    assert len(records) == 2 and any("k=ed25519" in r for r in records) and any("k=rsa" in r for r in records)
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

        dnsfunc = dkim_dnsfunc(dns_port)
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


def dkim_keys(server):
    """Makes esoomllub.com's DKIM keys: the TXT record lines the CLI prints,
    and dnsmasq arguments that publish them."""
    out = server.cli("dkim", "generate", "esoomllub.com").stdout
    records = [l for l in out.splitlines() if "._domainkey." in l]
    txt_args = []
    for r in records:
        name, _, value = r.partition(". IN TXT ")
        txt_args.append(f"--txt-record={name}," + ",".join(re_strings(value)))
    return records, txt_args


def dkim_dnsfunc(dns_port):
    """A dkimpy dnsfunc that asks only the test's DNS server on 127.0.0.1."""
    import dns.resolver

    def dnsfunc(name, timeout=5):
        r = dns.resolver.Resolver(configure=False)
        r.nameservers = ["127.0.0.1"]
        r.port = dns_port
        answer = r.resolve(name.decode().rstrip("."), "TXT")
        return b"".join(b"".join(rdata.strings) for rdata in answer)

    return dnsfunc


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


def test_bounce_to_an_unresolvable_local_sender_is_held(dns_and_receiver):
    """RCPT refuses postmaster@ of a domain with no admin; a bounce to that
    address (here for a script's mail to a null-MX domain) is held for the
    administrator instead, not refused and generated again at every pass."""
    from conftest import BIN

    dns_port, smtp_port, receiver = dns_and_receiver
    server = outbound_server(dns_port, smtp_port)
    try:
        server.cli("domain", "add", "noadmin.example")
        r = subprocess.run([BIN, "--config", server.config, "sendmail", "-f", "postmaster@noadmin.example",
                            "nobody@nullmx.example"], input="Subject: x\n\nbody\n", capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert wait_for(lambda: [(q[1], q[3]) for q in server.queue()] == [("held", "postmaster@noadmin.example")]), \
            (server.queue(), server.read_log()[-2000:])
        assert "could not queue the bounce" not in server.read_log()
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


class TinyReceiver:
    """A small SMTP server written for these tests, because aiosmtpd always
    offers 8BITMIME: it offers exactly the extensions it is given, counts
    connections, answers 452 after `max_rcpts` recipients in a transaction
    (RFC 5321 4.5.3.1.10), or a fixed reply to every RCPT, and notes whether
    the client pipelined (RCPT and DATA already waiting when MAIL is read)."""

    def __init__(self, extensions=("PIPELINING", "SIZE 100000000"), max_rcpts=None, rcpt_reply=None):
        import socketserver

        self.extensions = list(extensions)
        self.max_rcpts = max_rcpts
        self.rcpt_reply = rcpt_reply
        self.connections = 0
        self.transactions = []  # (connection number, mail from, rcpts, data)
        self.pipelined = 0
        self.commands = []
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                outer.connections += 1
                conn_no = outer.connections
                w = self.wfile
                w.write(b"220 tiny.test ESMTP\r\n")
                mail, rcpts = None, []
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return
                    cmd = line.decode("utf-8", "replace").rstrip("\r\n")
                    outer.commands.append(cmd)
                    verb = cmd[:4].upper()
                    if verb == "EHLO":
                        lines = ["tiny.test"] + outer.extensions
                        out = "".join(f"250-{l}\r\n" for l in lines[:-1]) + f"250 {lines[-1]}\r\n"
                        w.write(out.encode())
                    elif verb == "MAIL":
                        if b"RCPT" in self.rfile.peek(1 << 16)[:4096]:
                            outer.pipelined += 1
                        mail, rcpts = cmd[10:].split(">")[0].lstrip("<"), []
                        w.write(b"250 2.1.0 Ok\r\n")
                    elif verb == "RCPT":
                        if outer.rcpt_reply:
                            w.write(outer.rcpt_reply.encode() + b"\r\n")
                        elif outer.max_rcpts is not None and len(rcpts) >= outer.max_rcpts:
                            w.write(b"452 4.5.3 Too many recipients\r\n")
                        else:
                            rcpts.append(cmd[8:].split(">")[0].lstrip("<"))
                            w.write(b"250 2.1.5 Ok\r\n")
                    elif verb == "DATA":
                        if not rcpts:
                            w.write(b"554 5.5.1 No valid recipients\r\n")
                            continue
                        w.write(b"354 go ahead\r\n")
                        w.flush()
                        data = b""
                        while True:
                            l = self.rfile.readline()
                            if not l or l == b".\r\n":
                                break
                            data += l[1:] if l.startswith(b"..") else l
                        outer.transactions.append((conn_no, mail, rcpts, data))
                        mail, rcpts = None, []
                        w.write(b"250 2.0.0 Ok: queued\r\n")
                    elif verb == "RSET":
                        mail, rcpts = None, []
                        w.write(b"250 2.0.0 Ok\r\n")
                    elif verb == "QUIT":
                        w.write(b"221 2.0.0 Bye\r\n")
                        return
                    else:
                        w.write(b"502 5.5.2 not implemented\r\n")
                    w.flush()

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def start_dns(*records):
    dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not shutil.os.path.exists(dnsmasq):
        pytest.skip("dnsmasq not installed")
    port = free_port()
    dns = subprocess.Popen(
        [dnsmasq, "--no-daemon", "--keep-in-foreground", f"--port={port}", "--listen-address=127.0.0.1",
         "--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
         "--mx-host=remote.example,mx.remote.example,10", "--address=/mx.remote.example/127.0.0.1",
         "--local=/remote.example/", *records],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    return port, dns


def tiny_server(dns_port, smtp_port, queue_extra=""):
    s = make_server(extra_toml=f"""
[queue]
remote_port = {smtp_port}
{queue_extra}
""")
    with open(s.config) as f:
        cfg = f.read().replace("[dns]\nenabled = false", f'[dns]\nenabled = true\nresolvers = ["127.0.0.1:{dns_port}"]')
    with open(s.config, "w") as f:
        f.write(cfg)
    return s


@pytest.fixture
def tiny_env():
    """Yields a function that starts a TinyReceiver, dnsmasq and a server
    delivering to them; everything is stopped afterwards."""
    stoppers = []

    def make(receiver_args=None, queue_extra="retry_min_secs = 300\nretry_max_secs = 600", dns_records=()):
        receiver = TinyReceiver(**(receiver_args or {})).start()
        stoppers.append(receiver.stop)
        dns_port, dns = start_dns(*dns_records)
        stoppers.append(lambda: (dns.terminate(), dns.wait()))
        server = tiny_server(dns_port, receiver.port, queue_extra).start()
        stoppers.append(server.stop)
        return server, receiver

    yield make
    for stop in reversed(stoppers):
        stop()


def test_several_messages_share_one_connection_with_pipelining(tiny_env):
    """Five messages to one destination: sent over the connections the
    per-destination limit allows (2), not one each (RSET/next MAIL on the
    same session), with MAIL, RCPT and DATA pipelined (RFC 2920)."""
    server, receiver = tiny_env()
    with smtplib.SMTP("127.0.0.1", server.submission_port) as s:
        s.starttls(context=insecure())
        s.login("customseo@esoomllub.com", "99test99")
        for i in range(5):
            s.sendmail("customseo@esoomllub.com", [f"friend{i}@remote.example"],
                       f"From: customseo@esoomllub.com\r\nSubject: n{i}\r\n\r\nbody {i}\r\n".encode())
    assert wait_for(lambda: len(receiver.transactions) == 5, 20), server.read_log()[-3000:]
    assert receiver.connections <= 2, receiver.connections
    assert receiver.pipelined == 5
    # More mail within the idle time uses the open connection again.
    submit(server, "again@remote.example", "one more")
    assert wait_for(lambda: len(receiver.transactions) == 6, 20)
    assert receiver.connections <= 2, receiver.connections
    assert wait_for(lambda: server.queue() == [])
    # After the idle time the connection ends with QUIT.
    assert wait_for(lambda: "QUIT" in receiver.commands, 15)


def test_452_sends_the_rest_in_another_transaction_at_once(tiny_env):
    """A server that takes two recipients per transaction: the other three go
    in further transactions right away (RFC 5321 4.5.3.1.10), not after the
    retry backoff (300 s here)."""
    server, receiver = tiny_env({"max_rcpts": 2})
    rcpts = [f"r{i}@remote.example" for i in range(5)]
    submit(server, rcpts, "many")
    assert wait_for(lambda: sum(len(t[2]) for t in receiver.transactions) == 5, 20), server.read_log()[-3000:]
    assert sorted(r for t in receiver.transactions for r in t[2]) == rcpts
    assert [len(t[2]) for t in receiver.transactions] == [2, 2, 1]
    assert wait_for(lambda: server.queue() == [])
    assert "deferred" not in server.read_log()


def test_8bit_mail_is_converted_for_a_server_without_8bitmime(tiny_env):
    """Forwarded 8-bit mail (not signed here) to a server that does not offer
    8BITMIME arrives 7-bit: text as quoted-printable, an attachment as base64
    (RFC 6152), and decodes to what was sent."""
    import email
    import email.policy

    server, receiver = tiny_env()
    server.cli("alias", "add", "forward@esoomllub.com", "friend@remote.example")
    msg = ("From: alice@sender.example\r\nSubject: accents\r\nMIME-Version: 1.0\r\n"
           "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
           "--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
           "Grüße aus Köln = schön\r\n.leading dot\r\n"
           "--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
           "\u00ff\u00fe binary\r\n--b1--\r\n").encode()
    with smtplib.SMTP("127.0.0.1", server.port) as s:
        s.ehlo("sender.example")
        s.sendmail("alice@sender.example", ["forward@esoomllub.com"], msg, mail_options=["BODY=8BITMIME"])
    assert wait_for(lambda: len(receiver.transactions) == 1, 20), server.read_log()[-3000:]
    data = receiver.transactions[0][3]
    assert all(b < 0x80 for b in data), data
    assert not any("BODY=8BITMIME" in c for c in receiver.commands)
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    text, binary = [p for p in parsed.iter_parts()]
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    # The CRLF before a delimiter belongs to the delimiter (RFC 2046 5.1.1).
    assert text.get_content().replace("\r\n", "\n") == "Grüße aus Köln = schön\n.leading dot"
    assert binary["Content-Transfer-Encoding"] == "base64"
    assert binary.get_content() == "\u00ff\u00fe binary".encode()


def test_utf8_header_to_a_server_without_smtputf8_bounces_5_6_9(tiny_env):
    """A message whose header fields need SMTPUTF8 (RFC 6532), to a server
    without it: bounced with 5.6.9 (RFC 6531 3.2), never sent mangled."""
    server, receiver = tiny_env()
    with smtplib.SMTP("127.0.0.1", server.submission_port) as s:
        s.starttls(context=insecure())
        s.login("customseo@esoomllub.com", "99test99")
        s.ehlo("laptop.example")
        s.sendmail("customseo@esoomllub.com", ["friend@remote.example"],
                   "From: customseo@esoomllub.com\r\nSubject: Grüße\r\n\r\nx\r\n".encode(),
                   mail_options=["SMTPUTF8"])
    assert wait_for(lambda: len(server.messages("customseo@esoomllub.com")) == 1, 20), server.read_log()[-3000:]
    dsn = server.show("customseo@esoomllub.com", 1)
    assert "Status: 5.6.9" in dsn and "Action: failed" in dsn
    assert receiver.transactions == []
    assert server.queue() == []


def test_delay_warning_once_then_bounce_after_the_lifetime(tiny_env):
    """A recipient the remote keeps answering 451: after delay_warning_secs
    the sender gets one RFC 3464 "delayed" report with the remote's reply,
    only one however long it waits; after lifetime_secs the final bounce."""
    server, receiver = tiny_env({"rcpt_reply": "451 4.3.0 mailbox busy, try later"},
                                "retry_min_secs = 1\nretry_max_secs = 1\ndelay_warning_secs = 2\nlifetime_secs = 8")
    submit(server, "slow@remote.example", "patience")
    assert wait_for(lambda: len(server.messages("customseo@esoomllub.com")) >= 1, 20), server.read_log()[-3000:]
    warning = server.show("customseo@esoomllub.com", 1)
    assert "multipart/report; report-type=delivery-status" in warning
    assert "Final-Recipient: rfc822; slow@remote.example\r\nAction: delayed\r\nStatus: 4.3.0" in warning
    assert "451 4.3.0 mailbox busy, try later" in warning
    assert "Subject: patience" in warning
    assert "Return-Path: <>" in warning
    # Then the final bounce, and never a second warning.
    assert wait_for(lambda: len(server.messages("customseo@esoomllub.com")) >= 2, 30), server.read_log()[-3000:]
    bounce = server.show("customseo@esoomllub.com", 2)
    assert "Action: failed" in bounce and "Status: 4.4.7" in bounce and "451 4.3.0" in bounce
    assert wait_for(lambda: server.queue() == [])
    time.sleep(2)
    assert len(server.messages("customseo@esoomllub.com")) == 2


def test_no_delay_warning_for_a_bounce(tiny_env):
    """A null sender never gets a delay warning (nor a bounce)."""
    server, receiver = tiny_env({"rcpt_reply": "451 4.3.0 try later"},
                                "retry_min_secs = 1\nretry_max_secs = 1\ndelay_warning_secs = 1")
    server.cli("alias", "add", "forward@esoomllub.com", "friend@remote.example")
    with smtplib.SMTP("127.0.0.1", server.port) as s:
        s.sendmail("", ["forward@esoomllub.com"], b"From: MAILER-DAEMON@x.example\r\nSubject: b\r\n\r\nx\r\n")
    assert wait_for(lambda: "status=\"deferred\"" in server.read_log() or "status=deferred" in server.read_log())
    time.sleep(4)
    assert "delay warning sent" not in server.read_log()


@sqlite_only
def test_gateway_domain_goes_to_its_relay_host(tiny_env):
    """A gateway domain (domains.relay_to = host:port) is delivered to that
    host's addresses (A record, no MX lookup) on that port; an IP literal
    works too. The mail is queued while the domains are not hosted here
    (their DNS fails: deferred), then they become gateway domains and the
    retry goes to the relay hosts. (Accepting RCPT for gateway domains is
    the directory's part, tested there.)"""
    import sqlite3

    server, receiver = tiny_env(dns_records=["--address=/gwhost.example/127.0.0.1", "--local=/gwhost.example/"])
    gateway = TinyReceiver().start()
    try:
        submit(server, ["someone@gw.example", "other@gw2.example"], "to the customer's server")
        assert wait_for(lambda: len(server.queue()) == 2 and all(q[1] == "deferred" for q in server.queue()), 20), \
            server.read_log()[-2000:]
        server.cli("domain", "add", "gw.example")
        server.cli("domain", "add", "gw2.example")
        db = sqlite3.connect(f"{server.data}/postroom.sqlite", timeout=10)
        db.execute("UPDATE domains SET relay_to = ? WHERE name = 'gw.example'", (f"gwhost.example:{gateway.port}",))
        db.execute("UPDATE domains SET relay_to = ? WHERE name = 'gw2.example'", (f"[127.0.0.1]:{gateway.port}",))
        db.commit()
        db.close()
        server.cli("queue", "retry", server.queue()[0][0])
        assert wait_for(lambda: len(gateway.transactions) == 2, 20), (server.queue(), server.read_log()[-2000:])
        assert sorted(t[2][0] for t in gateway.transactions) == ["other@gw2.example", "someone@gw.example"]
        assert receiver.transactions == []
        assert wait_for(lambda: server.queue() == [])
    finally:
        gateway.stop()


def test_dkim_signed_8bit_mail_to_a_7bit_server_verifies(tmp_path):
    """Submitted 8-bit mail is made 7-bit before it is DKIM-signed (RFC 6376
    5.3), so a server without 8BITMIME gets it unchanged and both signatures
    verify with dkimpy; the text decodes to what was sent."""
    import email
    import email.policy

    dkim = pytest.importorskip("dkim")
    pytest.importorskip("dns.resolver")
    pytest.importorskip("nacl")
    receiver = TinyReceiver().start()
    server = make_server(extra_toml=f"\n[queue]\nremote_port = {receiver.port}\nretry_min_secs = 1\n")
    records, txt_args = dkim_keys(server)
    dns_port, dns = start_dns("--local=/esoomllub.com/", *txt_args)
    with open(server.config) as f:
        cfg = f.read().replace("[dns]\nenabled = false", f'[dns]\nenabled = true\nresolvers = ["127.0.0.1:{dns_port}"]')
    with open(server.config, "w") as f:
        f.write(cfg)
    server.start()
    try:
        with smtplib.SMTP("127.0.0.1", server.submission_port) as s:
            s.starttls(context=insecure())
            s.login("customseo@esoomllub.com", "99test99")
            s.sendmail("customseo@esoomllub.com", ["friend@remote.example"],
                       ("From: customseo@esoomllub.com\r\nTo: friend@remote.example\r\nSubject: signed\r\n"
                        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                        "Content-Transfer-Encoding: 8bit\r\n\r\nCafé crème, très bien.\r\n").encode(),
                       mail_options=["BODY=8BITMIME"])
        assert wait_for(lambda: len(receiver.transactions) == 1, 20), server.read_log()[-2000:]
        content = receiver.transactions[0][3]
        assert all(b < 0x80 for b in content)
        assert content.count(b"DKIM-Signature:") == 2

        dnsfunc = dkim_dnsfunc(dns_port)
        d = dkim.DKIM(content)
        for i in range(2):
            assert d.verify(idx=i, dnsfunc=dnsfunc), f"signature {i} does not verify"
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert parsed["Content-Transfer-Encoding"] == "quoted-printable"
        assert parsed.get_content().replace("\r\n", "\n") == "Café crème, très bien.\n"
    finally:
        receiver.stop()
        server.stop()
        dns.terminate()
        dns.wait()
