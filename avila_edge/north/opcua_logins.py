"""Who may log in to the OPC UA server: user names with hashed passwords, X.509 users, anonymous readers."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, Final

from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.internal_server import InternalServer
from asyncua.server.user_managers import UserManager
from cryptography import x509

from drivers.opcua import pki

logger = logging.getLogger(__name__)

_PBKDF2_ROUNDS: Final = 20_000


class Logins(UserManager):
    """User names with passwords compared as salted PBKDF2 hashes; X.509 users; anonymous readers."""

    def __init__(self, passwords: Mapping[str, str], user_certificates: Sequence[x509.Certificate], anonymous: bool):
        self._salt = os.urandom(16)
        self._hashes = {name: self._hash(pw) for name, pw in passwords.items()}
        self._unknown = self._hash(os.urandom(16).hex())
        self._certificates = list(user_certificates)
        self._anonymous = anonymous
        self.accepted = self.refused = 0

    def _hash(self, password: str) -> bytes:
        return hashlib.pbkdf2_hmac("sha256", password.encode(), self._salt, _PBKDF2_ROUNDS)

    def get_user(
        self, iserver: InternalServer, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        if username is not None:
            expected = self._hashes.get(username, self._unknown)  # the same work for unknown names
            if hmac.compare_digest(self._hash(password or ""), expected) and username in self._hashes:
                self.accepted += 1
                return User(role=UserRole.User, name=username)
            self.refused += 1
            logger.warning("OPC UA login refused for user %r: wrong user name or password", username)
            return None
        if certificate is not None and self._certificates:
            der = certificate if isinstance(certificate, bytes) else bytes(certificate)
            try:
                pki.check_server_certificate(der, self._certificates)
            except pki.PkiError:
                pass
            else:
                self.accepted += 1
                cn = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
                return User(role=UserRole.User, name=f"cert:{cn[0].value!s}" if cn else f"cert:{pki.fingerprint(der)}")
        if self._anonymous:
            self.accepted += 1
            return User(role=UserRole.User, name=None)
        self.refused += 1
        logger.warning("OPC UA login refused: anonymous logins are off and no user certificate matched")
        return None


__all__ = ["Logins"]
