"""The administration CLI and configuration handling."""

import os
import re
import subprocess

from conftest import BIN, UNUSED_PASSWORD, free_ports, make_server


def run(*args, input=None, env=None):
    return subprocess.run([BIN, *args], input=input, capture_output=True, text=True, timeout=60, env=env)


def test_config_example_is_valid(tmp_path):
    r = run("config", "example")
    assert r.returncode == 0
    assert 'listen = ["0.0.0.0:25", "[::]:25"]' in r.stdout
    p = tmp_path / "prod.toml"
    # The example runs as `postroom`, which this machine may not have.
    import pwd

    me = pwd.getpwuid(os.getuid()).pw_name
    p.write_text(r.stdout.replace('run_as = "postroom"', f'run_as = "{me}"'))
    r = run("config", "check", str(p))
    assert r.returncode == 0, r.stdout + r.stderr


def test_config_check_finds_what_is_missing_on_this_machine(tmp_path):
    """A missing certificate or key, one that does not load, and a run_as
    user that does not exist are found before the server is started."""
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    p = tmp_path / "c.toml"
    p.write_text(
        '[server]\nhostname = "mail.example.com"\nrun_as = "no-such-user-4711"\n'
        f'[tls]\ncert = "{tmp_path}/missing.crt"\nkey = "{tmp_path}/missing.key"\n'
        f'certificates = [{{ cert = "{garbage}", key = "{garbage}" }}]\n'
    )
    r = run("config", "check", str(p))
    assert r.returncode != 0
    assert "missing.crt" in r.stdout and "missing.key" in r.stdout, r.stdout
    assert "garbage.pem" in r.stdout, r.stdout
    assert "no-such-user-4711" in r.stdout and "does not exist" in r.stdout, r.stdout
    assert "3 problems" in r.stderr or "4 problems" in r.stderr, r.stderr


def test_config_errors_name_the_key(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[smtp]\nmax_recipeints = 5\n")
    r = run("config", "check", str(p))
    assert r.returncode != 0 and "max_recipeints" in r.stderr
    p.write_text("[smtp]\nlisten = [\"localhost\"]\n")
    r = run("--config", str(p), "serve")
    assert r.returncode != 0 and "smtp.listen" in r.stderr


def test_internal_hostname_warns(tmp_path):
    p = tmp_path / "w.toml"
    p.write_text('[server]\nhostname = "server1.local"\n')
    r = run("config", "check", str(p))
    assert r.returncode == 0 and "warning" in r.stdout and "server1.local" in r.stdout


def test_import_virtual(tmp_path):
    s = make_server(populate=False)
    s.cli("domain", "add", "abc.com")
    s.cli("user", "add", "dbrooks@abc.com", "--password-hash", UNUSED_PASSWORD)
    s.cli("user", "add", "kent@abc.com", "--password-hash", UNUSED_PASSWORD)
    m = tmp_path / "addresses"
    m.write_text("# postfix virtual\ndev@abc.com dbrooks,testman@example.com,kent\nsales@abc.com kent\n")
    r = s.cli("import", "virtual", str(m), "--origin", "abc.com", "--dry-run")
    assert "would import 0 domains, 2 aliases" in r.stdout
    assert s.cli("alias", "list").stdout == ""
    s.cli("import", "virtual", str(m), "--origin", "abc.com")
    listing = s.cli("alias", "list").stdout
    assert "dev@abc.com\tdbrooks@abc.com,testman@example.com,kent@abc.com" in listing


def test_users_passwords_quota(tmp_path):
    s = make_server(populate=False)
    s.cli("domain", "add", "abc.com")
    s.cli("user", "add", "a@abc.com", "--password-stdin", "--quota", "2G", input="pw-long-enough\n")
    s.cli("user", "add", "b@abc.com", "--password-hash", "{PLAIN}secret")
    r = s.cli("user", "add", "c@abc.com", "--password-hash", "{MD5}x", check=False)
    assert r.returncode != 0
    r = s.cli("user", "add", "a@ABC.com", "--password-hash", UNUSED_PASSWORD, check=False)
    assert r.returncode != 0 and "exists" in r.stderr
    s.cli("user", "disable", "b@abc.com")
    out = s.cli("user", "list").stdout
    assert "a@abc.com\tused 0\tquota 2147483648" in out
    assert "b@abc.com" in out and "disabled" in out
    r = s.cli("user", "add", "x@nothosted.example", "--password-hash", UNUSED_PASSWORD, check=False)
    assert r.returncode != 0 and "not hosted" in r.stderr


def test_default_data_dir_follows_xdg(tmp_path):
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "xdg"))
    env.pop("POSTROOM_CONFIG", None)
    # The store is made by `init` (issue #12: no other command makes one).
    if os.geteuid() == 0:
        # root uses /var/lib/postroom; only check that the flag overrides it.
        assert run("--data-dir", str(tmp_path / "d"), "init", env=env).returncode == 0
        r = run("--data-dir", str(tmp_path / "d"), "domain", "add", "x.example", env=env)
        assert r.returncode == 0 and (tmp_path / "d" / "postroom.sqlite").exists()
    else:
        assert run("init", env=env).returncode == 0
        r = run("domain", "add", "x.example", env=env)
        assert r.returncode == 0 and (tmp_path / "xdg" / "postroom" / "postroom.sqlite").exists()


