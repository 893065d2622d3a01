"""Certificates and tokens of the stand-in rke2, made with the ``openssl`` command.

The cluster CA is created by the first server; joining servers receive it (key included)
from the server they join through, as real RKE2 servers receive the bootstrap data.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import time
from pathlib import Path

DATA = Path("/var/lib/rancher/rke2")
TLS = DATA / "server" / "tls"
CA_CRT, CA_KEY = TLS / "server-ca.crt", TLS / "server-ca.key"
TOKEN = DATA / "server" / "token"


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def write_private(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    """Write path atomically with mode (no window where it is readable by others)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
    os.chmod(tmp, mode)
    tmp.replace(path)


def make_ca(crt: Path, key: Path, cn: str) -> None:
    """Self-signed EC CA (like RKE2's ``rke2-server-ca@<unix time>``)."""
    crt.parent.mkdir(parents=True, exist_ok=True)
    openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(crt),
        "-days",
        "3650",
        "-subj",
        f"/CN={cn}@{int(time.time())}",
    )
    key.chmod(0o600)


def make_leaf(
    crt: Path,
    key: Path,
    ca_crt: Path,
    ca_key: Path,
    cn: str,
    *,
    org: str = "",
    sans: list[str] | None = None,
) -> None:
    """Leaf certificate signed by the CA, usable as server and client."""
    crt.parent.mkdir(parents=True, exist_ok=True)
    subj = f"/CN={cn}" + (f"/O={org}" if org else "")
    ext = "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n"
    if sans:
        items = [("IP:" if s.replace(".", "").isdigit() or ":" in s else "DNS:") + s for s in sans]
        ext += "subjectAltName=" + ",".join(items) + "\n"
    with tempfile.TemporaryDirectory() as tmp:
        csr, extfile = Path(tmp) / "req.csr", Path(tmp) / "ext.cnf"
        extfile.write_text(ext)
        openssl(
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(csr),
            "-subj",
            subj,
        )
        openssl(
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca_crt),
            "-CAkey",
            str(ca_key),
            "-set_serial",
            str(int.from_bytes(os.urandom(8), "big")),
            "-days",
            "3650",
            "-extfile",
            str(extfile),
            "-out",
            str(crt),
        )
    key.chmod(0o600)


def ca_hash(ca_pem: bytes) -> str:
    """The CA hash in a ``K10<hash>::server:<password>`` token: sha256 of the CA bundle."""
    return hashlib.sha256(ca_pem).hexdigest()


def full_token(ca_pem: bytes, password: str) -> str:
    return f"K10{ca_hash(ca_pem)}::server:{password}"


def parse_token(token: str) -> tuple[str | None, str, str]:
    """Split a token into (CA hash or None, user, password), accepting short tokens too."""
    if token.startswith("K10") and "::" in token:
        head, _, rest = token.partition("::")
        user, _, password = rest.partition(":")
        return head[3:], user or "server", password
    return None, "server", token


def random_password() -> str:
    return os.urandom(16).hex()


# etcd's own PKI, where RKE2 keeps it (k3s pkg/daemons/control/deps: tls/etcd/server-ca.*,
# peer-ca.*, server-client.* (etcd's serving cert, also a client cert), client.* (apiserver's),
# peer-server-client.*). The CAs are cluster-wide (bootstrap data); leaves are per server.
ETCD_TLS = TLS / "etcd"
ETCD_SERVER_CA = (ETCD_TLS / "server-ca.crt", ETCD_TLS / "server-ca.key")
ETCD_PEER_CA = (ETCD_TLS / "peer-ca.crt", ETCD_TLS / "peer-ca.key")
ETCD_SERVING = (ETCD_TLS / "server-client.crt", ETCD_TLS / "server-client.key")


def etcd_cas() -> dict[str, str]:
    """The etcd CA files (certificates and keys) as text, for a joining server."""
    return {str(p.relative_to(ETCD_TLS)): p.read_text() for p in (*ETCD_SERVER_CA, *ETCD_PEER_CA)}


def install_etcd_cas(cas: dict[str, str]) -> None:
    for name, text in cas.items():
        write_private(ETCD_TLS / name, text, 0o600 if name.endswith(".key") else 0o644)


def etcd_certs(sans: list[str], fresh: bool = False) -> None:
    """Create the etcd CAs (first server only) and this server's etcd leaf certificates."""
    if not ETCD_SERVER_CA[0].exists():
        make_ca(*ETCD_SERVER_CA, "etcd-server-ca")
        make_ca(*ETCD_PEER_CA, "etcd-peer-ca")
    if fresh or not ETCD_SERVING[0].exists():
        make_leaf(*ETCD_SERVING, *ETCD_SERVER_CA, "etcd-server", sans=sans)
        make_leaf(ETCD_TLS / "client.crt", ETCD_TLS / "client.key", *ETCD_SERVER_CA, "etcd-client")
        peer = (ETCD_TLS / "peer-server-client.crt", ETCD_TLS / "peer-server-client.key")
        make_leaf(*peer, *ETCD_PEER_CA, "etcd-peer", sans=sans)
