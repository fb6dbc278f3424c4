"""An adapter's identity follows the live directory: after a rotation is published,
the next envelope is signed with the new key and messages sealed to the new
encryption key open — without a restart."""

from __future__ import annotations

from pathlib import Path

import keys
from adapters import Identity
from keys import Keystore, LiveDirectory, OfferOutcome, OpeningKey, SigningKey
from tests._fed import LiveFederation, now


def test_identity_switches_to_rotated_keys_once_the_directory_names_them(
    tmp_path: Path,
) -> None:
    fed = LiveFederation()
    files = fed.fed.write(tmp_path)
    store = Keystore(files.keystore)
    live = LiveDirectory(fed.directory(), root=fed.root.verify_key)
    me = Identity.load(store, "nl.hotline", live, now=now())
    old_signing = me.signing_key.key_id
    assert old_signing == fed.signing["nl.hotline"].key_id

    # The operator rotates: new keys in the keystore first, then the new version.
    new_sig, new_enc = SigningKey.generate(), OpeningKey.generate(keys.Kem.X25519)
    store.save_signing_key("nl.hotline", new_sig)
    store.save_opening_key("nl.hotline", new_enc)
    assert me.signing_key.key_id == old_signing, "unchanged until the directory says so"
    rotated = keys.rotate(
        fed.directory(),
        "nl.hotline",
        new_keys=(new_sig.verify_key, new_enc.sealing_key),
        now=now(),
    )
    assert live.offer(fed.fed.signed(rotated).to_json()).outcome is OfferOutcome.ACCEPTED

    assert me.signing_key.key_id == new_sig.key_id
    assert {k.key_id for k in me.opening_keys} == {
        fed.opening["nl.hotline"].key_id,
        new_enc.key_id,
    }
    # A referral sealed to the new key (the sender's directory is the new one) opens.
    env = fed.referral(directory=rotated)
    opened = keys.open(
        env, recipient="nl.hotline", opening_keys=me.opening_keys, directory=me.directory, now=now()
    )
    assert opened.header.message_id == keys.parse(env).header.message_id
    (wrapped,) = [w for w in keys.parse(env).wrapped_keys if w.recipient == "nl.hotline"]
    assert wrapped.key_id == new_enc.key_id


def test_a_key_missing_from_the_keystore_keeps_the_previous_one(tmp_path: Path) -> None:
    """The directory names a key this machine does not have (rotated elsewhere): the
    adapter keeps signing with the key it has, and says so in its log."""
    fed = LiveFederation()
    files = fed.fed.write(tmp_path)
    live = LiveDirectory(fed.directory(), root=fed.root.verify_key)
    me = Identity.load(Keystore(files.keystore), "nl.hotline", live, now=now())
    elsewhere = SigningKey.generate()
    rotated = keys.rotate(
        fed.directory(), "nl.hotline", new_keys=(elsewhere.verify_key,), now=now()
    )
    assert live.offer(fed.fed.signed(rotated).to_json()).outcome is OfferOutcome.ACCEPTED
    assert me.signing_key.key_id == fed.signing["nl.hotline"].key_id
