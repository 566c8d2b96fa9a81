"""Logs that answer "what happened to this message?" (issue #12): JSON
objects in a file, one per event: every mailbox a list reached, a size
refusal, each login failure with its reason, admin changes; the file is
reopened on SIGHUP after logrotate moved it."""

import imaplib
import json
import os
import signal
import smtplib
import time

import pytest

from conftest import make_server


def events(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def wait_for(path, pred, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path):
            found = [e for e in events(path) if pred(e)]
            if found:
                return found
        time.sleep(0.1)
    raise AssertionError(f"no such event in {path}: {events(path) if os.path.exists(path) else 'no file'}")


@pytest.fixture
def logged(tmp_path):
    log = str(tmp_path / "postroom.log")
    s = make_server(
        extra_smtp="max_message_size = 20000",
        extra_toml=f'\n[log]\nformat = "json"\noutput = "{log}"\n',
    ).start()
    yield s, log
    s.stop()


def test_a_list_delivery_names_every_mailbox(logged):
    s, log = logged
    with smtplib.SMTP("127.0.0.1", s.port) as c:
        c.sendmail("a@remote.example", ["dev@esoomllub.com"], b"Subject: to the list\r\n\r\nhello\r\n")
    found = wait_for(log, lambda e: e.get("message") == "local delivery" and e.get("rcpt") == "dev@esoomllub.com")
    assert {e["mailbox"] for e in found} == {"dbrooks@esoomllub.com", "kent@esoomllub.com"}
    assert len({e["queue_id"] for e in found}) == 1
    assert all(e["folder"] == "INBOX" and e["status"] == "delivered" for e in found)
    # The transaction line has the same queue id and its verdict.
    tx = wait_for(log, lambda e: e.get("message") == "transaction" and e.get("queue_id") == found[0]["queue_id"])
    assert tx[0]["verdict"] == "accepted"


def test_a_size_refusal_is_logged_with_sender_and_reason(logged):
    s, log = logged
    with smtplib.SMTP("127.0.0.1", s.port) as c:
        with pytest.raises(smtplib.SMTPException):
            c.sendmail("big@remote.example", ["customseo@esoomllub.com"], b"Subject: big\r\n\r\n" + b"x" * 30000)
    refusals = wait_for(log, lambda e: "big@remote.example" in json.dumps(e) and "552" in json.dumps(e))
    assert refusals


@pytest.mark.parametrize(
    "user,password,reason",
    [
        ("nobody@esoomllub.com", "whatever1", "unknown user"),
        ("customseo@esoomllub.com", "wrong-password", "wrong password"),
    ],
)
def test_login_failures_say_why(logged, user, password, reason):
    s, log = logged
    c = imaplib.IMAP4("127.0.0.1", s.imap_port)
    c.starttls(ssl_context=__import__("ssl")._create_unverified_context())
    with pytest.raises(imaplib.IMAP4.error):
        c.login(user, password)
    found = wait_for(log, lambda e: e.get("message") == "login failed" and e.get("user") == user)
    assert found[0]["reason"] == reason


def test_a_disabled_mailbox_login_says_disabled(logged):
    s, log = logged
    s.cli("user", "disable", "customseo@esoomllub.com")
    c = imaplib.IMAP4("127.0.0.1", s.imap_port)
    c.starttls(ssl_context=__import__("ssl")._create_unverified_context())
    with pytest.raises(imaplib.IMAP4.error):
        c.login("customseo@esoomllub.com", "99test99")
    found = wait_for(log, lambda e: e.get("message") == "login failed" and e.get("reason") == "disabled")
    assert found[0]["user"] == "customseo@esoomllub.com"


def test_the_log_file_is_reopened_on_sighup(logged):
    s, log = logged
    wait_for(log, lambda e: True)
    os.rename(log, log + ".1")
    os.kill(s.proc.pid, signal.SIGHUP)
    wait_for(log, lambda e: "reopened" in e.get("applied", ""))
    with smtplib.SMTP("127.0.0.1", s.port) as c:
        c.sendmail("a@remote.example", ["customseo@esoomllub.com"], b"Subject: after\r\n\r\nx\r\n")
    wait_for(log, lambda e: e.get("message") == "local delivery")
    assert not any(e.get("message") == "local delivery" for e in events(log + ".1"))
    assert os.stat(log).st_mode & 0o037 == 0


def test_an_admin_change_by_the_cli_is_logged(logged):
    s, log = logged
    s.cli("user", "add", "newbie@esoomllub.com", "--password-stdin", input="a-long-password\n")
    found = wait_for(log, lambda e: e.get("message") == "admin change" and "newbie@esoomllub.com" in e.get("object", ""))
    assert found[0]["who"].startswith("cli:")


def test_a_sendmail_submission_is_logged(logged):
    s, log = logged
    s.cli("sendmail", "customseo@esoomllub.com", input="Subject: local\n\nfrom cron\n")
    found = wait_for(log, lambda e: e.get("message") == "sendmail submission")
    assert found[0]["verdict"] == "accepted" and found[0]["to"] == "customseo@esoomllub.com"
    assert any(e.get("message") == "local delivery" and e.get("queue_id") == found[0]["queue_id"] for e in events(log))
