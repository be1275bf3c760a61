"""Signed A/B updates: bundles verified with a release key, written to the inactive slot, booted on
trial and committed only when the gateway reports healthy. See ``docs/updates.md``."""

from avila_edge.update._bundle import IMAGE_MEMBER, MANIFEST_MEMBER, OpenBundle, image_digest, make_bundle, open_bundle
from avila_edge.update._health import DEFAULT_URL, wait_healthy
from avila_edge.update._manifest import (
    FORMAT,
    Image,
    Manifest,
    UpdateError,
    check_fits,
    open_manifest,
    read_trusted,
    sign_manifest,
    version_key,
)
from avila_edge.update._slots import MAX_TRIES, SLOTS, BootState, DirectoryBackend, SlotBackend, SlotInfo, Slots

__all__ = [
    "DEFAULT_URL",
    "FORMAT",
    "IMAGE_MEMBER",
    "MANIFEST_MEMBER",
    "MAX_TRIES",
    "SLOTS",
    "BootState",
    "DirectoryBackend",
    "Image",
    "Manifest",
    "OpenBundle",
    "SlotBackend",
    "SlotInfo",
    "Slots",
    "UpdateError",
    "check_fits",
    "image_digest",
    "make_bundle",
    "open_bundle",
    "open_manifest",
    "read_trusted",
    "sign_manifest",
    "version_key",
    "wait_healthy",
]
