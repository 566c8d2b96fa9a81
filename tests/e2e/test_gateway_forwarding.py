"""Mailbox forwarding (with and without a copy), gateway domains relayed to
a customer's own server (a recipient list, or a callout to that server),
and the server-side Sent copy that a client's own APPEND does not repeat.
The customer's server and the outside world are aiosmtpd receivers on
loopback; DNS comes from the test's dnsmasq on 127.0.0.1."""

import imaplib
import re
import smtplib

from conftest import free_port
from test_outbound import Receiver, dns_and_receiver, insecure, outbound_server, wait_for  # noqa: F401


def mx_send(server, sender, rcpts, subject):
    with smtplib.SMTP("127.0.0.1", server.port) as s:
        s.sendmail(sender, rcpts, f"From: {sender}\r\nSubject: {subject}\r\n\r\nbody\r\n".encode())


def test_mailbox_forwarding_keeps_a_copy_or_not(dns_and_receiver):
    dns_port, smtp_port, receiver = dns_and_receiver
    server = outbound_server(dns_port, smtp_port)
    try:
        out = server.cli("user", "forward", "dbrooks@esoomllub.com", "friend@remote.example").stdout
        assert "keeps a copy" in out
        assert "forward:friend@remote.example" in server.cli("user", "list").stdout

        mx_send(server, "alice@sender.example", ["DBrooks+news@esoomllub.net"], "one")
        assert wait_for(lambda: len(receiver.messages) == 1, 20), server.read_log()[-2000:]
        mail_from, rcpts, content = receiver.messages[0]
        assert rcpts == ["friend@remote.example"]
        # Forwarded: the envelope sender is SRS-rewritten, the message not.
        assert mail_from.startswith("SRS0="), mail_from
        assert content.endswith(b"Subject: one\r\n\r\nbody\r\n")
        assert len(server.messages("dbrooks@esoomllub.com")) == 1

        server.cli("user", "forward", "dbrooks@esoomllub.com", "friend@remote.example", "--no-copy")
        mx_send(server, "alice@sender.example", ["dbrooks@esoomllub.com"], "two")
        assert wait_for(lambda: len(receiver.messages) == 2, 20)
        assert len(server.messages("dbrooks@esoomllub.com")) == 1

        server.cli("user", "forward", "dbrooks@esoomllub.com", "--off")
        mx_send(server, "alice@sender.example", ["dbrooks@esoomllub.com"], "three")
        assert wait_for(lambda: len(server.messages("dbrooks@esoomllub.com")) == 2)
        assert len(receiver.messages) == 2

        # Forwarding back to a mailbox that forwards here is a cycle, refused
        # as alias cycles are; the one-way forward still gets one copy each.
        server.cli("user", "forward", "kent@esoomllub.com", "dbrooks@esoomllub.com")
        r = server.cli("user", "forward", "dbrooks@esoomllub.com", "kent@esoomllub.com", check=False)
        assert r.returncode != 0 and "leads back" in r.stderr, r.stderr
        mx_send(server, "alice@sender.example", ["kent@esoomllub.com"], "four")
        assert wait_for(lambda: len(server.messages("kent@esoomllub.com")) == 1)
        assert len(server.messages("dbrooks@esoomllub.com")) == 3
    finally:
        server.stop()


def test_gateway_domain_relays_listed_recipients(dns_and_receiver):
    dns_port, smtp_port, receiver = dns_and_receiver
    server = outbound_server(dns_port, smtp_port)
    try:
        out = server.cli("domain", "add", "gw.example", "--relay-to", f"127.0.0.1:{smtp_port}").stdout
        assert "gateway" in out
        server.cli("domain", "recipients", "gw.example", "--add", "sales,info@gw.example")
        assert server.cli("domain", "recipients", "gw.example").stdout.split() == ["info@gw.example",
                                                                                  "sales@gw.example"]
        assert "gateway to 127.0.0.1" in server.cli("domain", "list").stdout
        bad = server.cli("domain", "add", "x.example", "--relay-to", "no:port:here", check=False)
        assert bad.returncode != 0 and "HOST:PORT" in bad.stderr

        with smtplib.SMTP("127.0.0.1", server.port) as s:
            s.ehlo("client.example")
            s.mail("alice@sender.example")
            assert s.rcpt("Sales@gw.example")[0] == 250
            code, msg = s.rcpt("unlisted@gw.example")
            assert (code, msg[:5]) == (550, b"5.1.1")
            s.data(b"From: alice@sender.example\r\nSubject: for the customer\r\n\r\nbody\r\n")

        # With --verify, unlisted recipients are asked of the customer's
        # server: it takes anyone but nobody@.
        server.cli("domain", "set", "gw.example", "--verify")
        with smtplib.SMTP("127.0.0.1", server.port) as s:
            s.ehlo("client.example")
            s.mail("alice@sender.example")
            assert s.rcpt("someone@gw.example")[0] == 250
            code, msg = s.rcpt("nobody@gw.example")
            assert (code, msg[:5]) == (550, b"5.1.1")
        assert "callout" in server.read_log()

        # The customer's server down: try again later (and the cached
        # answers still hold).
        receiver.stop()
        with smtplib.SMTP("127.0.0.1", server.port) as s:
            s.ehlo("client.example")
            s.mail("alice@sender.example")
            code, msg = s.rcpt("new@gw.example")
            assert (code, msg[:5]) == (451, b"4.4.3"), (code, msg)
            assert s.rcpt("someone@gw.example")[0] == 250
            assert s.rcpt("nobody@gw.example")[0] == 550
        receiver.start()

        # The accepted message went to the customer's server (by its
        # address, no MX: gw.example has no DNS records at all).
        assert wait_for(lambda: len(receiver.messages) == 1, 20), server.read_log()[-2000:]
        mail_from, rcpts, content = receiver.messages[0]
        # Relayed as it came: no SRS, the customer's server is the destination.
        assert (mail_from, rcpts) == ("alice@sender.example", ["Sales@gw.example"])
        assert b"Subject: for the customer" in content
    finally:
        server.stop()


