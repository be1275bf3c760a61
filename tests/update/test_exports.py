"""The update package exports exactly its public API, and every exported name exists."""

from __future__ import annotations

import avila_edge.update


def test_the_update_package_exports_its_public_api() -> None:
    assert set(avila_edge.update.__all__) == {
        "BootState", "DirectoryBackend", "Image", "Manifest", "OpenBundle", "SlotBackend", "SlotInfo", "Slots",
        "UpdateError", "DEFAULT_URL", "FORMAT", "IMAGE_MEMBER", "MANIFEST_MEMBER", "MAX_TRIES", "SLOTS",
        "check_fits", "image_digest", "make_bundle", "open_bundle", "open_manifest", "read_trusted", "sign_manifest",
        "version_key", "wait_healthy",
    }  # fmt: skip
    for name in avila_edge.update.__all__:
        assert getattr(avila_edge.update, name) is not None


def test_update_errors_are_gateway_errors() -> None:
    from avila_edge.core import GatewayError

    assert issubclass(avila_edge.update.UpdateError, GatewayError)
