"""The object life cycle through the CLI (issue #9): show, change and
remove domains, mailboxes and list members; the refusals that keep the
directory sound; the audit trail. The CLI runs as a subprocess against a
running server, and the effects are checked from outside with smtplib and
imaplib."""

import imaplib
import os
import pwd
import re
import smtplib
import ssl

import pytest

from conftest import UNUSED_PASSWORD, free_port


def insecure():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def imaps(server, user, password):
    m = imaplib.IMAP4_SSL("127.0.0.1", server.imaps_port, ssl_context=insecure(), timeout=10)
    m.login(user, password)
    return m


def deliver(server, to, subject="hello"):
    with smtplib.SMTP("127.0.0.1", server.port) as s:
        body = f"From: alice@remote.example\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nbody\r\n"
        s.sendmail("alice@remote.example", [to], body.encode())


def fields(out):
    """`user show` / `domain show`: one `name<TAB>value` per line."""
    return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line and not line.startswith(" "))


def test_user_add_without_a_password_is_refused(server):
    r = server.cli("user", "add", "nopw@esoomllub.com", check=False)
    assert r.returncode != 0 and "--password-stdin" in r.stderr, r.stderr
    assert "nopw@" not in server.cli("user", "list").stdout
    # Before: the mailbox was made, and nobody could ever log in to it.
    server.cli("user", "add", "nopw@esoomllub.com", "--password-stdin", input="long-enough-pw\n")
    imaps(server, "nopw@esoomllub.com", "long-enough-pw").logout()


def test_an_alias_on_a_mailbox_is_refused(server, tmp_path):
    r = server.cli("alias", "add", "Kent@esoomllub.com", "outside@example.org", check=False)
    assert r.returncode != 0 and "is a mailbox" in r.stderr, r.stderr
    assert not any(line.lower().startswith("kent@") for line in server.cli("alias", "list").stdout.splitlines())
    # Nor through an import (all or nothing, naming the line).
    m = tmp_path / "virtual"
    m.write_text("sales@esoomllub.com kent@esoomllub.com\nkent@esoomllub.com kent@elsewhere.example\n")
    r = server.cli("import", "virtual", str(m), check=False)
    assert r.returncode != 0 and ":2:" in r.stderr and "is a mailbox" in r.stderr, r.stderr
    assert "sales@" not in server.cli("alias", "list").stdout
    # The other way round: a mailbox on an alias's address.
    r = server.cli("user", "add", "dev@esoomllub.com", "--password-hash", UNUSED_PASSWORD, check=False)
    assert r.returncode != 0 and "is an alias" in r.stderr, r.stderr


def test_user_show_set_and_last_login(server):
    out = fields(server.cli("user", "show", "customseo@esoomllub.com").stdout)
    assert out["last login"] == "never"
    assert out["usage"] == "0 bytes in 0 messages"
    assert out["quota"] == "none"
    deliver(server, "customseo@esoomllub.com")
    imaps(server, "customseo@esoomllub.com", "99test99").logout()
    out = fields(server.cli("user", "show", "CustomSEO@esoomllub.com").stdout)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", out["last login"]), out
    assert out["usage"].endswith("in 1 messages") and not out["usage"].startswith("0 ")
    assert (out["enabled"], out["domain admin"], out["forwarding"]) == ("yes", "no", "none")
    assert fields(server.cli("user", "show", "kent@esoomllub.com").stdout)["domain admin"] == "yes"

    server.cli("user", "set", "customseo@esoomllub.com", "--quota", "1K")
    assert fields(server.cli("user", "show", "customseo@esoomllub.com").stdout)["quota"] == "1024"
    # The new quota applies at once: a declared size past it is refused.
    with smtplib.SMTP("127.0.0.1", server.port) as s:
        s.ehlo("client.example")
        s.mail("alice@remote.example", ["SIZE=2000"])
        assert s.rcpt("customseo@esoomllub.com")[0] == 452
    server.cli("user", "set", "customseo@esoomllub.com", "--quota", "none")
    assert fields(server.cli("user", "show", "customseo@esoomllub.com").stdout)["quota"] == "none"
    r = server.cli("user", "set", "customseo@esoomllub.com", "--quota", "lots", check=False)
    assert r.returncode != 0 and "not a size" in r.stderr
    r = server.cli("user", "show", "nobody@esoomllub.com", check=False)
    assert r.returncode != 0 and "no mailbox" in r.stderr


