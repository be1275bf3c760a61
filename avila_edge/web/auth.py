"""Who is calling: users and API tokens (persisted), console sessions, login lockout, the access check.

- ``Accounts`` keeps users (scrypt password hashes, per-user salt) and API tokens (SHA-256 of a random
  secret) in ``<state_dir>/users.json`` (mode 0600). While there is no user it holds the hash of a
  one-time setup token, logged at WARNING, printed on stderr when that is a terminal, and written to
  ``<state_dir>/setup-token`` (0600), which is removed when setup is done.
- ``Sessions`` and ``Lockout`` (in ``sessions.py``) keep console logins and failed attempts.
- ``access`` (middleware) resolves the caller from ``Authorization: Bearer`` or the session cookie,
  checks the route's access level and the CSRF header on writes made with a session.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import msgspec
from aiohttp import web

from avila_edge.core.files import write_private
from avila_edge.web.routing import Access, Handler, Operation, problem
from avila_edge.web.sessions import Lockout, Role, Session, Sessions

logger = logging.getLogger(__name__)

ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")
USERS_FILE = "users.json"
SETUP_TOKEN_FILE = "setup-token"  # noqa: S105 - a file name
SESSION_COOKIE = "avila_session"
CSRF_COOKIE = "avila_csrf"
CSRF_HEADER = "X-CSRF-Token"
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_UNSAFE = frozenset({"POST", "PUT", "DELETE", "PATCH"})


def rank(role: str) -> int:
    return ROLES.index(role) if role in ROLES else -1


def _scrypt(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 * 2**20, dklen=32)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class User(msgspec.Struct, frozen=True):
    username: str
    role: Role
    salt: str
    hash: str
    created_ns: int


class Token(msgspec.Struct, frozen=True):
    name: str
    role: Role
    hash: str
    created_ns: int


class _Stored(msgspec.Struct):
    users: list[User] = msgspec.field(default_factory=list)
    tokens: list[Token] = msgspec.field(default_factory=list)


class AccountError(Exception):
    """A refused change of users or tokens; ``status`` is the HTTP status it maps to."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def check_name(name: str, what: str) -> str:
    if not 1 <= len(name) <= 64 or not all(c.isalnum() or c in "._-@" for c in name):
        raise AccountError(f"{what} must be 1-64 letters, digits or . _ - @ (got {name!r})", 400)
    return name


def check_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AccountError(f"a password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters", 400)
    return password


