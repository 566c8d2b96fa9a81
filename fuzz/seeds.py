#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/corpus/<target>/ (named files, so they
read as documentation). Run from anywhere: python3 fuzz/seeds.py

The input layouts are described at the top of each fuzz target.
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))

# The published SMTP smuggling end-of-data variants (none is <CRLF>.<CRLF>),
# plus a NUL variant.
SMUGGLING = {
    "lf-dot-lf": b"\n.\n",
    "lf-dot-crlf": b"\n.\r\n",
    "cr-dot-cr": b"\r.\r",
    "crlf-dot-lf": b"\r\n.\n",
    "cr-dot-crlf": b"\r.\r\n",
    "lf-dot-cr": b"\n.\r",
    "crlf-dot-cr": b"\r\n.\r",
    "crlf-nul-dot-crlf": b"\r\n\x00.\r\n",
}

GREET = b"EHLO client.example\r\n"
ENVELOPE = b"MAIL FROM:<a@b.example>\r\nRCPT TO:<user@example.com>\r\n"
SMUGGLED = b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<user@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n"


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def smtp_command():
    ehlo, utf8 = b"\x01", b"\x03"
    lines = {
        "ehlo": ehlo + b"EHLO client.example",
        "helo": b"\x00HELO client.example",
        "helo-literal": ehlo + b"EHLO [192.0.2.1]",
        "mail-params": ehlo + b"MAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME AUTH=<>",
        "mail-space": ehlo + b"mail from: <A@B.example>",
        "mail-null": ehlo + b"MAIL FROM:<>",
        "mail-route": ehlo + b"MAIL FROM:<@relay.example,@r2.example:a@b.example>",
        "mail-quoted": ehlo + b'MAIL FROM:<"a>b\\"c"@b.example>',
        "mail-utf8": utf8 + "MAIL FROM:<jösé@bücher.example> SMTPUTF8".encode(),
        "mail-utf8-missing": ehlo + "MAIL FROM:<jösé@b.example>".encode(),
        "mail-no-brackets": ehlo + b"MAIL FROM: test@test.net",
        "mail-keyword-utf8": ehlo + "MAIL FROMé".encode(),
        "rcpt-keyword-utf8": utf8 + "RCPT TOé".encode(),
        "rcpt": ehlo + b"RCPT TO:<user@example.com>",
        "rcpt-postmaster": ehlo + b"RCPT TO:<Postmaster>",
        "rcpt-utf8": utf8 + "RCPT TO:<üser@example.com>".encode(),
        "rcpt-literal-v6": ehlo + b"RCPT TO:<a@[IPv6:2001:db8::1]>",
        "rcpt-literal-v4": ehlo + b"RCPT TO:<a@[192.0.2.1]>",
        "rcpt-param": ehlo + b"RCPT TO:<a@b.example> NOTIFY=NEVER",
        "bdat": ehlo + b"BDAT 100 LAST",
        "bdat-huge": ehlo + b"BDAT 99999999999999999999",
        "data": ehlo + b"DATA",
        "rset": ehlo + b"RSET",
        "noop": ehlo + b"NOOP anything",
        "quit": ehlo + b"QUIT",
        "starttls": ehlo + b"STARTTLS",
        "vrfy": ehlo + b"VRFY user",
        "auth": ehlo + b"AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=",
        "not-utf8": ehlo + b"EHLO \xff\xfe",
        "long-line": ehlo + b"EHLO " + b"a" * 3000,
    }
    for name, data in lines.items():
        write("smtp_command", name, data)


def session(flags=0, split=7):
    return bytes([flags, split])


