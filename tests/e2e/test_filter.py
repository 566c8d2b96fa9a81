"""The content filter wired into the server (issue #10): verdicts, actions,
headers, the quarantine, whitelists, explain and `filter check`, driven by
smtplib, imaplib and the CLI.

Scores are made exact with the server's test hook
(`POSTROOM_TEST_FILTER_SCORES=1`): a message's `X-Postroom-Test-Score`
header becomes the symbol TEST_SCORE with that score, whatever the real
checks add (none of them score these plain messages)."""

import email
import email.utils
import imaplib
import json
import os
import re
import smtplib
import ssl
import time

import pytest

from conftest import discard, make_server
from test_outbound import dns_and_receiver  # noqa: F401

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
    # With a Date, so that the header rules (MISSING_DATE) add nothing.
    head = f"From: {sender}\r\nTo: {USER}\r\nSubject: {subject}\r\nMessage-ID: <{subject.replace(' ', '.')}@remote.example>\r\n"
    head += f"Date: {email.utils.formatdate()}\r\n"
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
    # Counted at /metrics.
    from test_metrics import scrape

    status, _, text = scrape(fserver)
    assert status == 200
    assert 'postroom_filter_actions_total{action="junk"} 1' in text, text


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


def test_over_quarantine_is_held_then_released_unchanged(fserver):
    msg = message(score=12, subject="held one")
    code, reply = send(fserver, msg)
    assert code == 250, reply
    qid = queue_id(reply)
    assert imap_folder(fserver, "INBOX") == [] and imap_folder(fserver, "Junk") == []
    listed = fserver.cli("quarantine", "list", "--json").stdout.splitlines()
    assert len(listed) == 1
    entry = json.loads(listed[0])
    assert entry["queue_id"] == qid and entry["recipients"] == [USER]
    assert "spam score 12.0" in entry["reason"]
    assert fserver.cli("quarantine", "list", "--domain", "esoomllub.net").stdout.startswith(qid)
    shown = fserver.cli("quarantine", "show", qid).stdout
    assert "TEST_SCORE" in shown and "Subject: held one" in shown
    fserver.cli("quarantine", "release", qid)
    assert fserver.cli("quarantine", "list").stdout == ""
    inbox = imap_folder(fserver, "INBOX")
    assert len(inbox) == 1
    delivered = inbox[0].as_bytes().replace(b"\n", b"\r\n")
    # Unchanged: the message as it came, after the trace and filter lines.
    assert delivered.endswith(msg), delivered
    assert inbox[0]["X-Spam-Score"] == "12.0"


def test_quarantine_delete_and_unknown_ids(fserver):
    code, reply = send(fserver, message(score=11))
    qid = queue_id(reply)
    fserver.cli("quarantine", "delete", qid)
    assert fserver.cli("quarantine", "list").stdout == ""
    assert fserver.queue() == []
    r = fserver.cli("quarantine", "release", qid, check=False)
    assert r.returncode != 0 and "no quarantined message" in r.stderr


def test_a_whitelisted_sender_is_delivered_but_not_past_a_forced_reject(fserver):
    fserver.cli("whitelist", "add", "esoomllub.net", "friend.example")
    fserver.cli("whitelist", "add", USER, "boss@partner.example")
    listed = fserver.cli("whitelist", "list", "esoomllub.com").stdout
    assert "esoomllub.com\tfriend.example" in listed and f"{USER}\tboss@partner.example" in listed
    for sender in ["anyone@friend.example", "boss@partner.example"]:
        code, reply = send(fserver, message(score=15, subject=f"from {sender}", sender=sender), sender=sender)
        assert code == 250, reply
    # The From: counts as well as the envelope sender (a newsletter's is
    # its provider's bounce address).
    code, _ = send(fserver, message(score=15, subject="via a mailer", sender="boss@partner.example"),
                   sender="bounce+77@mailer.example")
    assert code == 250
    inbox = imap_folder(fserver, "INBOX")
    assert sorted(m["Subject"] for m in inbox) == ["from anyone@friend.example", "from boss@partner.example",
                                                   "via a mailer"]
    assert all(m["X-Spam-Score"] == "0.0" for m in inbox)
    # Another mailbox's whitelist is not this one's.
    code, reply = send(fserver, message(score=15, sender="other@partner.example"), sender="other@partner.example")
    assert code == 250
    assert len(fserver.cli("quarantine", "list").stdout.splitlines()) == 1
    fserver.cli("whitelist", "remove", "esoomllub.com", "friend.example")
    assert "friend.example" not in fserver.cli("whitelist", "list").stdout
    r = fserver.cli("whitelist", "add", "nothosted.example", "x.example", check=False)
    assert r.returncode != 0


