"""Off loopback the intake is served over TLS: a self-signed certificate made for
the test, the API answered over HTTPS, plain HTTP refused."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from adapters import Access, StateStore, TokenStore, create_intake
from broker.tracker import serve
from schemas import utcnow
from tests._fed import LiveFederation, make_referral
from tests.integration._kafka_util import free_port
from tests.unit._adapter_kit import FakeKafka, sender


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "intake.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


async def test_the_intake_over_https(tmp_path: Path) -> None:
    fed, kafka = LiveFederation(), FakeKafka()
    with StateStore(tmp_path / "state") as store:
        tokens = TokenStore(tmp_path / "keys.json")
        api_key, _ = tokens.issue("participant:de.hotline", now=utcnow())
        app = create_intake(sender(fed, "de.hotline", kafka), store, Access(tokens.tokens))
        cert, key = _self_signed(tmp_path)
        port, stop = free_port(), asyncio.Event()
        task = asyncio.create_task(
            serve(app, "127.0.0.1", port, stop, ssl_certfile=cert, ssl_keyfile=key)
        )
        try:
            trust = ssl.create_default_context(cafile=str(cert))
            async with httpx.AsyncClient(verify=trust, timeout=30) as web:
                r = await web.post(
                    f"https://127.0.0.1:{port}/referrals?jurisdiction=NL",
                    json=make_referral().model_dump(mode="json"),
                    headers={"Authorization": f"Bearer {api_key}"},
                )
                assert r.status_code == 202, r.text
                with pytest.raises(httpx.TransportError):  # no plain-HTTP answer at all
                    await web.get(f"http://127.0.0.1:{port}/healthz")
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
    assert len(kafka.sent) == 1
