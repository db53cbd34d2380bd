"""Throwaway TLS material for tests: a CA, a server and a client certificate (openssl CLI).

EC P-256 keys (fast to make), valid for two days; the server certificate names ``localhost``
and ``127.0.0.1``, so host-name checks pass the way a client connects in the tests.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@dataclass(frozen=True)
class Certs:
    ca: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str) -> None:
    done = subprocess.run(
        ["openssl", *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"openssl {' '.join(args)}:\n{done.stderr}"


def make_certs(directory: Path, ca_name: str = "rtp-test-ca") -> Certs:
    """A fresh CA in ``directory`` and a server and a client certificate it signed."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "openssl.cnf"
    config.write_text(_CONFIG)
    key_args = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    _openssl(
        "req", "-x509", "-new", "-config", str(config), "-extensions", "ca", *key_args,
        "-keyout", str(ca_key), "-out", str(ca), "-days", "2", "-subj", f"/CN={ca_name}",
    )  # fmt: skip
    paths = {}
    for serial, role in enumerate(("server", "client"), start=1):
        key, csr, cert = (directory / f"{role}.{ext}" for ext in ("key", "csr", "pem"))
        subject = "/CN=localhost" if role == "server" else "/CN=rtp-test-client"
        _openssl(
            "req", "-new", "-config", str(config), *key_args, "-keyout", str(key),
            "-out", str(csr), "-subj", subject,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-set_serial", str(serial), "-days", "2", "-out", str(cert),
            "-extfile", str(config), "-extensions", role,
        )  # fmt: skip
        paths[role] = (cert, key)
    return Certs(ca, ca_key, *paths["server"], *paths["client"])


def encrypt_key(key: Path, out: Path, password: str) -> Path:
    """``key`` encrypted with ``password`` (AES-256), as PKCS#8 PEM."""
    _openssl("pkey", "-in", str(key), "-out", str(out), "-aes256", "-passout", f"pass:{password}")
    return out