def test_trial_server_prints_ports(tmp_path):
    # The embedded default: no config file at all.
    p = subprocess.Popen([BIN, "--data-dir", str(tmp_path / "trial"), "serve"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        text = ""
        for _ in range(12):
            text += p.stdout.readline()
            if "IMAPS" in text or "already in use" in text:
                break
        # Another process on this machine may hold a trial port.
        if "already in use" not in text:
            assert "SMTP (MX, inbound mail):  127.0.0.1:10025" in text, text
            assert "IMAPS (implicit TLS):     127.0.0.1:10993" in text, text
    finally:
        p.terminate()
        p.wait(timeout=30)


def test_root_drops_to_run_as_user(tmp_path):
    import pwd
    import pytest

    if os.geteuid() != 0:
        pytest.skip("needs root")
    try:
        pwd.getpwnam("postroom")
    except KeyError:
        r = subprocess.run(["useradd", "--system", "--no-create-home", "postroom"], capture_output=True)
        if r.returncode != 0:
            pytest.skip("cannot create the postroom user")
    s = make_server(extra_toml="", populate=False)
    os.chmod(s.tmp, 0o755)
    with open(s.config) as f:
        cfg = f.read().replace("[server]\n", '[server]\nrun_as = "postroom"\n', 1)
    with open(s.config, "w") as f:
        f.write(cfg)
    s.start()
    try:
        import time

        uid = pwd.getpwnam("postroom").pw_uid
        blobs = os.path.join(s.data, "blobs")
        # The ports are bound (as root) before the store is opened and the
        # privileges dropped: the listening port alone does not say the
        # server got that far. (The bodies' folder is made on either back
        # end.)
        deadline = time.monotonic() + 20
        while not os.path.exists(blobs) and time.monotonic() < deadline:
            time.sleep(0.05)
        status = open(f"/proc/{s.proc.pid}/status").read()
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
        assert all(int(u) == uid for u in uids), status
        assert os.stat(blobs).st_uid == uid
        # The root CLI works on the running server's data as that user.
        s.cli("domain", "add", "dropped.example")
        s.cli("user", "add", "u@dropped.example", "--password-hash", UNUSED_PASSWORD)
        import smtplib

        with smtplib.SMTP("127.0.0.1", s.port) as c:
            c.sendmail("a@remote.example", ["u@dropped.example"], b"Subject: x\r\n\r\ny\r\n")
        assert len(s.messages("u@dropped.example")) == 1
        for name in os.listdir(s.data):
            assert os.stat(os.path.join(s.data, name)).st_uid == uid, name
    finally:
        s.stop()


def test_listens_on_ipv6_loopback(tmp_path):
    import socket

    import pytest

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
            port = probe.getsockname()[1]
    except OSError:
        pytest.skip("no IPv6 loopback")
    s = make_server(populate=False)
    with open(s.config) as f:
        cfg = f.read().replace(f'listen = ["127.0.0.1:{s.port}"]', f'listen = ["127.0.0.1:{s.port}", "[::1]:{port}"]')
    with open(s.config, "w") as f:
        f.write(cfg)
    s.start()
    try:
        with socket.create_connection(("::1", port), timeout=5) as c:
            assert c.recv(100).startswith(b"220 ")
    finally:
        s.stop()


def test_domain_settings(tmp_path):
    s = make_server(populate=False)
    s.cli("domain", "add", "abc.com")
    s.cli("domain", "set", "abc.com", "--subaddress-separator", "-", "--default-quota", "1G")
    s.cli("user", "add", "kent@abc.com", "--password-hash", UNUSED_PASSWORD)
    assert "quota 1073741824" in s.cli("user", "list").stdout
    assert "separator '-'" in s.cli("domain", "list").stdout
    s.start()
    try:
        import smtplib

        with smtplib.SMTP("127.0.0.1", s.port) as c:
            c.ehlo("client.example.org")
            c.mail("a@remote.example")
            assert c.rcpt("kent-news@abc.com")[0] == 250
            assert c.rcpt("kent+news@abc.com")[0] == 550
    finally:
        s.stop()


def test_check_smtp(tmp_path):
    from conftest import free_port

    s = make_server(populate=False).start()
    try:
        r = s.cli("check", "smtp", f"127.0.0.1:{s.port}")
        assert "our HELO name: mx.test.example\n" in r.stdout
        assert "banner:   220 mx.test.example ESMTP Postroom" in r.stdout
        assert "STARTTLS: yes" in r.stdout and "certificate SHA-256:" in r.stdout
        assert "EHLO:     PIPELINING" in r.stdout
        closed = free_port()
        r = s.cli("check", "smtp", f"127.0.0.1:{closed}", check=False)
        assert r.returncode != 0 and "connection refused" in r.stdout
        # A name needs DNS, and only the configured resolvers are asked.
        r = s.cli("check", "smtp", "mail.customer.example", check=False)
        assert r.returncode != 0 and "DNS lookups are turned off" in r.stderr
    finally:
        s.stop()


def test_check_smtp_names_an_unqualified_helo(tmp_path):
    s = make_server(populate=False)
    with open(s.config) as f:
        cfg = f.read().replace('hostname = "mx.test.example"', 'hostname = "server1.local"')
    with open(s.config, "w") as f:
        f.write(cfg)
    s.start()
    try:
        r = s.cli("check", "smtp", f"127.0.0.1:{s.port}")
        assert "our HELO name: server1.local -- NOT a fully qualified public name: remote delivery is held" \
            in r.stdout
    finally:
        s.stop()


def test_domain_add_refuses_names_that_cannot_be_hosted(tmp_path):
    s = make_server(populate=False)
    for name, why in [
        ("127.0.0.1", "IP address"),
        ("[127.0.0.1]", "IP address"),
        ("localhost", "localhost"),
        ("mail.localhost", "localhost"),
        ("intranet", "single label"),
        ("mx.test.example", "own host name"),
        ("MX.Test.Example", "own host name"),
        ("dot.test.", "trailing dot"),
        ("p\u0430ypal.example", "mixes Latin and Cyrillic"),
        ("g\u03bf\u03bfgle.example", "mixes Latin and Greek"),
        ("\u2603.example", "IDNA2008"),
        ("ab--cd.example", "IDNA2008"),
        ("ex\u00adample.com", "IDNA2008"),
    ]:
        r = s.cli("domain", "add", name, check=False)
        assert r.returncode != 0 and why in r.stderr, (name, r.stderr)
        # Not as a domain alias nor as a gateway either.
        r = s.cli("domain", "add", name, "--relay-to", "127.0.0.1:25", check=False)
        assert r.returncode != 0, name
    assert s.cli("domain", "list").stdout == ""
    s.cli("domain", "add", "bücher.example")
    s.cli("domain", "add", "пример.example")
    s.cli("domain", "add", "dot.test")
    r = s.cli("domain", "add", "dot2.test.", "--alias-of", "dot.test", check=False)
    assert r.returncode != 0 and "trailing dot" in r.stderr
    s.cli("user", "add", "u@dot.test", "--password-hash", UNUSED_PASSWORD)
    assert "u@dot.test\t" in s.cli("user", "list").stdout


def test_alias_targets_are_addresses(tmp_path):
    s = make_server(populate=False)
    s.cli("domain", "add", "abc.com")
    s.cli("user", "add", "kent@abc.com", "--password-hash", UNUSED_PASSWORD)
    r = s.cli("alias", "add", "x@abc.com", "not an address", check=False)
    assert r.returncode != 0 and "`not an address`" in r.stderr, r.stderr
    r = s.cli("alias", "add", "x@abc.com", "kent, a b@remote.example", check=False)
    assert r.returncode != 0 and "`a b@remote.example`" in r.stderr, r.stderr
    assert s.cli("alias", "list").stdout == ""
    r = s.cli("user", "forward", "kent@abc.com", "friend @remote.example", check=False)
    assert r.returncode != 0 and "not an address" in r.stderr, r.stderr
    s.cli("alias", "add", "x@abc.com", "kent, friend@remote.example")
    assert "x@abc.com\tkent@abc.com,friend@remote.example" in s.cli("alias", "list").stdout


def test_passwords_have_a_minimum_length(tmp_path):
    s = make_server(populate=False)
    s.cli("domain", "add", "abc.com")
    for pw in ("x", "        ", "seven77"):
        r = s.cli("user", "add", "a@abc.com", "--password-stdin", input=pw + "\n", check=False)
        assert r.returncode != 0 and ("at least 8" in r.stderr or "white space" in r.stderr), (pw, r.stderr)
    assert s.cli("user", "list").stdout == ""
    s.cli("user", "add", "a@abc.com", "--password-stdin", input="eight888\n")
    r = s.cli("user", "passwd", "a@abc.com", "--password-stdin", input="short\n", check=False)
    assert r.returncode != 0 and "at least 8" in r.stderr
    # The minimum is a setting.
    with open(s.config, "a") as f:
        f.write("\n[auth]\nmin_password_length = 12\n")
    r = s.cli("user", "passwd", "a@abc.com", "--password-stdin", input="eleven11111\n", check=False)
    assert r.returncode != 0 and "at least 12" in r.stderr
    s.cli("user", "passwd", "a@abc.com", "--password-stdin", input="twelve121212\n")


def test_import_virtual_is_all_or_nothing_and_names_the_line(tmp_path):
    s = make_server(populate=False)
    s.cli("domain", "add", "abc.com")
    s.cli("user", "add", "kent@abc.com", "--password-hash", UNUSED_PASSWORD)
    m = tmp_path / "addresses"
    bad = [
        ("sales@abc.com kent\nbad..local@abc.com kent\n", ":2:", "bad local part"),
        ("sales@abc.com kent\nx@bad_domain.example kent\n", ":2:", "bad domain"),
        ("sales@abc.com kent\nx@localhost kent\n", ":2:", "localhost"),
        ("sales@abc.com kent\nx@abc.com a b@@c\n", ":2:", "target"),
        ("sales@abc.com kent\nloop1@abc.com loop2\nloop2@abc.com loop1\n", ":", "refers back"),
    ]
    for text, where, why in bad:
        m.write_text(text)
        r = s.cli("import", "virtual", str(m), "--origin", "abc.com", check=False)
        assert r.returncode != 0 and f"{m}{where}" in r.stderr and why in r.stderr, (text, r.stderr)
        # Line 1 was fine, and is not imported either.
        assert s.cli("alias", "list").stdout == "", text
    m.write_bytes(b"sales@abc.com kent\nx@abc.com caf\xe9\n")
    r = s.cli("import", "virtual", str(m), "--origin", "abc.com", check=False)
    assert r.returncode != 0 and f"{m}:2: not UTF-8" in r.stderr, r.stderr
    assert s.cli("alias", "list").stdout == ""
    # An endless input is refused at once, not read for ever.
    r = s.cli("import", "virtual", "/dev/zero", "--origin", "abc.com", check=False)
    assert r.returncode != 0 and "/dev/zero:1: line longer than" in r.stderr, r.stderr
    m.write_text("sales@abc.com kent\nnew.example anything\ninfo@new.example kent@abc.com\n")
    s.cli("import", "virtual", str(m), "--origin", "abc.com")
    listing = s.cli("alias", "list").stdout
    assert "sales@abc.com\tkent@abc.com" in listing and "info@new.example\tkent@abc.com" in listing


def test_a_second_server_on_the_same_data_folder_is_refused(server, tmp_path):
    """`serve` holds the data folder's lock (postroom.pid) while it runs,
    so `postroom migrate` can tell a running server; a second server on
    the same folder (other ports) is refused, naming the first."""
    with open(server.config) as f:
        cfg = f.read()
    ports = iter(free_ports(8))
    cfg = re.sub(r'127\.0\.0\.1:\d+"', lambda m: f'127.0.0.1:{next(ports)}"', cfg)
    second = tmp_path / "second.toml"
    second.write_text(cfg)
    r = run("--config", str(second), "serve")
    assert r.returncode != 0
    assert f"a server is running on {server.data} (pid {server.proc.pid}): stop it first" in r.stderr, r.stderr
    with open(os.path.join(server.data, "postroom.pid")) as f:
        assert f.read() == f"{server.proc.pid} serve\n"
    # The lock goes with the process, however it ends.
    server.kill()
    server.start()


def test_queue_list_filters_json_and_flush():
    import json
    import smtplib

    s = make_server().start()
    try:
        with smtplib.SMTP("127.0.0.1", s.port) as c:
            c.sendmail("someone@remote.example", ["dev@esoomllub.com"], b"Subject: to the list\r\n\r\nx\r\n")
        deadline = __import__("time").time() + 10
        while not s.queue() and __import__("time").time() < deadline:
            __import__("time").sleep(0.1)
        rows = [json.loads(l) for l in s.cli("queue", "list", "--json").stdout.splitlines()]
        assert [r["recipient"] for r in rows] == ["testman@example.com"], rows
        # Forwarded by the list: the sender is SRS-rewritten around it.
        assert "someone" in rows[0]["sender"] and rows[0]["state"] in ("queued", "deferred")
        assert s.cli("queue", "list", "--domain", "example.com").stdout.count("\n") == 1
        assert s.cli("queue", "list", "--domain", "xample.com").stdout == ""
        assert s.cli("queue", "list", "--sender", "SOMEONE").stdout.count("\n") == 1
        assert s.cli("queue", "list", "--recipient", "nobody").stdout == ""
        assert s.cli("queue", "list", "--state", "held").stdout == ""
        r = s.cli("queue", "list", "--state", "frozen", check=False)
        assert r.returncode != 0 and "frozen" in r.stderr
        assert s.cli("queue", "flush").stdout.strip() == "1 item will be tried now"
        assert "queue.flush" in s.cli("audit").stdout
    finally:
        s.stop()
