"""ACME certificates (issue #12) from a real ACME server on loopback:
Pebble, Let's Encrypt's test CA (Debian's package), resolving names with a
dnsmasq the test runs. The server gets a certificate at start with HTTP-01
or TLS-ALPN-01, swaps it in without dropping connections, keeps its
account, and renews one that is close to expiry."""

import json
import os
import shutil
import socket
import ssl
import subprocess
import time

import pytest

from conftest import HOSTNAME, backend_independent, free_ports, make_server

pytestmark = backend_independent


def served_certificate(port, name=HOSTNAME):
    """The issuer of the certificate an implicit-TLS port presents."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as tls:
            der = tls.getpeercert(binary_form=True)
    pem = ssl.DER_cert_to_PEM_cert(der)
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-issuer", "-enddate"], input=pem, capture_output=True, text=True, check=True
    )
    return out.stdout


class Pebble:
    def __init__(self, tmp, http_port, tls_port):
        self.tmp = tmp
        self.dns_port, self.port, self.mgmt = free_ports(3)
        # Pebble's HTTPS: a root, and a leaf for 127.0.0.1 signed by it
        # (a CA certificate cannot serve as the leaf itself).
        self.ca = os.path.join(tmp, "pebble-root.crt")
        root_key = os.path.join(tmp, "pebble-root.key")
        cert, key, csr = (os.path.join(tmp, f"pebble.{x}") for x in ("crt", "key", "csr"))
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for args in (
            ["req", "-x509", *ec, "-subj", "/CN=Test ACME root", "-keyout", root_key, "-out", self.ca, "-days", "2"],
            ["req", "-new", *ec, "-subj", "/CN=localhost", "-keyout", key, "-out", csr],
        ):
            subprocess.run(["openssl", *args], check=True, capture_output=True)
        ext = os.path.join(tmp, "pebble.ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
        subprocess.run(
            ["openssl", "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", root_key, "-CAcreateserial",
             "-out", cert, "-days", "2", "-extfile", ext],
            check=True, capture_output=True,
        )
        config = os.path.join(tmp, "pebble.json")
        with open(config, "w") as f:
            json.dump({"pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.mgmt}",
                "certificate": cert, "privateKey": key,
                "httpPort": http_port, "tlsPort": tls_port,
                "ocspResponderURL": "", "externalAccountBindingRequired": False,
            }}, f)
        dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        self.dns = subprocess.Popen(
            [dnsmasq, "--no-daemon", "--keep-in-foreground", f"--port={self.dns_port}",
             "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
             "--conf-file=/dev/null", f"--address=/{HOSTNAME}/127.0.0.1", f"--local=/{HOSTNAME}/"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        # No random sleeps before validating, no random nonce rejections:
        # the test waits for issuance, not for Pebble's chaos.
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
        self.log = open(os.path.join(tmp, "pebble.log"), "w")
        self.proc = subprocess.Popen(
            ["pebble", "-config", config, "-dnsserver", f"127.0.0.1:{self.dns_port}"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )
        deadline = time.time() + 15
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("pebble did not start")

    @property
    def directory(self):
        return f"https://127.0.0.1:{self.port}/dir"

    def stop(self):
        for p in (self.proc, self.dns):
            p.terminate()
            p.wait()
        self.log.close()


@pytest.fixture
def pebble_for(tmp_path):
    if shutil.which("pebble") is None:
        pytest.fail("pebble is missing: scripts/test-all installs it")
    started = []

    def make(http_port, tls_port):
        p = Pebble(str(tmp_path), http_port, tls_port)
        started.append(p)
        return p

    yield make
    for p in started:
        p.stop()


def acme_server(pebble_for, challenge, before_start=None):
    """`challenge` is http-01 on a listener of ACME's own, http-01 on the
    console's plain listener ("http-01-console", as in production where
    [http] listen is port 80), or tls-alpn-01."""
    http_port = free_ports(1)[0]
    s = make_server(populate=False)
    on_console = challenge == "http-01-console"
    pebble = pebble_for(s.http_port if on_console else http_port, s.imaps_port)
    extra = "" if on_console else f'http_listen = ["127.0.0.1:{http_port}"]'
    with open(s.config, "a") as f:
        f.write(f"""
