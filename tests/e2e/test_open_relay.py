"""Open-relay tricks against the MX port, without authentication, from
127.0.0.1 (not in `smtp.trusted_networks` by default): the address games of
RFC 2505 and of the usual open-relay testers. Every one must be refused, at
RCPT (554 5.7.1 relay denied, 550 5.1.1 unknown hosted user, 501/553 for
syntax) or at the latest at DATA, and nothing may reach the outbound queue
for a recipient outside the hosted domains.

Each trick runs on a fresh server over a raw socket, so the reply codes are
exactly what the server sent; a failure prints the whole transcript."""

import base64
import imaplib
import smtplib
import ssl
from dataclasses import dataclass, field

import pytest

from conftest import Raw

HOSTED = {"esoomllub.com", "esoomllub.net"}
PASSWORD = "99test99"

# What a refusal at RCPT must look like: (code, enhanced status code prefix).
RELAY = ("554", "5.7.1")  # relay denied (smtp.relay_denied_code, 554 by default)
UNKNOWN = ("550", "5.1.1")  # a hosted domain, no such user
SYNTAX = (("501", "553"), "5.")  # syntax: 501 5.5.4 / 501 5.1.3, or 553
NEEDS_UTF8 = ("553", "5.6.7")  # non-ASCII address without SMTPUTF8
BAD_PARAM = ("555", "5.5.4")  # RCPT parameter not supported

CYR_E = "\u0435"  # Cyrillic small letter ie, looks like Latin "e"
FW_AT = "\uff20"  # fullwidth commercial at
FW_DOT = "\uff0e"  # fullwidth full stop


def insecure():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def b64(s):
    return base64.b64encode(s.encode()).decode()


def domain_of(recipient):
    return recipient.rsplit("@", 1)[1].lower() if "@" in recipient else None


def outside_rows(server, allowed=()):
    """Outbound queue rows (id, state, sender, recipient, reason) whose
    recipient is not in a hosted domain, except the `allowed` recipients."""
    return [
        row for row in server.queue()
        if len(row) < 4 or (row[3] not in allowed and domain_of(row[3]) not in HOSTED)
    ]


class Transcript:
    """A raw MX session that records every line both ways."""

    def __init__(self, port):
        self.c = Raw(port)
        self.lines = ["S: " + self.c.banner]

    def cmd(self, line):
        self.lines.append("C: " + repr(line)[1:-1])
        reply = self.c.cmd(line)
        self.lines.extend("S: " + r for r in reply.split("\n"))
        return reply

    def send(self, data, label):
        self.lines.append("C: " + label)
        self.c.send(data)

    def reply(self):
        reply = self.c.reply()
        self.lines.extend("S: " + r for r in reply.split("\n"))
        return reply

    def starttls(self):
        reply = self.cmd("STARTTLS")
        assert reply.startswith("220"), self.text()
        self.c.sock = insecure().wrap_socket(self.c.sock)
        self.c.buf = b""
        self.lines.append("   (TLS handshake)")

    def text(self):
        return "\n".join(self.lines)

    def close(self):
        try:
            self.cmd("QUIT")
        except (OSError, EOFError):
            pass
        self.c.close()


def ok(reply, expect):
    codes, enhanced = expect
    codes = (codes,) if isinstance(codes, str) else codes
    return reply[:3] in codes and reply[4:].startswith(enhanced)


@dataclass
class Trick:
    name: str
    rcpt: str  # the whole RCPT command line
    expect: tuple
    mail: str = "MAIL FROM:<attacker@remote.example>"
    helo: str = "EHLO client.example.org"
    starttls: bool = False
    # Commands before MAIL, each with the reply prefix it must get.
    before: list = field(default_factory=list)


FOREIGN = "user@other.example"
AUTH_BAD = b64("\0customseo@esoomllub.com\0not-the-password")
AUTH_GOOD = b64(f"\0customseo@esoomllub.com\0{PASSWORD}")

