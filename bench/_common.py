"""What the process-based benches share: a free loopback port and the environment
of the ``crb`` service processes they start."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

__all__ = ["free_port", "services_env"]

PASSED_THROUGH = ("CRB_KAFKA__FETCH", "CRB_KAFKA__LINGER", "CRB_DIRECTORY_REFRESH_S")
"""Tuning given to a bench reaches every process it starts."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def services_env(
    kafka: Any, folder: Path, prefix: str, settings: Any, *, admin: bool
) -> dict[str, str]:
    """The services' environment: the bench's home, the topic prefix, the router's
    group and transactional ids, JSON logs; ``admin``: log in as the provisioning
    admin (else each service as itself, from ``folder/credentials``)."""
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith("CRB_") or k.startswith(PASSED_THROUGH)
        },
        "CRB_HOME": str(folder),
        "CRB_KAFKA__BOOTSTRAP": kafka.bootstrap,
        "CRB_TOPICS__PREFIX": prefix,
        "CRB_ROUTER__GROUP_ID": settings.router.group_id,
        "CRB_ROUTER__TRANSACTIONAL_ID_PREFIX": settings.router.transactional_id_prefix,
        "CRB_LOG_FORMAT": "json",
    }
    if admin:
        sasl = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
        env |= {
            "CRB_KAFKA__SECURITY_PROTOCOL": kafka.security_protocol,
            "CRB_KAFKA__SASL_MECHANISM": kafka.sasl_mechanism or "",
            "CRB_KAFKA__SASL_USERNAME": kafka.sasl_username or "",
            "CRB_KAFKA__SASL_PASSWORD": sasl,
            "CRB_TRACKER__GROUP_ID": f"{prefix}-tracker",
        }
    return env
