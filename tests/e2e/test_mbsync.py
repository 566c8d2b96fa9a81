"""mbsync (isync) keeps a local Maildir and a 1,000-message IMAP mailbox in
step, both ways: new mail, flags and deletions."""

import imaplib
import os
import smtplib
import subprocess

import pytest


def test_mbsync_both_ways(server_factory, tmp_path):
    if subprocess.run(["which", "mbsync"], capture_output=True).returncode != 0:
        pytest.skip("mbsync not installed")
    server = server_factory(extra_toml='\n[auth]\nplaintext_networks = ["127.0.0.1"]\n').start()
    with smtplib.SMTP("127.0.0.1", server.port) as s:
        for i in range(1000):
            s.sendmail("a@remote.example", ["customseo@esoomllub.com"],
                       f"Subject: bulk {i}\r\nMessage-ID: <bulk{i}@remote.example>\r\n\r\nbody {i}\r\n".encode())
    mail = tmp_path / "mail"
    mail.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(f"""
IMAPAccount pr
Host 127.0.0.1
Port {server.imap_port}
User customseo@esoomllub.com
Pass 99test99
SSLType None
AuthMechs PLAIN

IMAPStore remote
Account pr

MaildirStore local
Path {mail}/
Inbox {mail}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
""")

    def sync():
        r = subprocess.run(["mbsync", "-c", str(rc), "sync"], capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, HOME=str(tmp_path)))
        assert r.returncode == 0, r.stdout + r.stderr

    def local_files():
        files = []
        for sub in ("cur", "new"):
            d = mail / "INBOX" / sub
            files += [d / f for f in os.listdir(d)] if d.exists() else []
        return files

    sync()
    files = local_files()
    assert len(files) == 1000
    # Locally: read ten, delete five.
    for f in sorted(files)[:10]:
        name = f.name.split(":2,")[0]
        f.rename(mail / "INBOX" / "cur" / f"{name}:2,S")
    for f in sorted(local_files())[-5:]:
        f.unlink()
    sync()
    m = imaplib.IMAP4("127.0.0.1", server.imap_port)
    m.login("customseo@esoomllub.com", "99test99")
    m.select("INBOX")
    assert m.search(None, "ALL")[1][0].count(b" ") + 1 == 995
    assert len(m.search(None, "SEEN")[1][0].split()) == 10
    # On the server: flag three, delete two.
    m.store("1:3", "+FLAGS", "(\\Flagged)")
    m.store("4:5", "+FLAGS", "(\\Deleted)")
    m.expunge()
    m.logout()
    sync()
    files = local_files()
    assert len(files) == 993
    assert sum(1 for f in files if "F" in f.name.split(":2,")[-1]) == 3
    # A further sync changes nothing.
    sync()
    assert len(local_files()) == 993
