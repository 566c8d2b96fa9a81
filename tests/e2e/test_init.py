"""Only `serve` and `postroom init` make a store (issue #12: a mistyped
`--data-dir` silently made a fresh, empty one, and the command "worked" on
it). Every other command on a missing folder, or one without a store,
fails naming the folder and how to make one."""

import os
import stat
import subprocess

from conftest import BIN, PG_URL, _pg, make_server


def run(*args, input=None):
    env = {k: v for k, v in os.environ.items() if k not in ("POSTROOM_CONFIG", "POSTROOM_DATA_DIR")}
    return subprocess.run([BIN, *args], input=input, capture_output=True, text=True, timeout=60, env=env)


# Commands of every family that reads or writes the store.
COMMANDS = [
    ["user", "list"],
    ["domain", "list"],
    ["domain", "add", "example.com"],
    ["alias", "list"],
    ["queue", "list"],
    ["mail", "sweep"],
    ["dkim", "show", "example.com"],
    ["srs", "rotate"],
    ["audit"],
    ["tls", "self-signed", "mail.example.com"],
    ["sendmail", "-f", "a@example.com", "b@example.com"],
]


def test_a_mistyped_data_dir_is_an_error_and_init_makes_the_store(tmp_path):
    typo = tmp_path / "typo"
    for args in COMMANDS:
        r = run("--data-dir", str(typo), *args, input="Subject: x\n\nx\n")
        assert r.returncode != 0, (args, r.stdout)
        assert f"no data folder at {typo}" in r.stderr, (args, r.stderr)
        assert f"postroom --data-dir {typo} init" in r.stderr, (args, r.stderr)
        assert not typo.exists(), args

    old = os.umask(0o022)
    try:
        r = run("--data-dir", str(typo), "init")
    finally:
        os.umask(old)
    assert r.returncode == 0, r.stderr
    assert f"made the data folder {typo}" in r.stdout
    assert f"made an empty store: {typo}/postroom.sqlite" in r.stdout
    assert stat.S_IMODE(os.stat(typo).st_mode) == 0o700
    r = run("--data-dir", str(typo), "user", "list")
    assert r.returncode == 0 and r.stdout == "", r.stderr
    assert run("--data-dir", str(typo), "domain", "add", "example.com").returncode == 0

    # Again: it says so and changes nothing.
    r = run("--data-dir", str(typo), "init")
    assert r.returncode == 0, r.stderr
    assert "already holds a Postroom store" in r.stdout and "nothing changed" in r.stdout
    assert "example.com" in run("--data-dir", str(typo), "domain", "list").stdout


def test_a_folder_without_a_store_is_refused_and_left_as_it_is():
    # On PostgreSQL too ([store] database names an empty database): the
    # commands do not make the schema there.
    s = make_server(populate=False, init=False)
    r = s.cli("domain", "list", check=False)
    assert r.returncode != 0 and f"no data folder at {s.data}" in r.stderr, r.stderr
    assert f"postroom --config {s.config} init" in r.stderr
    assert not os.path.exists(s.data)
    os.mkdir(s.data)
    # (`tls self-signed` writes into an existing folder: it needs no store.)
    for args in [c for c in COMMANDS if c[0] != "tls"]:
        r = s.cli(*args, input="Subject: x\n\nx\n", check=False)
        assert r.returncode != 0, (args, r.stdout)
        if PG_URL:
            assert "the PostgreSQL database holds no Postroom store" in r.stderr, (args, r.stderr)
        else:
            assert f"{s.data} holds no Postroom store (no postroom.sqlite)" in r.stderr, (args, r.stderr)
        assert f"postroom --config {s.config} init" in r.stderr, (args, r.stderr)
    assert os.listdir(s.data) == []
    if PG_URL:
        tables = subprocess.run(
            ["psql", PG_URL.rsplit("/", 1)[0] + "/" + s.pg_name, "-tAc",
             "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"],
            capture_output=True, text=True, timeout=60, check=True).stdout.strip()
        assert tables == "0"
    r = s.cli("init")
    assert "made an empty store" in r.stdout
    s.cli("domain", "add", "example.com")
    assert "already holds a Postroom store" in s.cli("init").stdout
    assert "example.com" in s.cli("domain", "list").stdout
    if s.pg_name:
        _pg(f"DROP DATABASE IF EXISTS {s.pg_name} WITH (FORCE)")