TRICKS = [
    # The plain case and its spellings.
    Trick("foreign-domain", f"RCPT TO:<{FOREIGN}>", RELAY),
    Trick("lower-case-command", f"rcpt to:<{FOREIGN}>", RELAY),
    Trick("space-after-colon", f"RCPT TO: <{FOREIGN}>", RELAY),
    Trick("mixed-case", "RCPT TO:<USER@OTHER.EXAMPLE>", RELAY),
    Trick("trailing-dot", "RCPT TO:<user@other.example.>", RELAY),
    Trick("postmaster-of-foreign-domain", "RCPT TO:<postmaster@other.example>", RELAY),
    # RFC 2505 2.6: the percent hack, bang paths, source routes.
    Trick("percent-hack", "RCPT TO:<user%other.example@esoomllub.com>", UNKNOWN),
    Trick("percent-hack-alias-domain", "RCPT TO:<user%other.example@esoomllub.net>", UNKNOWN),
    Trick("percent-hack-quoted", 'RCPT TO:<"user%other.example"@esoomllub.com>', UNKNOWN),
    Trick("percent-hack-ip-literal", "RCPT TO:<user%other.example@[127.0.0.1]>", RELAY),
    Trick("percent-hack-no-domain", "RCPT TO:<user%other.example>", SYNTAX),
    Trick("source-route", f"RCPT TO:<@esoomllub.com:{FOREIGN}>", RELAY),
    Trick("source-route-two-hops", f"RCPT TO:<@esoomllub.com,@mx.test.example:{FOREIGN}>", RELAY),
    Trick("bang-path-at-hosted", "RCPT TO:<other.example!user@esoomllub.com>", UNKNOWN),
    Trick("bang-path-bare", "RCPT TO:<other.example!user>", SYNTAX),
    # Quoted local parts holding an @.
    Trick("quoted-local-part-with-at", f'RCPT TO:<"{FOREIGN}"@esoomllub.com>', UNKNOWN),
    Trick("quoted-local-part-escaped-at", 'RCPT TO:<"user\\@other.example"@esoomllub.com>', UNKNOWN),
    Trick("quoted-whole-address", f'RCPT TO:<"{FOREIGN}">', SYNTAX),
    # The server itself, by address or name.
    Trick("ip-literal-of-server", "RCPT TO:<user@[127.0.0.1]>", RELAY),
    Trick("ip-literal-hosted-user", "RCPT TO:<customseo@[127.0.0.1]>", RELAY),
    Trick("ip-literal-ipv6-loopback", "RCPT TO:<user@[IPv6:::1]>", RELAY),
    Trick("bare-ip-address", "RCPT TO:<user@127.0.0.1>", RELAY),
    Trick("localhost", "RCPT TO:<user@localhost>", RELAY),
    Trick("localhost-hosted-user", "RCPT TO:<customseo@localhost>", RELAY),
    Trick("server-host-name", "RCPT TO:<user@mx.test.example>", RELAY),
    # Domains that look hosted.
    Trick("unhosted-subdomain", "RCPT TO:<user@mail.esoomllub.com>", RELAY),
    Trick("unhosted-subdomain-of-alias-domain", "RCPT TO:<user@mail.esoomllub.net>", RELAY),
    Trick("hosted-domain-as-prefix", "RCPT TO:<user@esoomllub.com.other.example>", RELAY),
    Trick("cyrillic-lookalike-domain", f"RCPT TO:<user@{CYR_E}soomllub.com>", RELAY,
          mail="MAIL FROM:<attacker@remote.example> SMTPUTF8"),
    Trick("cyrillic-lookalike-hosted-user", f"RCPT TO:<customseo@{CYR_E}soomllub.com>", RELAY,
          mail="MAIL FROM:<attacker@remote.example> SMTPUTF8"),
    Trick("cyrillic-lookalike-punycode", "RCPT TO:<user@xn--soomllub-b8g.com>", RELAY),
    Trick("cyrillic-lookalike-without-smtputf8", f"RCPT TO:<user@{CYR_E}soomllub.com>", NEEDS_UTF8),
    Trick("fullwidth-at-in-local-part", f"RCPT TO:<user{FW_AT}other.example@esoomllub.com>", UNKNOWN,
          mail="MAIL FROM:<attacker@remote.example> SMTPUTF8"),
    Trick("fullwidth-at-only", f"RCPT TO:<user{FW_AT}other.example>", SYNTAX,
          mail="MAIL FROM:<attacker@remote.example> SMTPUTF8"),
    Trick("fullwidth-at-in-domain", f"RCPT TO:<{FOREIGN}{FW_AT}esoomllub.com>", SYNTAX,
          mail="MAIL FROM:<attacker@remote.example> SMTPUTF8"),
    Trick("fullwidth-dot-foreign-domain", f"RCPT TO:<user@other{FW_DOT}example>", RELAY,
          mail="MAIL FROM:<attacker@remote.example> SMTPUTF8"),
    Trick("fullwidth-dot-hosted-domain-unknown-user", f"RCPT TO:<user@esoomllub{FW_DOT}com>", UNKNOWN,
          mail="MAIL FROM:<attacker@remote.example> SMTPUTF8"),
    # Senders that some relays trust.
    Trick("null-sender", f"RCPT TO:<{FOREIGN}>", RELAY, mail="MAIL FROM:<>"),
    Trick("hosted-sender", f"RCPT TO:<{FOREIGN}>", RELAY, mail="MAIL FROM:<customseo@esoomllub.com>"),
    Trick("hosted-sender-alias-domain", f"RCPT TO:<{FOREIGN}>", RELAY,
          mail="MAIL FROM:<customseo@esoomllub.net>"),
    Trick("auth-parameter-on-mail", f"RCPT TO:<{FOREIGN}>", RELAY,
          mail="MAIL FROM:<customseo@esoomllub.com> AUTH=customseo@esoomllub.com"),
    Trick("helo-as-server-itself", f"RCPT TO:<{FOREIGN}>", RELAY, helo="EHLO mx.test.example"),
    Trick("helo-as-loopback-literal", f"RCPT TO:<{FOREIGN}>", RELAY, helo="EHLO [127.0.0.1]"),
    # Addresses that only a forwarder would know.
    Trick("forged-srs0", "RCPT TO:<SRS0=abcd=XY=other.example=user@esoomllub.com>", UNKNOWN),
    Trick("forged-srs1", "RCPT TO:<SRS1=abcd=other.example==efgh=XY=other.example=user@esoomllub.com>",
          UNKNOWN),
    Trick("nonexistent-alias", "RCPT TO:<nosuchalias@esoomllub.com>", UNKNOWN),
    # Bracket and separator games.
    Trick("space-before-closing-bracket", f"RCPT TO:<{FOREIGN} >", SYNTAX),
    Trick("space-after-opening-bracket", f"RCPT TO:< {FOREIGN}>", SYNTAX),
    Trick("double-brackets", f"RCPT TO:<<{FOREIGN}>>", SYNTAX),
    Trick("no-brackets", f"RCPT TO:{FOREIGN}", SYNTAX),
    Trick("double-at", f"RCPT TO:<{FOREIGN}@esoomllub.com>", SYNTAX),
    Trick("double-at-hosted-first", "RCPT TO:<user@esoomllub.com@other.example>", SYNTAX),
    Trick("comma-separated-list", f"RCPT TO:<{FOREIGN}>,<customseo@esoomllub.com>", SYNTAX),
    Trick("comma-inside-brackets", f"RCPT TO:<{FOREIGN},customseo@esoomllub.com>", SYNTAX),
    Trick("nul-byte-in-address", f"RCPT TO:<{FOREIGN}\0@esoomllub.com>", SYNTAX),
    Trick("bare-cr-second-command", f"RCPT TO:<customseo@esoomllub.com>\rRCPT TO:<{FOREIGN}>", SYNTAX),
    Trick("dsn-notify-never", f"RCPT TO:<{FOREIGN}> NOTIFY=NEVER", BAD_PARAM),
    # A relay attempt after AUTH failed (or was refused) on the same session.
    Trick("after-failed-auth-plaintext", f"RCPT TO:<{FOREIGN}>", RELAY,
          mail="MAIL FROM:<customseo@esoomllub.com>",
          before=[(f"AUTH PLAIN {AUTH_BAD}", "538 5.7.11")]),
    Trick("after-refused-plaintext-auth-with-right-password", f"RCPT TO:<{FOREIGN}>", RELAY,
          mail="MAIL FROM:<customseo@esoomllub.com>",
          before=[(f"AUTH PLAIN {AUTH_GOOD}", "538 5.7.11")]),
    Trick("after-failed-auth-over-starttls", f"RCPT TO:<{FOREIGN}>", RELAY, starttls=True,
          mail="MAIL FROM:<customseo@esoomllub.com>",
          before=[(f"AUTH PLAIN {AUTH_BAD}", "535 5.7.8")]),
    Trick("after-cancelled-auth-login-over-starttls", f"RCPT TO:<{FOREIGN}>", RELAY, starttls=True,
          mail="MAIL FROM:<customseo@esoomllub.com>",
          before=[("AUTH LOGIN", "334"), (b64("customseo@esoomllub.com"), "334"), ("*", "501")]),
    Trick("starttls-without-auth", f"RCPT TO:<{FOREIGN}>", RELAY, starttls=True),
]


