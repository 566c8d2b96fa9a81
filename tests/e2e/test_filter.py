"""The content filter wired into the server (issue #10): verdicts, actions,
headers, the quarantine, whitelists, explain and `filter check`, driven by
smtplib, imaplib and the CLI.

Scores are made exact with the server's test hook
(`POSTROOM_TEST_FILTER_SCORES=1`): a message's `X-Postroom-Test-Score`
header becomes the symbol TEST_SCORE with that score, whatever the real
checks add (none of them score these plain messages)."""

import email
import imaplib
import json
import re
import smtplib
import ssl

import pytest

from conftest import discard, make_server

USER = "customseo@esoomllub.com"
PASSWORD = "99test99"


@pytest.fixture
def fserver():
    s = make_server()
    s.env["POSTROOM_TEST_FILTER_SCORES"] = "1"
    s.start()
    yield s
    discard(s)


def message(score=None, subject="hello", sender="sender@remote.example", extra=""):
    head = f"From: {sender}\r\nTo: {USER}\r\nSubject: {subject}\r\nMessage-ID: <{subject.replace(' ', '.')}@remote.example>\r\n"
    if score is not None:
        head += f"X-Postroom-Test-Score: {score}\r\n"
    return (head + extra + "\r\nThe body of the message.\r\n").encode()


def send(server, msg, rcpts=(USER,), sender="sender@remote.example"):
    """(code, reply text) of the DATA answer."""
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as s:
        s.ehlo("client.example.org")
        s.mail(sender)
        for r in rcpts:
            assert s.rcpt(r)[0] == 250
        code, reply = s.data(msg)
        return code, reply.decode()


def queue_id(reply):
    m = re.search(r"queued as (\S+)", reply)
    assert m, reply
    return m.group(1)


def imap_folder(server, folder):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    m = imaplib.IMAP4_SSL("127.0.0.1", server.imaps_port, ssl_context=ctx, timeout=10)
    m.login(USER, PASSWORD)
    typ, _ = m.select(folder, readonly=True)
    assert typ == "OK"
    typ, data = m.uid("SEARCH", None, "ALL")
    out = []
    for uid in data[0].split():
        typ, d = m.uid("FETCH", uid, "(BODY.PEEK[])")
        out.append(email.message_from_bytes(d[0][1]))
    m.logout()
    return out


def test_a_clean_message_is_delivered_with_its_score(fserver):
    code, reply = send(fserver, message())
    assert code == 250, reply
    inbox = imap_folder(fserver, "INBOX")
    assert len(inbox) == 1
    assert inbox[0]["X-Spam-Score"] == "0.0"
    assert inbox[0]["X-Spam-Status"].startswith("No, score=0.0 required=6.0")
    assert inbox[0]["X-Spam-Flag"] is None
    log = fserver.read_log()
    assert re.search(r"transaction.*score=0.*action=.?deliver", log), log[-2000:]


def test_a_forged_spam_status_is_replaced(fserver):
    code, _ = send(fserver, message(score=7, extra="X-Spam-Status: No, score=-100\r\nX-Spam-Flag: NO\r\n"))
    assert code == 250
    junk = imap_folder(fserver, "Junk")
    assert len(junk) == 1
    assert junk[0].get_all("X-Spam-Status") == [junk[0]["X-Spam-Status"]]
    assert junk[0]["X-Spam-Status"].startswith("Yes, score=7.0")
    assert junk[0].get_all("X-Spam-Flag") == ["YES"]


def test_over_the_junk_threshold_lands_in_junk(fserver):
    code, reply = send(fserver, message(score=7.5, subject="cheap pills"))
    assert code == 250, reply
    assert imap_folder(fserver, "INBOX") == []
    junk = imap_folder(fserver, "Junk")
    assert len(junk) == 1
    assert junk[0]["Subject"] == "cheap pills"
    assert junk[0]["X-Spam-Flag"] == "YES"
    status = re.sub(r"\s+", " ", junk[0]["X-Spam-Status"])
    assert status.startswith("Yes, score=7.5 required=6.0 tests=TEST_SCORE"), status


def test_over_the_high_threshold_is_refused_at_smtp_time(fserver):
    code, reply = send(fserver, message(score=25))
    assert code == 550, reply
    assert reply.startswith("5.7.1"), reply
    # Refused, never bounced: nothing is queued for the (forged) sender.
    assert fserver.queue() == []
    assert imap_folder(fserver, "INBOX") == [] and imap_folder(fserver, "Junk") == []


def test_high_action_discard_accepts_and_drops(server_factory):
    s = server_factory(extra_toml='[filter.policy]\nhigh_action = "discard"\n', populate=True)
    s.env["POSTROOM_TEST_FILTER_SCORES"] = "1"
    s.start()
    code, reply = send(s, message(score=25))
    assert code == 250, reply
    assert s.queue() == []
    assert imap_folder(s, "INBOX") == [] and imap_folder(s, "Junk") == []
    assert re.search(r"transaction.*verdict=.?discarded", s.read_log())


def test_scores_config_overrides_a_symbol(server_factory):
    s = server_factory(extra_toml="[filter.scores]\nTEST_SCORE = 8.0\n")
    s.env["POSTROOM_TEST_FILTER_SCORES"] = "1"
    s.start()
    code, _ = send(s, message(score=1))
    assert code == 250
    assert len(imap_folder(s, "Junk")) == 1


def test_filter_disabled_delivers_unscored(server_factory):
    s = server_factory(extra_toml="[filter]\nenabled = false\n")
    s.env["POSTROOM_TEST_FILTER_SCORES"] = "1"
    s.start()
    code, _ = send(s, message(score=50))
    assert code == 250
    inbox = imap_folder(s, "INBOX")
    assert len(inbox) == 1 and inbox[0]["X-Spam-Score"] is None


def test_a_bad_filter_config_stops_the_start(server_factory):
    s = server_factory(extra_toml='[filter.policy]\nhigh_action = "bounce"\n', populate=False, init=False)
    with pytest.raises(AssertionError, match="high_action"):
        s.start(attempts=1)