class Accounts:
    """Users and API tokens of one gateway, persisted in ``<state_dir>/users.json``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / USERS_FILE
        self.setup_file = state_dir / SETUP_TOKEN_FILE
        self._stored = _Stored()
        self._setup_hash: str | None = None
        self._lock = asyncio.Lock()
        self._dummy_salt = secrets.token_bytes(16)

    @classmethod
    async def open(cls, state_dir: Path) -> Accounts:
        accounts = cls(state_dir)
        await asyncio.to_thread(accounts._load)
        return accounts

    def _load(self) -> None:
        if self.path.exists():
            try:
                self._stored = msgspec.json.decode(self.path.read_bytes(), type=_Stored)
            except msgspec.DecodeError as exc:
                raise RuntimeError(f"{self.path}: the user store is damaged ({exc}); restore it from a backup") from exc
        if self._stored.users:
            self.setup_file.unlink(missing_ok=True)
            return
        token = secrets.token_urlsafe(24)
        self._setup_hash = _digest(token)
        self.setup_file.parent.mkdir(parents=True, exist_ok=True)
        write_private(self.setup_file, (token + "\n").encode())
        logger.warning("no user yet: open the console and set it up with the one-time setup token %s", token)
        if sys.stderr.isatty():
            print(f"avila-edge: one-time setup token: {token}", file=sys.stderr, flush=True)

    def _save(self) -> None:
        write_private(self.path, msgspec.json.encode(self._stored))

    # -- setup -------------------------------------------------------------------------------------

    @property
    def setup_needed(self) -> bool:
        return not self._stored.users

    async def setup(self, token: str, username: str, password: str) -> User:
        """Create the first admin with the one-time setup token."""
        async with self._lock:
            if not self.setup_needed or self._setup_hash is None:
                raise AccountError("setup is already done", 409)
            if not hmac.compare_digest(_digest(token), self._setup_hash):
                raise AccountError("wrong setup token", 403)
            user = await self._new_user(username, password, "admin")
            self._stored.users.append(user)
            self._setup_hash = None
            await asyncio.to_thread(self._save)
            await asyncio.to_thread(self.setup_file.unlink, missing_ok=True)
        logger.warning("setup done: user %s is the first admin", username)
        return user

    # -- users -------------------------------------------------------------------------------------

    def users(self) -> list[User]:
        return list(self._stored.users)

    def user(self, username: str) -> User | None:
        return next((u for u in self._stored.users if u.username == username), None)

    async def authenticate(self, username: str, password: str) -> User | None:
        """The user when the password is right; the same work is done for unknown names."""
        user = self.user(username)
        salt = bytes.fromhex(user.salt) if user else self._dummy_salt
        derived = await asyncio.to_thread(_scrypt, password[:MAX_PASSWORD], salt)
        if user is None or not hmac.compare_digest(derived, bytes.fromhex(user.hash)):
            return None
        return user

    async def add_user(self, username: str, password: str, role: Role) -> User:
        async with self._lock:
            if self.user(username) is not None:
                raise AccountError(f"user {username} exists", 409)
            user = await self._new_user(username, password, role)
            self._stored.users.append(user)
            await asyncio.to_thread(self._save)
        logger.info("user %s added (%s)", username, role)
        return user

    async def remove_user(self, username: str) -> None:
        async with self._lock:
            user = self.user(username)
            if user is None:
                raise AccountError(f"no user {username}", 404)
            admins = [u for u in self._stored.users if u.role == "admin"]
            if user.role == "admin" and len(admins) == 1:
                raise AccountError("the last admin cannot be removed", 409)
            self._stored.users.remove(user)
            await asyncio.to_thread(self._save)
        logger.info("user %s removed", username)

    async def _new_user(self, username: str, password: str, role: Role) -> User:
        check_name(username, "a user name")
        check_password(password)
        salt = secrets.token_bytes(16)
        derived = await asyncio.to_thread(_scrypt, password, salt)
        return User(username, role, salt.hex(), derived.hex(), time.time_ns())

    # -- API tokens --------------------------------------------------------------------------------

    def tokens(self) -> list[Token]:
        return list(self._stored.tokens)

    async def add_token(self, name: str, role: Role) -> str:
        """Make an API token; the secret is returned once and only its hash is kept."""
        check_name(name, "a token name")
        async with self._lock:
            if any(t.name == name for t in self._stored.tokens):
                raise AccountError(f"token {name} exists", 409)
            secret = "avk_" + secrets.token_urlsafe(32)
            self._stored.tokens.append(Token(name, role, _digest(secret), time.time_ns()))
            await asyncio.to_thread(self._save)
        logger.info("API token %s made (%s)", name, role)
        return secret

    async def remove_token(self, name: str) -> None:
        async with self._lock:
            token = next((t for t in self._stored.tokens if t.name == name), None)
            if token is None:
                raise AccountError(f"no token {name}", 404)
            self._stored.tokens.remove(token)
            await asyncio.to_thread(self._save)
        logger.info("API token %s removed", name)

    def token(self, secret: str) -> Token | None:
        digest = _digest(secret)
        found = None
        for t in self._stored.tokens:  # every entry compared, in constant time each
            if hmac.compare_digest(t.hash, digest):
                found = t
        return found


# -- the access check -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """Who made a request: a user through a session, or an API token."""

    name: str
    role: Role
    via: Literal["session", "token"]
    session: Session | None = None

    @property
    def by(self) -> str:
        """How journal events name this caller."""
        return self.name if self.via == "session" else f"token:{self.name}"


@dataclass
class AuthState:
    """The per-application auth state the middleware and the account routes share."""

    accounts: Accounts
    sessions: Sessions
    lockout: Lockout
    loopback: bool
    secure_cookies: bool
    levels: dict[tuple[str, str], Access] = field(default_factory=dict)

    def level(self, request: web.Request) -> Access:
        route = request.match_info.route
        resource = route.resource
        if resource is None:
            return "open"
        return self.levels.get((route.method, resource.canonical), "open")

    def caller(self, request: web.Request) -> Caller | None:
        header = request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer ":
            token = self.accounts.token(header[7:].strip())
            return None if token is None else Caller(token.name, token.role, "token")
        session_id = request.cookies.get(SESSION_COOKIE)
        if session_id:
            s = self.sessions.get(session_id)
            if s is not None:
                return Caller(s.user, s.role, "session", s)
        return None


AUTH: web.AppKey[AuthState] = web.AppKey("auth")
CALLER: web.RequestKey[Caller] = web.RequestKey("caller", Caller)


def register(app: web.Application, operations: list[Operation]) -> None:
    """Record the access level of every operation for the middleware."""
    for op in operations:
        app[AUTH].levels[(op.method, op.path)] = op.access
        if op.method == "GET":
            app[AUTH].levels[("HEAD", op.path)] = op.access


def caller_of(request: web.Request) -> Caller:
    """The authenticated caller of a route that is not open (set by the middleware)."""
    return request[CALLER]


@web.middleware
async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
    auth = request.app[AUTH]
    level = auth.level(request)
    if level == "open" or (level == "loopback" and auth.loopback):
        return await handler(request)
    caller = auth.caller(request)
    if caller is None:
        refused = problem(401, "log in, or send Authorization: Bearer <api token>")
        refused.headers["WWW-Authenticate"] = 'Bearer realm="avila-edge"'
        return refused
    needed: Role = "viewer" if level == "loopback" else level
    if rank(caller.role) < rank(needed):
        return problem(403, f"this needs the {needed} role; {caller.name} is {caller.role}")
    if caller.session is not None and request.method in _UNSAFE:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), caller.session.csrf.encode()):
            return problem(403, "CSRF token missing or wrong")
    request[CALLER] = caller
    return await handler(request)


def set_session_cookies(response: web.StreamResponse, session: Session, *, secure: bool) -> None:
    response.set_cookie(SESSION_COOKIE, session.id, httponly=True, samesite="Strict", secure=secure, path="/")
    response.set_cookie(CSRF_COOKIE, session.csrf, httponly=False, samesite="Strict", secure=secure, path="/")


def clear_session_cookies(response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, path="/")
    response.del_cookie(CSRF_COOKIE, path="/")