def test_trick_names_are_unique():
    names = [t.name for t in TRICKS]
    assert len(names) == len(set(names))
    assert len(names) >= 20


@pytest.mark.parametrize("trick", TRICKS, ids=[t.name for t in TRICKS])
def test_relay_trick_is_refused(server, trick):
    s = Transcript(server.port)
    try:
        assert s.cmd(trick.helo).startswith("250"), s.text()
        if trick.starttls:
            s.starttls()
            assert s.cmd(trick.helo).startswith("250"), s.text()
        for command, expect in trick.before:
            assert s.cmd(command).startswith(expect), s.text()
        assert s.cmd(trick.mail).startswith("250 2.1.0"), s.text()
        rcpt = s.cmd(trick.rcpt)
        # Whatever RCPT said, try to get a message through.
        data = s.cmd("DATA")
        if data.startswith("354"):
            s.cmd(f"From: <attacker@remote.example>\r\nTo: <{FOREIGN}>\r\nSubject: relay test\r\n\r\n"
                  f"{trick.name}\r\n.")
    finally:
        s.close()
    assert rcpt[0] == "5", "RCPT was not refused:\n" + s.text()
    assert ok(rcpt, trick.expect), f"unexpected refusal (wanted {trick.expect}):\n" + s.text()
    assert data[0] in "45", "DATA was not refused:\n" + s.text()
    assert data.startswith("554 5.5.1"), s.text()
    leaked = outside_rows(server)
    assert leaked == [], f"queued for outside recipients: {leaked}\n" + s.text()


