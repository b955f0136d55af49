"""A local certificate authority for the sandboxes (trustme), kept in the state directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme

HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class TlsFiles:
    ca_bundle: Path
    cert_chain: Path
    key: Path


def ensure_ca(state_dir: Path) -> TlsFiles:
    """Load the sandbox CA from ``state_dir`` or create it; issue a server certificate for localhost.

    The CA is kept so a hub configured once with ``ca_bundle`` keeps trusting restarted sandboxes.
    """
    tls_dir = Path(state_dir) / "tls"
    tls_dir.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = tls_dir / "ca.pem", tls_dir / "ca.key"
    if ca_cert.exists() and ca_key.exists():
        ca = trustme.CA.from_pem(ca_cert.read_bytes(), ca_key.read_bytes())
    else:
        ca = trustme.CA(organization_name="lead2cash sandbox CA")
        ca.private_key_pem.write_to_path(str(ca_key))
        ca_key.chmod(0o600)
        ca.cert_pem.write_to_path(str(ca_cert))
    server = ca.issue_cert(*HOSTS)
    chain, key = tls_dir / "server-chain.pem", tls_dir / "server.key"
    with chain.open("wb") as out:
        for blob in server.cert_chain_pems:
            out.write(blob.bytes())
    server.private_key_pem.write_to_path(str(key))
    key.chmod(0o600)
    return TlsFiles(ca_bundle=ca_cert, cert_chain=chain, key=key)
