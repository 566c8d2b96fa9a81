"""Prometheus metrics at /metrics (issue #11): scraped over loopback with
http.client after an SMTP delivery, a failed IMAP login and a queued
message, the counts move; a client outside http.metrics_networks gets
403."""

import http.client
import imaplib
import re
import smtplib
import ssl

from conftest import discard, make_server
from test_console import PROVIDER, PROVIDER_PW, Browser

SAMPLE = re.compile(r'^([a-z_]+)(?:\{(.*)\})? (\S+)$')


def scrape(s):
    c = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=10)
    try:
        c.request("GET", "/metrics")
        r = c.getresponse()
        return r.status, r.headers, r.read().decode()
    finally:
        c.close()


def parse(text):
    """{(name, frozenset(labels)): value}, checking every line's form."""
    out = {}
    types = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        m = SAMPLE.match(line)
        assert m, line
        labels = frozenset(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', m[2] or ""))
        out[(m[1], labels)] = float(m[3])
    return out, types


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples, name):
    return sum(v for (n, _), v in samples.items() if n == name)


def test_counts_move_after_mail_logins_and_queueing():
    s = make_server().start()
    try:
        status, h, text = scrape(s)
        assert status == 200, text
        assert h["Content-Type"].startswith("text/plain; version=0.0.4")
        before, types = parse(text)
        assert types["postroom_smtp_transactions_total"] == "counter"
        assert types["postroom_store_commit_seconds"] == "histogram"
        assert types["postroom_queue_messages"] == "gauge"
        assert types["postroom_connections_open"] == "gauge"
        assert value(before, "postroom_uptime_seconds") >= 0

        # An SMTP delivery: one mailbox here, one outside member queued
        # (DNS is off, so it stays in the queue).
        with smtplib.SMTP("127.0.0.1", s.port, timeout=10) as c:
            c.sendmail("sender@example.org", ["dev@esoomllub.com"],
                       b"From: sender@example.org\r\nSubject: metrics\r\n\r\nhello\r\n")
        # A failed IMAP login.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        m = imaplib.IMAP4_SSL("127.0.0.1", s.imaps_port, ssl_context=ctx, timeout=10)
        try:
            try:
                m.login("customseo@esoomllub.com", "wrong-password")
                raise AssertionError("the login should fail")
            except imaplib.IMAP4.error:
                pass
            # While this connection is open it is counted.
            _, _, text = scrape(s)
            during, _ = parse(text)
            assert value(during, "postroom_connections_open", protocol="imap") >= 1
        finally:
            m.shutdown()

        _, _, text = scrape(s)
        after, _ = parse(text)
        assert value(after, "postroom_smtp_transactions_total", verdict="accepted") == \
            value(before, "postroom_smtp_transactions_total", verdict="accepted") + 1
        assert value(after, "postroom_logins_total", protocol="imap", result="failed") == \
            value(before, "postroom_logins_total", protocol="imap", result="failed") + 1
        assert value(after, "postroom_deliveries_total", status="delivered") >= \
            value(before, "postroom_deliveries_total", status="delivered") + 1
        assert value(after, "postroom_store_commit_seconds_count") >= \
            value(before, "postroom_store_commit_seconds_count") + 1
        assert value(after, "postroom_store_commit_seconds_bucket", le="+Inf") == \
            value(after, "postroom_store_commit_seconds_count")
        assert total(after, "postroom_queue_messages") >= total(before, "postroom_queue_messages") + 1
        assert any(n == "postroom_queue_oldest_age_seconds" for (n, _) in after)
    finally:
        discard(s)


def test_other_networks_get_403_unless_a_provider_admin():
    s = make_server(extra_http='metrics_networks = ["10.0.0.0/8"]')
    s.cli("admin", "add", PROVIDER, "--password-stdin", input=PROVIDER_PW + "\n")
    s.start()
    try:
        status, _, text = scrape(s)
        assert status == 403, text
        assert "postroom_" not in text
        # A provider admin's session reads it from anywhere.
        b = Browser(s.http_port)
        status, _, _, _ = b.login(PROVIDER, PROVIDER_PW)
        assert status == 303
        status, _, data, _ = b.request("GET", "/metrics")
        assert status == 200 and b"postroom_uptime_seconds" in data
        samples, _ = parse(data.decode())
        assert value(samples, "postroom_logins_total", protocol="http", result="ok") >= 1
    finally:
        discard(s)