def test_control_hosted_recipient_and_queue_check(server):
    """The harness is not vacuous: a hosted recipient is accepted, and the
    queue check does see the outside member of the dev@ alias, mailed here
    deliberately."""
    with smtplib.SMTP("127.0.0.1", server.port) as c:
        c.ehlo("client.example.org")
        c.sendmail("a@remote.example", ["customseo@esoomllub.com"], b"Subject: control\r\n\r\nx\r\n")
        assert outside_rows(server) == []
        c.sendmail("a@remote.example", ["dev@esoomllub.com"], b"Subject: to the dev list\r\n\r\nx\r\n")
    assert len(server.messages("customseo@esoomllub.com")) == 1
    assert [r[3] for r in outside_rows(server)] == ["testman@example.com"]
    assert outside_rows(server, allowed={"testman@example.com"}) == []


def test_pipelined_mix_delivers_only_to_hosted(server):
    """Foreign recipients pipelined around a valid one: the valid one gets the
    message, nothing is queued outward."""
    s = Transcript(server.port)
    s.cmd("EHLO client.example.org")
    commands = [
        "MAIL FROM:<attacker@remote.example>",
        f"RCPT TO:<{FOREIGN}>",
        "RCPT TO:<customseo@esoomllub.com>",
        "RCPT TO:<user%other.example@esoomllub.com>",
        f"RCPT TO:<@esoomllub.com:{FOREIGN}>",
        "DATA",
    ]
    s.send("".join(c + "\r\n" for c in commands).encode(), " / ".join(commands) + " (pipelined)")
    replies = [s.reply() for _ in commands]
    assert [r[:3] for r in replies] == ["250", "554", "250", "550", "554", "354"], s.text()
    s.cmd(f"To: <{FOREIGN}>\r\nSubject: mixed\r\n\r\nx\r\n.")
    s.close()
    assert len(server.messages("customseo@esoomllub.com")) == 1
    assert outside_rows(server) == [], s.text()


