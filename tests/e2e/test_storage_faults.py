"""A storage failure is an answer, never a default (issue #9): while the
store fails, SMTP says 451 4.3.0, IMAP NO [UNAVAILABLE], POP3
-ERR [SYS/TEMP] — never an empty LIST, a "nonexistent" mailbox, a quota
of 0 or a message "removed by another session". The server runs with its
test hook POSTROOM_TEST_STORE_FAULTS: every storage call fails while the
named file exists."""

import imaplib
import os
import poplib
import smtplib
import ssl
import time

import pytest

from conftest import make_server, discard

USER = "customseo@esoomllub.com"
PASSWORD = "99test99"


def insecure():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@pytest.fixture
def faulty():
    s = make_server()
    s.fault_file = os.path.join(s.tmp, "fail-storage")
    s.env["POSTROOM_TEST_STORE_FAULTS"] = s.fault_file
    s.start()
    yield s
    discard(s)


def fail(s, on):
    if on:
        open(s.fault_file, "w").close()
    elif os.path.exists(s.fault_file):
        os.remove(s.fault_file)
    # The server looks at the file every 50 ms.
    time.sleep(0.3)


def deliver(s, subject="hello"):
    with smtplib.SMTP("127.0.0.1", s.port, timeout=10) as c:
        c.sendmail("a@example.net", [USER], f"Subject: {subject}\r\n\r\nbody\r\n")


def imap_login(s):
    m = imaplib.IMAP4_SSL("127.0.0.1", s.imaps_port, ssl_context=insecure(), timeout=10)
    m.login(USER, PASSWORD)
    return m


def no_unavailable(result):
    typ, data = result
    first = data[0][0] if isinstance(data[0], list) else data[0]
    assert typ == "NO", result
    assert b"[UNAVAILABLE]" in first, result


def test_smtp_answers_451_while_storage_fails(faulty):
    fail(faulty, True)
    with smtplib.SMTP("127.0.0.1", faulty.port, timeout=10) as c:
        c.ehlo("client.example")
        c.mail("a@example.net")
        code, msg = c.rcpt(USER)
        assert code == 451 and b"4.3.0" in msg, (code, msg)
    fail(faulty, False)
    deliver(faulty)
    assert len(faulty.messages(USER)) == 1


def test_imap_answers_no_unavailable_never_an_empty_answer(faulty):
    deliver(faulty)
    m = imap_login(faulty)
    fail(faulty, True)
    no_unavailable(m.list())
    no_unavailable(m.select("INBOX"))
    no_unavailable(m.status("INBOX", "(MESSAGES)"))
    no_unavailable(m.getquotaroot("INBOX"))
    no_unavailable(m.create("Projects"))
    fail(faulty, False)
    typ, _ = m.select("INBOX")
    assert typ == "OK"
    # Selected, then the store fails: FETCH of the body is no empty body.
    fail(faulty, True)
    typ, data = m.fetch("1", "(BODY.PEEK[])")
    assert typ == "NO" and b"[UNAVAILABLE]" in data[0], (typ, data)
    fail(faulty, False)
    typ, data = m.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK" and b"Subject: hello" in data[0][1]
    m.logout()


def test_imap_login_is_unavailable_not_failed(faulty):
    fail(faulty, True)
    m = imaplib.IMAP4_SSL("127.0.0.1", faulty.imaps_port, ssl_context=insecure(), timeout=10)
    with pytest.raises(imaplib.IMAP4.error) as e:
        m.login(USER, PASSWORD)
    assert "UNAVAILABLE" in str(e.value), e.value
    fail(faulty, False)


def test_pop3_answers_sys_temp(faulty):
    deliver(faulty)
    # A login while the store fails: not "wrong password".
    fail(faulty, True)
    p = poplib.POP3_SSL("127.0.0.1", faulty.pop3s_port, context=insecure(), timeout=10)
    p.user(USER)
    with pytest.raises(poplib.error_proto) as e:
        p.pass_(PASSWORD)
    assert b"[SYS/TEMP]" in e.value.args[0], e.value
    fail(faulty, False)
    # Logged in, then the store fails: RETR is no "message removed".
    p = poplib.POP3_SSL("127.0.0.1", faulty.pop3s_port, context=insecure(), timeout=10)
    p.user(USER)
    p.pass_(PASSWORD)
    fail(faulty, True)
    with pytest.raises(poplib.error_proto) as e:
        p.retr(1)
    assert b"[SYS/TEMP]" in e.value.args[0], e.value
    fail(faulty, False)
    assert b"Subject: hello" in b"\r\n".join(p.retr(1)[1])
    p.quit()