def imaps(server):
    m = imaplib.IMAP4_SSL("127.0.0.1", server.imaps_port, ssl_context=insecure(), timeout=10)
    m.login("customseo@esoomllub.com", "99test99")
    return m


def test_sent_copy_and_the_clients_own_append(server):
    server.cli("user", "sent-copy", "customseo@esoomllub.com")
    assert "sent-copy" in server.cli("user", "list").stdout
    message = (b"From: customseo@esoomllub.com\r\nTo: dbrooks@esoomllub.com\r\n"
               b"Message-ID: <sent-1@esoomllub.com>\r\nSubject: with a Bcc\r\n\r\nbody\r\n")
    with smtplib.SMTP("127.0.0.1", server.submission_port) as s:
        s.starttls(context=insecure())
        s.login("customseo@esoomllub.com", "99test99")
        s.sendmail("customseo@esoomllub.com", ["dbrooks@esoomllub.com", "kent@esoomllub.com"], message)
    assert len(server.messages("dbrooks@esoomllub.com")) == 1
    assert len(server.messages("kent@esoomllub.com")) == 1
    sent = server.messages("customseo@esoomllub.com", folder="Sent")
    assert len(sent) == 1 and "with a Bcc" in sent[0][3], sent
    # The copy names the Bcc recipient, as a mail client's own copy does.
    copy = server.show("customseo@esoomllub.com", sent[0][0], folder="Sent")
    assert copy.startswith("Bcc: kent@esoomllub.com\r\n"), copy[:200]

    m = imaps(server)
    try:
        typ, data = m.select("Sent")
        assert data == [b"1"]
        typ, data = m.fetch("1", "(UID FLAGS)")
        assert b"\\Seen" in data[0]
        uid = re.search(rb"UID (\d+)", data[0]).group(1)
        # The client saves its own copy, as Outlook and Thunderbird do: the
        # server's copy answers for it.
        typ, data = m.append("Sent", "(\\Seen)", None, message)
        assert typ == "OK"
        assert re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1) == uid, data
        typ, data = m.select("Sent")
        assert data == [b"1"]
        # Another message is stored as usual.
        other = message.replace(b"sent-1@", b"sent-2@")
        typ, data = m.append("Sent", "(\\Seen)", None, other)
        assert typ == "OK"
        typ, data = m.select("Sent")
        assert data == [b"2"]
        # The same Message-ID in another folder is not a Sent copy.
        typ, data = m.append("Drafts", None, None, message)
        typ, data = m.select("Drafts")
        assert data == [b"1"]
    finally:
        m.logout()
    # Off: no more copies.
    server.cli("user", "sent-copy", "customseo@esoomllub.com", "--off")
    with smtplib.SMTP("127.0.0.1", server.submission_port) as s:
        s.starttls(context=insecure())
        s.login("customseo@esoomllub.com", "99test99")
        s.sendmail("customseo@esoomllub.com", ["dbrooks@esoomllub.com"], message.replace(b"sent-1@", b"sent-3@"))
    assert len(server.messages("customseo@esoomllub.com", folder="Sent")) == 2


def test_gateway_callout_port_closed_is_temporary(server_factory):
    """DNS off and the customer's server not listening: 451, never 550."""
    server = server_factory().start()
    port = free_port()
    server.cli("domain", "add", "down.example", "--relay-to", f"127.0.0.1:{port}", "--verify")
    with smtplib.SMTP("127.0.0.1", server.port) as s:
        s.ehlo("client.example")
        s.mail("alice@sender.example")
        code, msg = s.rcpt("who@down.example")
        assert (code, msg[:5]) == (451, b"4.4.3")


def test_sent_copy_follows_the_sent_role_not_its_name(server):
    """The Sent copy goes to the folder whose special use is \\Sent (RFC
    6154), renamed or not; with none left, to INBOX, and the submission
    still succeeds (issue #9: folder roles, not names)."""
    server.cli("user", "sent-copy", "customseo@esoomllub.com")

    def submit(n):
        message = (f"From: customseo@esoomllub.com\r\nTo: dbrooks@esoomllub.com\r\n"
                   f"Message-ID: <role-{n}@esoomllub.com>\r\nSubject: role {n}\r\n\r\nbody\r\n").encode()
        with smtplib.SMTP("127.0.0.1", server.submission_port) as s:
            s.starttls(context=insecure())
            s.login("customseo@esoomllub.com", "99test99")
            s.sendmail("customseo@esoomllub.com", ["dbrooks@esoomllub.com"], message)

    m = imaps(server)
    try:
        assert m.rename("Sent", "Gesendet")[0] == "OK"
        assert m.create("Sent")[0] == "OK"  # only the name: not the role
        submit(1)
        assert m.select("Gesendet")[1] == [b"1"]
        assert m.select("Sent")[1] == [b"0"]
        assert m.select("INBOX")[1] == [b"0"]
        m.select("INBOX")
        assert m.delete("Gesendet")[0] == "OK"
        submit(2)
        assert m.select("INBOX")[1] == [b"1"]
        typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert b"role 2" in data[0][1]
    finally:
        m.logout()
    assert len(server.messages("dbrooks@esoomllub.com")) == 2