def smtp_session():
    for name, seq in SMUGGLING.items():
        stream = (GREET + ENVELOPE + b"DATA\r\nSubject: x\r\n\r\nbody" + seq + SMUGGLED
                  + b".\r\nQUIT\r\n")
        write("smtp_session", "smuggling-" + name, session(0, 7) + stream)
        write("smtp_session", "smuggling-strict-" + name, session(1, 0) + stream)
        # The same inside a BDAT chunk: octets, not a terminator.
        chunk = b"x" + seq + SMUGGLED
        bdat = GREET + ENVELOPE + b"BDAT %d LAST\r\n" % len(chunk) + chunk + b"QUIT\r\n"
        write("smtp_session", "bdat-smuggling-" + name, session(0, 5) + bdat)
    write("smtp_session", "pipelined-transaction", session(0, 3) + GREET + ENVELOPE
          + b"RCPT TO:<nobody@example.com>\r\nDATA\r\nSubject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    write("smtp_session", "pipelined-two-transactions", session(0, 11) + GREET
          + ENVELOPE + b"DATA\r\nSubject: one\r\n\r\n..dot\r\n.\r\n"
          + b"MAIL FROM:<>\r\nRCPT TO:<Postmaster>\r\nDATA\r\nSubject: two\r\n\r\nREJECT\r\n.\r\n"
          + b"RSET\r\nNOOP\r\nQUIT\r\n")
    write("smtp_session", "helo-and-order", session(0, 2)
          + b"MAIL FROM:<a@b.example>\r\nHELO\r\nHELO client.example\r\nMAIL FROM: test@test.net\r\n"
          + b"MAIL FROM:<a@b.example> SIZE=5\r\nRCPT TO:<user@example.com>\r\nMAIL FROM:<>\r\n"
          + b"MAIL FROM:<>\r\nDATA\r\nVRFY user\r\nEXPN list\r\nWHAT\r\nRCPT TO:<Postmaster>\r\n")
    write("smtp_session", "bdat-chunks", session(0, 4) + GREET + ENVELOPE
          + b"BDAT 5\r\nab\r\ncBDAT 9 LAST\r\n\r\n.\r\nxy\r\nNOOP\r\n"
          + b"BDAT 6 LAST\r\nQUIT\r\nNOOP\r\nBDAT lots\r\n")
    write("smtp_session", "bdat-zero-last", session(0, 1) + GREET + ENVELOPE
          + b"BDAT 0 LAST\r\nQUIT\r\n")
    write("smtp_session", "bdat-then-data", session(0, 9) + GREET + ENVELOPE
          + b"BDAT 3\r\nabcDATA\r\nRCPT TO:<user@example.com>\r\nBDAT 2 LAST\r\nde")
    write("smtp_session", "bdat-too-big", session(0x04, 13) + GREET + ENVELOPE
          + b"BDAT 300\r\n" + b"x" * 300 + b"BDAT 1 LAST\r\nyNOOP\r\n")
    write("smtp_session", "data-too-big", session(0x04, 17) + GREET
          + b"MAIL FROM:<a@b.example> SIZE=50\r\nRCPT TO:<user@example.com>\r\nDATA\r\n"
          + b"x" * 300 + b"\r\n.\r\nNOOP\r\n")
    write("smtp_session", "long-line", session(0, 63) + b"EHLO " + b"a" * 5000 + b"\r\nNOOP\r\n")
    write("smtp_session", "long-line-short-limit", session(0x08, 6) + b"EHLO " + b"a" * 100
          + b"\r\n" + GREET + b"NOOP\r\n")
    write("smtp_session", "starttls-injection", session(0x02, 7) + GREET
          + b"STARTTLS\r\nMAIL FROM:<injected@example.com>\r\n")
    write("smtp_session", "starttls-then-session", session(0x02, 0) + GREET + b"STARTTLS\r\n")
    write("smtp_session", "too-many-errors", session(0x20, 3) + b"BOGUS\r\n" * 25)
    write("smtp_session", "too-many-recipients", session(0x10, 8) + GREET + b"MAIL FROM:<>\r\n"
          + b"RCPT TO:<user@example.com>\r\n" * 3 + b"DATA\r\nx\r\n.\r\n")
    write("smtp_session", "smtputf8", session(0, 5) + GREET
          + "MAIL FROM:<jösé@b.example>\r\nMAIL FROM:<jösé@b.example> SMTPUTF8\r\nRCPT TO:<üser@example.com>\r\nRCPT TO:<user@example.com>\r\nDATA\r\nSubject: é\r\n\r\nü\r\n.\r\n".encode())
    write("smtp_session", "keyword-utf8", session(0, 1) + GREET + "MAIL FROMé\r\nRCPT TOé\r\nNOOP\r\n".encode())
    write("smtp_session", "bare-line-ends", session(1, 2) + GREET + ENVELOPE
          + b"DATA\r\na\nb\rc\r\n.\r\n" + ENVELOPE + b"DATA\r\na\r\n.\r\n")
    write("smtp_session", "not-utf8", session(0, 2) + b"EHLO \xff\xfe\r\n")


