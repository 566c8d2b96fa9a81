"""The data folder is private to the server's user (issue #12): whoever
creates it and whatever the umask, the folder is 0700 and what is in it is
readable by its owner alone; a folder made readable by others before is
made private at start, and the log says so."""

import os
import stat
import subprocess

from conftest import BIN, make_server


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_serve_creates_a_private_data_folder_under_a_permissive_umask():
    s = make_server(populate=False, init=False)
    old = os.umask(0o022)
    try:
        s.start()
    finally:
        os.umask(old)
    try:
        s.cli("domain", "add", "private.example")
        assert mode(s.data) == 0o700
        for root, dirs, files in os.walk(s.data):
            for name in dirs + files:
                p = os.path.join(root, name)
                assert mode(p) & 0o077 == 0, f"{p} is {oct(mode(p))}"
    finally:
        s.stop()


def test_a_readable_data_folder_is_made_private_at_start():
    s = make_server(populate=False)
    os.chmod(s.data, 0o755)
    s.cli("domain", "add", "private.example")
    db = os.path.join(s.data, "postroom.sqlite")
    if os.path.exists(db):  # the embedded store (not on PostgreSQL)
        os.chmod(db, 0o644)
    s.start()
    try:
        assert mode(s.data) == 0o700
        if os.path.exists(db):
            assert mode(db) == 0o600
        assert "was readable by other users: made private" in s.read_log()
    finally:
        s.stop()


def test_the_cli_creates_private_files_too(tmp_path):
    d = tmp_path / "cli-data"
    old = os.umask(0o022)
    try:
        for args in (["init"], ["domain", "add", "x.example"]):
            r = subprocess.run([BIN, "--data-dir", str(d), *args], capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
    finally:
        os.umask(old)
    assert mode(d) == 0o700
    for root, dirs, files in os.walk(d):
        for name in dirs + files:
            p = os.path.join(root, name)
            assert mode(p) & 0o077 == 0, f"{p} is {oct(mode(p))}"