def test_explain_names_every_symbol_and_the_action(fserver):
    code, reply = send(fserver, message(score=7.25, subject="explain me"))
    qid = queue_id(reply)
    out = ""
    for _ in range(50):
        r = fserver.cli("explain", qid, check=False)
        if r.returncode == 0:
            out = r.stdout
            break
        time.sleep(0.1)
    assert "TEST_SCORE" in out and "7.2" in out, out
    assert f"recipient {USER}: score 7.2" in out and "-> junk" in out, out
    # By Message-ID too, with or without <>.
    by_mid = fserver.cli("explain", "<explain.me@remote.example>", "--json").stdout
    report = json.loads(by_mid.splitlines()[0])
    assert report["queue_id"] == qid
    assert report["recipients"][0]["action"] == "junk"
    assert report["checks"][-1]["symbols"][0] == {"name": "TEST_SCORE", "score": 7.25, "detail": "X-Postroom-Test-Score: 7.25"}
    # A refused message has a report too, under the id its 550 names.
    code, reply = send(fserver, message(score=30, subject="refused one"))
    assert code == 550
    rid = re.search(r"\[(\S+)\]", reply).group(1)
    for _ in range(50):
        r = fserver.cli("explain", rid, check=False)
        if r.returncode == 0:
            break
        time.sleep(0.1)
    assert "-> reject" in r.stdout and "550 5.7.1" in r.stdout, r.stdout + r.stderr
    assert fserver.cli("explain", "no-such-id", check=False).returncode != 0


def test_per_domain_thresholds(fserver):
    out = fserver.cli("filter", "policy", "esoomllub.net", "--junk-at", "2", "--high-action", "discard").stdout
    assert "junk_at\t2" in out and "quarantine_at\t10 (server)" in out and "high_action\tdiscard" in out
    bad = fserver.cli("filter", "policy", "esoomllub.com", "--junk-at", "50", check=False)
    assert bad.returncode != 0 and "junk_at" in bad.stderr
    # No message reached this domain yet, so the server has not cached
    # its settings (it rereads them at most every 10 s).
    code, _ = send(fserver, message(score=3))
    assert code == 250
    assert len(imap_folder(fserver, "Junk")) == 1
    code, reply = send(fserver, message(score=40))
    assert code == 250, reply  # discarded, not refused
    assert "high_action\treject (server)" in fserver.cli("filter", "policy", "esoomllub.com", "--reset").stdout


def test_filter_check_json_parses(fserver, tmp_path, monkeypatch):
    monkeypatch.setenv("POSTROOM_TEST_FILTER_SCORES", "1")
    (tmp_path / "maildir" / "cur").mkdir(parents=True)
    (tmp_path / "maildir" / "cur" / "1").write_bytes(message(score=8))
    (tmp_path / "maildir" / "new").mkdir()
    (tmp_path / "maildir" / "new" / "2").write_bytes(message())
    (tmp_path / "one.eml").write_bytes(message(score=25))
    r = fserver.cli("filter", "check", str(tmp_path / "maildir"), str(tmp_path / "one.eml"), "--json")
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(os.path.basename(x["file"]), x["action"]) for x in lines] == [("1", "junk"), ("2", "deliver"), ("one.eml", "reject")]
    for x in lines:
        assert isinstance(x["score"], (int, float)) and isinstance(x["symbols"], list)
        for s in x["symbols"]:
            assert set(s) == {"name", "score", "detail"}
    plain = fserver.cli("filter", "check", str(tmp_path / "one.eml")).stdout
    assert plain.startswith(str(tmp_path / "one.eml") + "\t25.0\treject\tTEST_SCORE(25.0)"), plain


def test_spam_is_never_forwarded_and_gateway_relays_pass_the_same_chain(dns_and_receiver, monkeypatch):
    from test_outbound import outbound_server, wait_for

    monkeypatch.setenv("POSTROOM_TEST_FILTER_SCORES", "1")
    dns_port, smtp_port, receiver = dns_and_receiver
    server = outbound_server(dns_port, smtp_port)
    try:
        server.cli("user", "forward", "dbrooks@esoomllub.com", "friend@remote.example", "--no-copy")
        for score, subject in [(7, "junk"), (12, "quarantined"), (None, "clean")]:
            code, _ = send(server, message(score=score, subject=subject), rcpts=["dbrooks@esoomllub.com"])
            assert code == 250
        assert wait_for(lambda: len(receiver.messages) >= 1, 20), server.read_log()[-2000:]
        # Only the clean one went out; the quarantined one waits, held.
        assert [m[2].split(b"Subject: ")[1].split(b"\r\n")[0] for m in receiver.messages] == [b"clean"]
        assert b"X-Spam-Score: 0.0\r\n" in receiver.messages[0][2]
        held = server.cli("quarantine", "list").stdout.splitlines()
        assert len(held) == 1 and "friend@remote.example" in held[0]

        server.cli("domain", "add", "gw.example", "--relay-to", f"127.0.0.1:{smtp_port}")
        server.cli("domain", "recipients", "gw.example", "--add", "sales")
        code, _ = send(server, message(score=7, subject="tagged"), rcpts=["sales@gw.example"])
        assert code == 250
        # The customer's own server gets junk, tagged, to file it itself.
        assert wait_for(lambda: len(receiver.messages) == 2, 20), server.read_log()[-2000:]
        content = receiver.messages[1][2]
        assert b"Subject: tagged" in content and b"X-Spam-Flag: YES\r\n" in content
        code, reply = send(server, message(score=30), rcpts=["sales@gw.example"])
        assert code == 550, reply
    finally:
        server.stop()
