"""The public surface of ``keys`` is deliberate (compare httpx's test_exported_members)."""

from __future__ import annotations

import inspect

import keys


def test_public_surface_is_pinned() -> None:
    """Adding or removing a public name is a visible change to this list."""
    assert sorted(keys.__all__) == [
        "DEFAULT_LIMITS",
        "DIRECTORY_SIGNATURE_CONTEXT",
        "DirectoryError",
        "DirectoryReason",
        "Draft",
        "EnvelopeError",
        "FEDERATION_OWNER",
        "FORMAT_VERSION",
        "Kem",
        "KeyId",
        "KeysError",
        "Keystore",
        "KeystoreError",
        "Limits",
        "MAGIC",
        "Opened",
        "OpeningKey",
        "ReasonCode",
        "Rng",
        "SealError",
        "SealingKey",
        "SignedDirectory",
        "SigningKey",
        "TrustStore",
        "VerifiedEnvelope",
        "VerifyKey",
        "WrappedKey",
        "add_participant",
        "current_sealing_key",
        "current_signing_record",
        "load_directory",
        "open",
        "peek_header",
        "record_for",
        "revoke",
        "rotate",
        "seal",
        "sealing_key_of",
        "set_status",
        "sign_directory",
        "verify",
        "verify_directory",
        "verify_key_of",
    ]


def test_every_exported_name_exists_and_is_documented() -> None:
    """Each export resolves; every exported class and function has a docstring."""
    for name in keys.__all__:
        obj = getattr(keys, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert obj.__doc__, name