def test_bdat_after_refused_rcpt(server):
    s = Transcript(server.port)
    s.cmd("EHLO client.example.org")
    s.cmd("MAIL FROM:<attacker@remote.example>")
    assert s.cmd(f"RCPT TO:<{FOREIGN}>").startswith("554 5.7.1"), s.text()
    payload = b"Subject: chunked relay\r\n\r\nx\r\n"
    s.send(f"BDAT {len(payload)} LAST\r\n".encode() + payload, f"BDAT {len(payload)} LAST + payload")
    assert s.reply().startswith("554 5.5.1"), s.text()
    s.close()
    assert outside_rows(server) == [], s.text()


def test_header_recipients_are_never_used(server):
    """Only the envelope counts: To/Cc/Bcc/Resent-To naming outsiders in a
    message to a hosted user are not recipients."""
    with smtplib.SMTP("127.0.0.1", server.port) as c:
        c.ehlo("client.example.org")
        msg = (f"To: <{FOREIGN}>\r\nCc: <cc@other.example>\r\nBcc: <bcc@other.example>\r\n"
               f"Resent-To: <resent@other.example>\r\nSubject: headers\r\n\r\nx\r\n").encode()
        c.sendmail("attacker@remote.example", ["customseo@esoomllub.com"], msg)
    assert len(server.messages("customseo@esoomllub.com")) == 1
    assert outside_rows(server) == []


def test_rcpt_flood_never_relays(server):
    """Thirty foreign recipients in one write: every one refused, and the
    session is closed once the error limit is reached."""
    s = Transcript(server.port)
    s.cmd("EHLO client.example.org")
    s.cmd("MAIL FROM:<attacker@remote.example>")
    s.send("".join(f"RCPT TO:<u{i}@other{i}.example>\r\n" for i in range(30)).encode(), "30 x RCPT (pipelined)")
    replies = []
    try:
        for _ in range(30):
            replies.append(s.reply())
    except (EOFError, OSError):
        pass
    s.c.close()
    assert replies, s.text()
    assert all(r[0] in "45" for r in replies), s.text()
    assert all(r.startswith("554 5.7.1") for r in replies if not r.startswith("421")), s.text()
    assert outside_rows(server) == []


def test_login_elsewhere_does_not_open_the_relay(server):
    """No POP/IMAP-before-SMTP and no per-address memory of an earlier
    authenticated session: the unauthenticated session is still refused."""
    imap = imaplib.IMAP4_SSL("127.0.0.1", server.imaps_port, ssl_context=insecure())
    imap.login("customseo@esoomllub.com", PASSWORD)
    with smtplib.SMTP("127.0.0.1", server.submission_port) as sub:
        sub.starttls(context=insecure())
        sub.login("customseo@esoomllub.com", PASSWORD)
        s = Transcript(server.port)
        s.cmd("EHLO client.example.org")
        s.cmd("MAIL FROM:<customseo@esoomllub.com>")
        rcpt = s.cmd(f"RCPT TO:<{FOREIGN}>")
        data = s.cmd("DATA")
        s.close()
    imap.logout()
    assert rcpt.startswith("554 5.7.1"), s.text()
    assert data.startswith("554 5.5.1"), s.text()
    assert outside_rows(server) == [], s.text()


@pytest.mark.parametrize("spoof", [
    "PROXY TCP4 198.51.100.7 127.0.0.1 40000 25",
    "XCLIENT ADDR=198.51.100.7",
    "XFORWARD ADDR=198.51.100.7",
], ids=["proxy-header", "xclient", "xforward"])
def test_spoofed_client_address_is_not_trusted(server_factory, spoof):
    """With a trusted network configured (and PROXY off), a client cannot
    claim to be in it."""
    server = server_factory(extra_smtp='trusted_networks = ["198.51.100.0/24"]').start()
    s = Transcript(server.port)
    assert s.cmd(spoof)[0] == "5", s.text()
    s.cmd("EHLO [198.51.100.7]")
    s.cmd("MAIL FROM:<attacker@remote.example>")
    rcpt = s.cmd(f"RCPT TO:<{FOREIGN}>")
    data = s.cmd("DATA")
    s.close()
    assert rcpt.startswith("554 5.7.1"), s.text()
    assert data.startswith("554 5.5.1"), s.text()
    assert outside_rows(server) == [], s.text()
