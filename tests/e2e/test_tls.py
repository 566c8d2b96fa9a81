"""TLS: the self-signed default, certificates by SNI, reload on SIGHUP, and
STARTTLS command injection."""

import os
import signal
import socket
import ssl
import subprocess
import time

from conftest import HOSTNAME, Raw


def make_cert(dirpath, name):
    key, crt = os.path.join(dirpath, f"{name}.key"), os.path.join(dirpath, f"{name}.crt")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt, "-days", "2",
         "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}"],
        check=True, capture_output=True,
    )
    return crt, key


def starttls_cert(port, sni=None):
    """Does STARTTLS and returns the server certificate's subject CN."""
    c = Raw(port)
    c.cmd("EHLO client.example.org")
    assert c.cmd("STARTTLS").startswith("220 2.0.0")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    tls = ctx.wrap_socket(c.sock, server_hostname=sni)
    der = tls.getpeercert(binary_form=True)
    pem = ssl.DER_cert_to_PEM_cert(der)
    out = subprocess.run(["openssl", "x509", "-noout", "-subject"], input=pem, capture_output=True, text=True).stdout
    version = tls.version()
    tls.close()
    return out.strip(), version


def test_self_signed_by_default(server):
    subject, version = starttls_cert(server.port)
    assert HOSTNAME in subject
    assert version in ("TLSv1.2", "TLSv1.3")
    assert os.path.exists(os.path.join(server.data, "tls", f"{HOSTNAME}.crt"))
    key = os.path.join(server.data, "tls", f"{HOSTNAME}.key")
    assert os.stat(key).st_mode & 0o077 == 0


def test_tls_cli_makes_a_certificate(server, tmp_path):
    out = server.cli("tls", "self-signed", "mail.esoomllub.com", "--dir", str(tmp_path)).stdout
    assert "mail.esoomllub.com.crt" in out
    assert (tmp_path / "mail.esoomllub.com.key").exists()


def test_old_tls_versions_are_refused(server):
    c = Raw(server.port)
    c.cmd("EHLO client.example.org")
    c.cmd("STARTTLS")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        ctx.wrap_socket(c.sock)
        raise AssertionError("TLS 1.1 was accepted")
    except (ssl.SSLError, OSError):
        pass


def test_sni_and_sighup_reload(server_factory, tmp_path):
    a_crt, a_key = make_cert(str(tmp_path), "a.example")
    b_crt, b_key = make_cert(str(tmp_path), "b.example")
    server = server_factory(extra_toml=f"""
[tls]
cert = "{a_crt}"
key = "{a_key}"
certificates = [{{ cert = "{b_crt}", key = "{b_key}" }}]
""").start()
    assert "a.example" in starttls_cert(server.port)[0]
    assert "b.example" in starttls_cert(server.port, "b.example")[0]
    assert "a.example" in starttls_cert(server.port, "unknown.example")[0]

    # A connection that is up survives a reload.
    with_tls = Raw(server.port)
    with_tls.cmd("EHLO client.example.org")
    # Replace the default certificate and reload.
    c_crt, c_key = make_cert(str(tmp_path), "c.example")
    os.replace(c_crt, a_crt)
    os.replace(c_key, a_key)
    server.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert "c.example" in starttls_cert(server.port)[0]
    assert with_tls.cmd("NOOP").startswith("250")
    assert "TLS certificates (re-read)" in server.read_log()
    assert server.proc.poll() is None


def test_starttls_injection_is_discarded(server):
    c = Raw(server.port)
    c.cmd("EHLO client.example.org")
    # The injected commands arrive in the same packet as STARTTLS.
    c.send("STARTTLS\r\nMAIL FROM:<injected@remote.example>\r\nRCPT TO:<customseo@esoomllub.com>\r\n")
    assert c.reply().startswith("220 2.0.0")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    tls = ctx.wrap_socket(c.sock)
    tls.sendall(b"EHLO client.example.org\r\n")
    data = b""
    while not data.endswith(b"CHUNKING\r\n"):
        data += tls.recv(4096)
    # Had the injected MAIL been kept, this would be a nested MAIL (503).
    tls.sendall(b"MAIL FROM:<a@remote.example>\r\n")
    reply = tls.recv(4096)
    assert reply.startswith(b"250 2.1.0"), reply
    assert b"STARTTLS" not in data
    tls.close()
