"""Running as a service (issue #12): the Debian package installs, makes its
user, its private data folder and its configuration, and its hardened
systemd unit verifies; the server tells systemd when it is ready, reloading
and stopping (Type=notify).

The package is built with `cargo deb --no-build` from the binary under test
and installed into a throw-away root: an overlay of this machine's own root
in a private mount namespace, so `dpkg -i`, its maintainer scripts and
`adduser` run for real and nothing reaches the machine itself."""

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import BIN, backend_independent, free_ports, make_server

REPO = pathlib.Path(__file__).resolve().parents[2]


def notifications(sock, until, timeout=20):
    """The sd_notify datagrams received until one contains `until`."""
    got = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        sock.settimeout(max(0.1, deadline - time.time()))
        try:
            msg = sock.recv(4096).decode()
        except socket.timeout:
            break
        got.append(msg)
        if until in msg.split("\n"):
            return got
    raise AssertionError(f"no {until} in {got}")


def test_the_server_tells_systemd_ready_reloading_and_stopping(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    s = make_server(populate=False)
    s.env["NOTIFY_SOCKET"] = path
    s.start()
    try:
        ready = notifications(sock, "READY=1")
        assert any("STATUS=" in m for m in ready), ready
        # Ready means ready: a client is answered at once.
        with socket.create_connection(("127.0.0.1", s.port), timeout=5) as c:
            assert c.recv(100).startswith(b"220")
        os.kill(s.proc.pid, signal.SIGHUP)
        reload = notifications(sock, "READY=1")
        text = "\n".join(reload)
        assert "RELOADING=1" in text and "MONOTONIC_USEC=" in text, reload
        assert text.index("RELOADING=1") < text.rindex("READY=1")
    finally:
        s.stop()
    assert any("STOPPING=1" in m for m in notifications(sock, "STOPPING=1", timeout=5))
    sock.close()


def build_package(out):
    """The .deb of the binary under test, as `cargo deb` makes it."""
    if shutil.which("cargo-deb") is None:
        pytest.fail("cargo-deb is missing: scripts/test-all installs it")
    target = pathlib.Path(BIN).resolve().parent
    profile = target.name  # debug or release
    env = {**os.environ, "CARGO_TARGET_DIR": str(target.parent)}
    r = subprocess.run(
        ["cargo", "deb", "-p", "postroom", "--no-build", "--fast", "-q", "-o", str(out)]
        + (["--profile", "dev"] if profile == "debug" else []),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    debs = list(pathlib.Path(out).glob("postroom_*.deb"))
    assert len(debs) == 1, debs
    return debs[0]


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    return build_package(tmp_path_factory.mktemp("deb"))


@backend_independent
def test_the_package_contents_and_unit(tmp_path, deb):
    info = subprocess.run(["dpkg-deb", "--info", deb], capture_output=True, text=True, check=True).stdout
    assert "Package: postroom" in info and "Section: mail" in info
    assert "adduser" in info
    files = subprocess.run(["dpkg-deb", "--contents", deb], capture_output=True, text=True, check=True).stdout
    for f in ["./usr/bin/postroom", "./usr/lib/systemd/system/postroom.service", "./usr/share/doc/postroom/install.md"]:
        assert f in files, files
    root = tmp_path / "x"
    subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
    unit = (root / "usr/lib/systemd/system/postroom.service").read_text()
    for line in [
        "Type=notify",
        "User=postroom",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "StateDirectoryMode=0700",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ]:
        assert line in unit.splitlines(), line
    # systemd's own check of the unit (the binary it names must exist).
    verify_unit = tmp_path / "postroom.service"
    verify_unit.write_text(unit.replace("/usr/bin/postroom", str(root / "usr/bin/postroom")))
    r = subprocess.run(["systemd-analyze", "verify", verify_unit], capture_output=True, text=True)
    problems = [l for l in r.stderr.splitlines() if "postroom.service" in l and "User=" not in l]
    assert r.returncode == 0 or not problems, r.stderr


def in_throwaway_root(tmp_path, script):
    """Runs `script` (sh) as root in a copy-on-write overlay of this
    machine's root, in a private mount namespace; returns what it printed."""
    ov = tmp_path / "overlay"
    for d in ("upper", "work", "merged"):
        (ov / d).mkdir(parents=True)
    outer = (
        "set -e\n"
        f"mount -t overlay overlay -o lowerdir=/,upperdir={ov}/upper,workdir={ov}/work {ov}/merged\n"
        f"mount -t proc proc {ov}/merged/proc\n"
        f"mount -t tmpfs tmpfs {ov}/merged/run\n"
        f'exec chroot {ov}/merged sh -ec "$1"\n'
    )
    return subprocess.run(
        ["unshare", "--mount", "--fork", "sh", "-c", outer, "sh", script],
        capture_output=True,
        text=True,
        timeout=300,
    )


def overlay_works(tmp_path):
    if os.geteuid() != 0:
        return False
    r = in_throwaway_root(tmp_path / "probe", "true")
    return r.returncode == 0


@backend_independent
def test_the_package_installs_upgrades_and_purges(tmp_path, deb):
    if not overlay_works(tmp_path):
        pytest.skip("needs root and overlayfs in a mount namespace for a throw-away root")
    smtp, imap = free_ports(2)
    script = f"""
dpkg --force-depends -i {deb}
id postroom
stat -c '%U %a' /var/lib/postroom
stat -c '%G %a' /etc/postroom/postroom.toml
test -L /etc/systemd/system/multi-user.target.wants/postroom.service
# The installed configuration checks out on this machine (its user exists).
postroom config check /etc/postroom/postroom.toml
# Started as the unit does (the postroom user, no root), on loopback ports.
sed -e 's/^listen = \\["0.0.0.0:25", .*/listen = ["127.0.0.1:{smtp}"]/' \\
    -e 's/^listen = \\["0.0.0.0:143", .*/listen = ["127.0.0.1:{imap}"]/' \\
    -e 's/^listen = \\["0.0.0.0:.*/listen = []/' \\
    -e 's/^tls_listen = .*/tls_listen = []/' \\
    -e 's/^self_signed = true/self_signed = false/' \\
    /etc/postroom/postroom.toml > /tmp/loopback.toml
chmod 644 /tmp/loopback.toml
setpriv --reuid=postroom --regid=postroom --init-groups \\
    postroom --config /tmp/loopback.toml serve > /tmp/serve.log 2>&1 &
server=$!
for i in $(seq 50); do grep -q 'Stop with' /tmp/serve.log && break; sleep 0.2; done
cat /tmp/serve.log
grep -q 'Stop with' /tmp/serve.log
# Root's CLI reaches the installed server with no --config at all.
postroom domain add package.example
echo 'package-password' | postroom user add u@package.example --password-stdin
postroom user list package.example
kill $server; wait $server || true
echo "db-owner $(stat -c %U /var/lib/postroom/postroom.sqlite)"
# An upgrade keeps the configuration the admin edited.
echo '# edited' >> /etc/postroom/postroom.toml
dpkg --force-depends -i {deb}
tail -1 /etc/postroom/postroom.toml
dpkg --purge postroom
test ! -e /etc/postroom/postroom.toml && echo config-removed
test -e /var/lib/postroom/postroom.sqlite && echo mail-kept
"""
    r = in_throwaway_root(tmp_path, script)
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    assert "uid=" in out and "(postroom)" in out
    assert "postroom 700" in out
    assert "postroom 640" in out
    assert "/etc/postroom/postroom.toml: ok" in out, out
    assert f"127.0.0.1:{smtp}" in out, out
    assert "u@package.example" in out, out
    # The CLI run as root became the data folder's owner.
    assert "db-owner postroom" in out, out
    assert "# edited" in out
    assert "config-removed" in out and "mail-kept" in out
    # The machine itself is untouched.
    assert not os.path.exists("/etc/postroom")