[acme]
enabled = true
directory = "{pebble.directory}"
directory_ca = "{pebble.ca}"
contact = ["mailto:hostmaster@test.example"]
challenge = "{challenge.replace("-console", "")}"
{extra}
""")
    if before_start:
        before_start(s)
    return s, pebble


def wait_for_certificate(s, timeout=60):
    cert = os.path.join(s.data, "acme", "cert.pem")
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(cert) and "Pebble" in served_certificate(s.imaps_port):
            return cert
        time.sleep(0.3)
    with open(s.log) as f:
        raise AssertionError("no certificate from Pebble:\n" + f.read()[-3000:])


@pytest.mark.parametrize("challenge", ["http-01", "http-01-console", "tls-alpn-01"])
def test_a_certificate_is_obtained_and_swapped_in(pebble_for, challenge):
    s, pebble = acme_server(pebble_for, challenge)
    s.start()
    try:
        # A connection made before the certificate arrives stays up.
        import imaplib

        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        early = imaplib.IMAP4_SSL("127.0.0.1", s.imaps_port, ssl_context=ctx)
        cert = wait_for_certificate(s)
        assert early.noop()[0] == "OK"
        early.logout()
        # The files are the server's alone.
        for name in ("cert.pem", "key.pem", "account.json"):
            assert os.stat(os.path.join(s.data, "acme", name)).st_mode & 0o077 == 0
        # Every implicit-TLS listener presents it, and a client that trusts
        # Pebble's root verifies it for the host name.
        for port in (s.imaps_port, s.pop3s_port, s.submissions_port):
            assert "Pebble" in served_certificate(port)
        with open(cert) as f:
            assert "BEGIN CERTIFICATE" in f.read()
    finally:
        s.stop()
    with open(s.log) as f:
        log = f.read()
    assert "certificate obtained and in use" in log


def test_the_certificate_and_account_are_kept_across_restarts(pebble_for):
    s, pebble = acme_server(pebble_for, "http-01")
    s.start()
    try:
        cert = wait_for_certificate(s)
        with open(cert) as f:
            first = f.read()
    finally:
        s.stop()
    s.start()
    try:
        # Served at once from the file, not ordered again.
        assert "Pebble" in served_certificate(s.imaps_port)
        time.sleep(1)
        with open(cert) as f:
            assert f.read() == first
    finally:
        s.stop()
    with open(s.log) as f:
        assert f.read().count("account created") == 1


def test_a_certificate_close_to_expiry_is_renewed(pebble_for):
    def old_certificate(s):
        acme = os.path.join(s.data, "acme")
        os.makedirs(acme, mode=0o700)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-subj", f"/CN={HOSTNAME}", "-addext", f"subjectAltName=DNS:{HOSTNAME}",
             "-keyout", os.path.join(acme, "key.pem"), "-out", os.path.join(acme, "cert.pem"), "-days", "3"],
            check=True, capture_output=True,
        )

    s, pebble = acme_server(pebble_for, "http-01", before_start=old_certificate)
    s.start()
    try:
        # 3 days left, 30 asked for: the old one is served until the new
        # one arrives, then replaced.
        wait_for_certificate(s)
        assert "Pebble" in served_certificate(s.imaps_port)
    finally:
        s.stop()


def test_an_unreachable_ca_is_retried_and_mail_goes_on(tmp_path):
    http_port, dead = free_ports(2)
    s = make_server(extra_toml=f"""
[acme]
enabled = true
directory = "https://127.0.0.1:{dead}/dir"
http_listen = ["127.0.0.1:{http_port}"]
""")
    s.start()
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            with open(s.log) as f:
                if "could not obtain a certificate" in f.read():
                    break
            time.sleep(0.2)
        with open(s.log) as f:
            log = f.read()
        assert "could not obtain a certificate" in log and "retry_in_secs=60" in log, log[-2000:]
        # The self-signed stand-in serves meanwhile.
        assert served_certificate(s.imaps_port)
        import smtplib

        with smtplib.SMTP("127.0.0.1", s.port, timeout=10) as c:
            assert c.ehlo()[0] == 250
    finally:
        s.stop()
