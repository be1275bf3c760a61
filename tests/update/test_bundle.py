"""Bundles are verified before anything is written: signature, hardware, version, image hash."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from avila_edge.audit import DeviceKey
from avila_edge.update import IMAGE_MEMBER, MANIFEST_MEMBER, UpdateError, open_bundle

from .conftest import HARDWARE, bundle, members, slots, write_tar


def test_a_signed_bundle_opens_with_its_manifest_and_image(tmp_path: Path, release_key: DeviceKey) -> None:
    path = bundle(tmp_path, release_key, version="2.1.0")
    image = (tmp_path / f"{path.name}.img").read_bytes()
    copied: list[bytes] = []
    with open_bundle(path, [release_key.verifier]) as opened:
        assert opened.manifest.version == "2.1.0"
        assert opened.manifest.hardware == (HARDWARE,)
        assert opened.signer == release_key.verifier
        opened.copy_image(copied.append)
    assert b"".join(copied) == image


def test_a_corrupted_signature_is_refused(tmp_path: Path, release_key: DeviceKey) -> None:
    items = dict(members(bundle(tmp_path, release_key)))
    body, sig_line = items[MANIFEST_MEMBER].decode().rstrip("\n").rsplit("\n", 1)
    dash, name, sig = sig_line.split(" ")
    raw = bytearray(base64.b64decode(sig))
    raw[-1] ^= 0x01
    items[MANIFEST_MEMBER] = f"{body}\n{dash} {name} {base64.b64encode(bytes(raw)).decode()}\n".encode()
    bad = write_tar(
        tmp_path / "bad-sig.bundle", [(MANIFEST_MEMBER, items[MANIFEST_MEMBER]), (IMAGE_MEMBER, items[IMAGE_MEMBER])]
    )
    with pytest.raises(UpdateError, match=r"bad-sig.bundle: signature refused: bad signature by avila-edge-release"):
        open_bundle(bad, [release_key.verifier]).__enter__()


def test_a_manifest_changed_after_signing_is_refused(tmp_path: Path, release_key: DeviceKey) -> None:
    items = members(bundle(tmp_path, release_key, version="2.0.0"))
    note = items[0][1].replace(b'"version":"2.0.0"', b'"version":"9.0.0"')
    bad = write_tar(tmp_path / "edited.bundle", [(MANIFEST_MEMBER, note), items[1]])
    with pytest.raises(UpdateError, match="bad signature"):
        open_bundle(bad, [release_key.verifier]).__enter__()


def test_a_bundle_signed_by_an_unknown_key_is_refused(tmp_path: Path, release_key: DeviceKey) -> None:
    stranger = DeviceKey.generate("avila-edge-release")
    path = bundle(tmp_path, stranger)
    with pytest.raises(UpdateError, match="no trusted key signed this note"):
        open_bundle(path, [release_key.verifier]).__enter__()


def test_no_trusted_key_refuses_every_bundle(tmp_path: Path, release_key: DeviceKey) -> None:
    with pytest.raises(UpdateError, match="no trusted release key"):
        open_bundle(bundle(tmp_path, release_key), []).__enter__()


def test_a_bundle_for_other_hardware_is_refused_before_writing(tmp_path: Path, release_key: DeviceKey) -> None:
    path = bundle(tmp_path, release_key, hardware="raspberrypi,4-model-b")
    store = slots(tmp_path / "slots")
    with open_bundle(path, [release_key.verifier]) as opened, pytest.raises(UpdateError) as info:
        store.install(opened, hardware=HARDWARE)
    assert f"bundle is for hardware raspberrypi,4-model-b; this device is '{HARDWARE}'" in str(info.value)
    assert not (tmp_path / "slots").exists()


def test_an_image_that_does_not_match_its_hash_is_refused_and_the_slot_marked_bad(
    tmp_path: Path, release_key: DeviceKey
) -> None:
    items = members(bundle(tmp_path, release_key))
    image = bytearray(items[1][1])
    image[1000] ^= 0xFF
    bad = write_tar(tmp_path / "flipped.bundle", [items[0], (IMAGE_MEMBER, bytes(image))])
    store = slots(tmp_path / "slots")
    with open_bundle(bad, [release_key.verifier]) as opened, pytest.raises(UpdateError, match="image SHA-256"):
        store.install(opened, hardware=HARDWARE)
    state = store.state()
    assert state.slots["b"].state == "bad"
    assert state.trying is None
    assert store.boot() == "a"
    assert not (tmp_path / "slots" / "b" / "image").exists()


def test_a_truncated_bundle_is_refused(tmp_path: Path, release_key: DeviceKey) -> None:
    path = bundle(tmp_path, release_key)
    short = tmp_path / "short.bundle"
    short.write_bytes(path.read_bytes()[:100_000])
    store = slots(tmp_path / "slots")
    with open_bundle(short, [release_key.verifier]) as opened, pytest.raises(UpdateError, match=r"short\.bundle"):
        store.install(opened, hardware=HARDWARE)
    assert store.boot() == "a"


def test_members_in_another_order_are_refused(tmp_path: Path, release_key: DeviceKey) -> None:
    items = members(bundle(tmp_path, release_key))
    bad = write_tar(tmp_path / "swapped.bundle", [items[1], items[0]])
    with pytest.raises(UpdateError, match=r"expected the file 'manifest\.note' next, found 'image'"):
        open_bundle(bad, [release_key.verifier]).__enter__()


def test_garbage_is_refused_with_the_bundle_named(tmp_path: Path, release_key: DeviceKey) -> None:
    junk = tmp_path / "junk.bundle"
    junk.write_bytes(b"\x00not a tar" * 100)
    with pytest.raises(UpdateError, match=r"junk.bundle: (not a readable bundle|ends before)"):
        open_bundle(junk, [release_key.verifier]).__enter__()


def test_a_downgrade_is_refused_unless_forced(tmp_path: Path, release_key: DeviceKey) -> None:
    path = bundle(tmp_path, release_key, version="0.9.0")
    store = slots(tmp_path / "slots", installed="1.0.0")
    with (
        open_bundle(path, [release_key.verifier]) as opened,
        pytest.raises(UpdateError, match=r"older than the installed 1\.0\.0"),
    ):
        store.install(opened, hardware=HARDWARE)
    with open_bundle(path, [release_key.verifier]) as opened:
        assert store.install(opened, hardware=HARDWARE, force=True) == "b"