def smtp_data():
    for name, seq in SMUGGLING.items():
        msg = b"Subject: x\r\n\r\nbody" + seq + b"MAIL FROM:<evil@example.com>\r\n" + b"\r\n.\r\nQUIT\r\n"
        write("smtp_data", "smuggling-" + name, b"\x00" + msg)
        write("smtp_data", "smuggling-split-" + name, b"\x1c" + msg)
    write("smtp_data", "dot-stuffing", b"\x08Subject: x\r\n\r\n..hidden\r\n.\r\nQUIT\r\n")
    write("smtp_data", "empty", b"\x00.\r\n")
    write("smtp_data", "mixed-line-ends", b"\x04a\r\n..b\r\nc\nd\re\r\n.\r\n")
    write("smtp_data", "dot-cr-x", b"\x04a\r\n.\rb\r\n.\r\n")
    write("smtp_data", "size-limit", b"\x02" + b"0123456789" * 10 + b"\r\n.\r\n")
    write("smtp_data", "size-limit-half", b"\x03" + b"line\r\n" * 20 + b".\r\n")
    write("smtp_data", "eight-bit", b"\x10Subject: \xc3\xa9\r\n\r\n\xff\xfe\r\n.\r\n")
    write("smtp_data", "bdat-like", b"\x00x\n.\nMAIL FROM:<evil@example.com>\r\n")
    write("smtp_data", "no-end", b"\x00just text\r\n.. more\r\n")


def v2(cmd, fam, body):
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([cmd, fam]) + len(body).to_bytes(2, "big") + body


def proxy_header():
    after = b"EHLO client.example\r\n"
    write("proxy_header", "v1-tcp4", b"PROXY TCP4 198.51.100.7 192.0.2.1 4321 25\r\n" + after)
    write("proxy_header", "v1-tcp6", b"PROXY TCP6 2001:db8::7 2001:db8::1 4321 25\r\n" + after)
    write("proxy_header", "v1-tcp6-mapped", b"PROXY TCP6 ::ffff:198.51.100.7 ::1 65535 25\r\n")
    write("proxy_header", "v1-unknown", b"PROXY UNKNOWN\r\n" + after)
    write("proxy_header", "v1-unknown-max", b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n")
    write("proxy_header", "v1-family-mismatch", b"PROXY TCP4 ::1 ::1 1 2\r\n")
    write("proxy_header", "v1-partial", b"PROXY TCP4 1.2")
    write("proxy_header", "v1-107", b"PROXY UNKNOWN " + b"x" * 91 + b"\r\n")
    write("proxy_header", "no-proxy", after)
    src4 = bytes([198, 51, 100, 7, 192, 0, 2, 1, 0x10, 0xE1, 0, 25])
    write("proxy_header", "v2-tcp4", v2(0x21, 0x11, src4) + after)
    src6 = bytes(range(16)) + bytes(range(16, 32)) + b"\x10\xe1\x00\x19"
    write("proxy_header", "v2-tcp6", v2(0x21, 0x21, src6) + after)
    tlv = b"\x01\x00\x02h2" + b"\x02\x00\x0bexample.com" + b"\x20\x00\x05\x01\x00\x00\x00\x00"
    write("proxy_header", "v2-tcp4-tlvs", v2(0x21, 0x11, src4 + tlv) + after)
    write("proxy_header", "v2-udp4", v2(0x21, 0x12, src4))
    write("proxy_header", "v2-local", v2(0x20, 0x00, b"") + after)
    write("proxy_header", "v2-unspec", v2(0x21, 0x00, b""))
    write("proxy_header", "v2-unix", v2(0x21, 0x31, b"/tmp/a".ljust(108, b"\0") * 2))
    write("proxy_header", "v2-short-body", v2(0x21, 0x11, src4[:8]))
    write("proxy_header", "v2-max", v2(0x21, 0x11, src4 + b"\x00" * (520 - len(src4))))
    write("proxy_header", "v2-partial", v2(0x21, 0x11, src4)[:20])


def address():
    for i, s in enumerate([
        "John.Doe@Example.COM",
        "JOSÉ@Bücher.example",
        "jose\u0301@xn--bcher-kva.example",
        '"john doe"@example.com',
        '"a\\"b"@x.example',
        '"unterminated@example.com',
        "a@[192.0.2.1]",
        "a@[IPv6:2001:db8::1]",
        "a@[IPV6:::ffff:192.0.2.1]",
        "a@[999.1.1.1]",
        "a..b@example.com",
        ".a@example.com",
        "user+tag@example.com",
        "postmaster@example.com",
        "a@example.com.",
        "a@-example.com",
        "İ@example.com",
        "ß@straße.example",
        "x@xn--zz.example",
        "a" * 64 + "@example.com",
        "a@" + "a" * 61 + "ü.example",
        "a@" + ".".join(["abcdefghij" * 6 + "abc"] * 4),
        "📮@📮.example",
    ]):
        write("address", "%02d" % i, s.encode())


smtp_command()
smtp_session()
smtp_data()
proxy_header()
address()