def test_user_remove_disables_at_once_and_now_deletes(server):
    deliver(server, "customseo@esoomllub.com")
    out = server.cli("user", "remove", "customseo@esoomllub.com").stdout
    assert "disabled now" in out and "deleted after" in out
    with pytest.raises(imaplib.IMAP4.error):
        imaps(server, "customseo@esoomllub.com", "99test99")
    shown = fields(server.cli("user", "show", "customseo@esoomllub.com").stdout)
    assert shown["enabled"] == "no" and "deleted after" in shown["removed"]
    assert shown["usage"].endswith("in 1 messages")  # kept for the grace period
    # No new mail for a removed mailbox, even though disabled ones receive
    # by default (smtp.reject_disabled_accounts = false).
    with smtplib.SMTP("127.0.0.1", server.port) as s:
        s.ehlo("client.example")
        s.mail("alice@remote.example")
        code, msg = s.rcpt("customseo@esoomllub.com")
        assert (code, msg[:5]) == (550, b"5.1.1"), msg
    r = server.cli("user", "enable", "customseo@esoomllub.com", check=False)
    assert r.returncode != 0 and "removed" in r.stderr
    server.cli("user", "remove", "customseo@esoomllub.com", "--now")
    r = server.cli("user", "show", "customseo@esoomllub.com", check=False)
    assert r.returncode != 0 and "no mailbox" in r.stderr
    with smtplib.SMTP("127.0.0.1", server.port) as s:
        s.ehlo("client.example")
        s.mail("alice@remote.example")
        assert s.rcpt("customseo@esoomllub.com")[0] == 550


def test_user_rename_keeps_uidvalidity_and_uids(server):
    server.cli("domain", "add", "other.example")
    deliver(server, "customseo@esoomllub.com", "first")
    m = imaps(server, "customseo@esoomllub.com", "99test99")
    m.select("INBOX")
    uidvalidity = m.response("UIDVALIDITY")[1][0]
    uids = m.uid("SEARCH", "ALL")[1][0]
    m.logout()
    out = server.cli("user", "rename", "customseo@esoomllub.com", "seo@other.example").stdout
    assert "seo@other.example" in out
    with pytest.raises(imaplib.IMAP4.error):
        imaps(server, "customseo@esoomllub.com", "99test99")
    m = imaps(server, "seo@other.example", "99test99")
    m.select("INBOX")
    assert m.response("UIDVALIDITY")[1][0] == uidvalidity
    assert m.uid("SEARCH", "ALL")[1][0] == uids
    m.logout()
    r = server.cli("user", "rename", "seo@other.example", "kent@esoomllub.com", check=False)
    assert r.returncode != 0 and "exists" in r.stderr
    r = server.cli("user", "rename", "seo@other.example", "dev@esoomllub.com", check=False)
    assert r.returncode != 0 and "is an alias" in r.stderr


def test_alias_members_add_and_remove(server):
    server.cli("alias", "members", "add", "dev@esoomllub.com", "customseo", "bob@example.org")
    listing = server.cli("alias", "list").stdout
    assert ("dev@esoomllub.com\tdbrooks@esoomllub.com,testman@example.com,kent@esoomllub.com,"
            "customseo@esoomllub.com,bob@example.org") in listing
    server.cli("alias", "members", "remove", "dev@esoomllub.com", "testman@example.com", "Bob@example.org")
    assert ("dev@esoomllub.com\tdbrooks@esoomllub.com,kent@esoomllub.com,customseo@esoomllub.com"
            in server.cli("alias", "list").stdout)
    r = server.cli("alias", "members", "remove", "dev@esoomllub.com", "stranger", check=False)
    assert r.returncode != 0 and "not members" in r.stderr
    r = server.cli("alias", "members", "add", "nolist@esoomllub.com", "kent", check=False)
    assert r.returncode != 0 and "no alias" in r.stderr
    # Members added close no loop either.
    server.cli("alias", "add", "a@esoomllub.com", "dev")
    r = server.cli("alias", "members", "add", "dev@esoomllub.com", "a", check=False)
    assert r.returncode != 0 and "refused" in r.stderr
    out = server.cli("alias", "members", "remove", "a@esoomllub.com", "dev").stdout
    assert "no members left" in out
    assert "a@esoomllub.com" not in server.cli("alias", "list").stdout


