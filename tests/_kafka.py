"""How tests log in to the session's Kafka (neither unit nor integration specific).

The session fixtures register their cluster's admin login; anything given only a
bootstrap address (settings for a test federation, a raw client) finds the login here.
"""

from __future__ import annotations

from typing import Any

from adapters.kafka import KafkaSettings, client_kwargs

_LOGINS: dict[str, KafkaSettings] = {}


def register_login(settings: KafkaSettings) -> None:
    """Remember how to log in to the cluster at ``settings.bootstrap``."""
    _LOGINS[settings.bootstrap] = settings


def kafka_settings(bootstrap: str) -> KafkaSettings:
    """The registered login for ``bootstrap`` (an unsecured one if none is)."""
    return _LOGINS.get(bootstrap) or KafkaSettings(bootstrap=bootstrap)


def kafka_kwargs(bootstrap: str) -> dict[str, Any]:
    """aiokafka keyword arguments (address and login) for a raw test client."""
    return client_kwargs(kafka_settings(bootstrap))


def login_env(bootstrap: str) -> dict[str, str]:
    """``CRB_KAFKA__*`` variables that make a ``crb`` process log in like the tests."""
    settings = kafka_settings(bootstrap)
    env = {
        "CRB_KAFKA__BOOTSTRAP": bootstrap,
        "CRB_KAFKA__SECURITY_PROTOCOL": settings.security_protocol,
    }
    if settings.sasl_mechanism is not None:
        env["CRB_KAFKA__SASL_MECHANISM"] = settings.sasl_mechanism
        env["CRB_KAFKA__SASL_USERNAME"] = settings.sasl_username or ""
        secret = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
        env["CRB_KAFKA__SASL_PASSWORD"] = secret
    return env
