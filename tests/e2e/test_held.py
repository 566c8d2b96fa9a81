"""Held deliveries (issues #9 and #12): a delivery held for a list member
that does not exist is logged with its reason, and `queue release` after
the mailbox is created resolves the recipient again and delivers it into
that mailbox, never out by MX."""

import imaplib
import smtplib
import ssl


def insecure():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_held_list_member_is_released_into_the_new_mailbox(server):
    server.cli("alias", "add", "team@esoomllub.com", "dbrooks,carol")
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as s:
        s.sendmail("friend@remote.example", ["team@esoomllub.com"],
                   b"Subject: for the team\r\nMessage-ID: <held-1@remote.example>\r\n\r\nhello\r\n")
    assert len(server.messages("dbrooks@esoomllub.com")) == 1
    held = [q for q in server.queue() if q[1] == "held"]
    assert [q[3] for q in held] == ["carol@esoomllub.com"]
    queue_id = held[0][0]
    show = server.cli("queue", "show", queue_id).stdout
    assert "held: unknown-member" in show
    # Not held silently: one log line with the typed reason.
    log = server.read_log()
    assert "held for the administrator" in log and "unknown-member" in log

    # Releasing before carol exists is refused: it stays held, not sent out.
    r = server.cli("queue", "release", queue_id, check=False)
    assert r.returncode != 0 and "does not exist" in r.stderr, r.stderr
    assert [q[1] for q in server.queue()] == ["held"]

    server.cli("user", "add", "carol@esoomllub.com", "--password-stdin", input="carol-secret-1\n")
    r = server.cli("queue", "release", queue_id)
    assert "1 items released" in r.stdout
    # Delivered here in the same commit that removed the held row: nothing
    # is left for the outbound queue to try by MX.
    assert server.queue() == []

    m = imaplib.IMAP4_SSL("127.0.0.1", server.imaps_port, ssl_context=insecure(), timeout=10)
    try:
        m.login("carol@esoomllub.com", "carol-secret-1")
        typ, data = m.select("INBOX")
        assert (typ, data[0]) == ("OK", b"1")
        typ, data = m.fetch("1", "(BODY.PEEK[HEADER])")
        head = data[0][1]
        assert b"Subject: for the team" in head
        assert b"Delivered-To: carol@esoomllub.com" in head
        assert b"Return-Path: <friend@remote.example>" in head
    finally:
        m.logout()

    # A second release finds nothing held.
    r = server.cli("queue", "release", queue_id, check=False)
    assert r.returncode != 0 and "no held queue item" in r.stderr