def test_domain_show_set_and_remove(server):
    server.cli("domain", "set", "esoomllub.com", "--default-quota", "1G", "--subaddress-separator", "-")
    out = fields(server.cli("domain", "show", "esoomllub.com").stdout)
    assert out["kind"] == "local"
    assert out["mailboxes"] == "3" and out["aliases"] == "1"
    assert out["alias domains"] == "esoomllub.net"
    assert out["default quota"] == str(1 << 30) and out["subaddress separator"] == "'-'"
    assert out["queued"] == "0"
    assert fields(server.cli("domain", "show", "esoomllub.net").stdout)["kind"] == "alias of esoomllub.com"

    r = server.cli("domain", "remove", "esoomllub.com", check=False)
    assert r.returncode != 0 and "3 mailboxes" in r.stderr and "--force" in r.stderr
    deliver(server, "kent@esoomllub.com")
    server.cli("domain", "remove", "esoomllub.com", "--force")
    assert server.cli("domain", "list").stdout == ""
    assert server.cli("user", "list").stdout == ""
    with smtplib.SMTP("127.0.0.1", server.port) as s:
        s.ehlo("client.example")
        s.mail("alice@remote.example")
        assert s.rcpt("kent@esoomllub.com")[0] == 554  # not hosted any more
    r = server.cli("domain", "show", "esoomllub.com", check=False)
    assert r.returncode != 0 and "not hosted" in r.stderr


def test_domain_remove_is_refused_while_mail_is_queued_for_it(server):
    closed = free_port()
    server.cli("domain", "add", "gw.example", "--relay-to", f"127.0.0.1:{closed}")
    server.cli("domain", "recipients", "gw.example", "--add", "sales")
    deliver(server, "sales@gw.example")
    assert fields(server.cli("domain", "show", "gw.example").stdout)["queued"] == "1"
    r = server.cli("domain", "remove", "gw.example", check=False)
    assert r.returncode != 0 and "1 queued" in r.stderr, r.stderr
    queue_id = server.cli("queue", "list").stdout.split("\t")[0]
    server.cli("queue", "delete", queue_id)
    server.cli("domain", "remove", "gw.example")
    assert "gw.example" not in server.cli("domain", "list").stdout


def test_changes_are_audited_with_the_unix_user(server):
    server.cli("alias", "add", "sales@esoomllub.com", "kent")
    r = server.cli("alias", "add", "kent@esoomllub.com", "x@example.org", check=False)
    assert r.returncode != 0
    rows = [line.split("\t") for line in server.cli("audit", "--limit", "3").stdout.splitlines()]
    when, who, origin, op, obj, detail = rows[0]
    assert (who, origin, op, obj) == (f"cli:{pwd.getpwuid(os.getuid()).pw_name}", "cli", "alias.add", "sales@esoomllub.com")
    assert detail == "kent@esoomllub.com"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", when)
    # make_server's own changes came before; the refused one left nothing.
    assert rows[1][3] == "alias.add" and rows[1][4] == "dev@esoomllub.com"
    kent = server.cli("audit", "--object", "kent@esoomllub.com").stdout.splitlines()
    assert len(kent) == 1 and "\tuser.add\t" in kent[0]
    assert all("esoomllub.com" in line for line in server.cli("audit", "--domain", "esoomllub.com").stdout.splitlines())
