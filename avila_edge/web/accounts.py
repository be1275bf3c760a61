"""Routes of the auth model: first-start setup, login and logout, who am I, users and API tokens."""

from __future__ import annotations

import logging

import msgspec
from aiohttp import web

from avila_edge.web.auth import (
    AUTH,
    AccountError,
    caller_of,
    clear_session_cookies,
    set_session_cookies,
)
from avila_edge.web.routing import Operation, Param, json_body, problem, reply
from avila_edge.web.sessions import Role, Session

logger = logging.getLogger(__name__)

NAME = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9._@-]+$"}


class SetupNeeded(msgspec.Struct, frozen=True):
    needed: bool


class SetupRequest(msgspec.Struct, frozen=True):
    token: str
    username: str
    password: str


class LoginRequest(msgspec.Struct, frozen=True):
    username: str
    password: str


class Me(msgspec.Struct, frozen=True):
    user: str
    role: Role
    csrf: str | None = None
    """The CSRF token to send as ``X-CSRF-Token`` (``None`` for API tokens, which need none)."""


class UserRequest(msgspec.Struct, frozen=True):
    username: str
    password: str
    role: Role


class UserView(msgspec.Struct, frozen=True):
    username: str
    role: Role
    created_ns: int


class UserList(msgspec.Struct, frozen=True):
    users: list[UserView]


class TokenRequest(msgspec.Struct, frozen=True):
    name: str
    role: Role


class NewToken(msgspec.Struct, frozen=True):
    name: str
    role: Role
    token: str


class TokenView(msgspec.Struct, frozen=True):
    name: str
    role: Role
    created_ns: int


class TokenList(msgspec.Struct, frozen=True):
    tokens: list[TokenView]


def _client(request: web.Request) -> str:
    return request.remote or "unknown"


def _logged_in(request: web.Request, session: Session, status: int) -> web.Response:
    response = reply(Me(session.user, session.role, session.csrf), status)
    set_session_cookies(response, session, secure=request.app[AUTH].secure_cookies)
    return response


async def setup_state(request: web.Request) -> web.Response:
    return reply(SetupNeeded(request.app[AUTH].accounts.setup_needed))


async def setup(request: web.Request) -> web.Response:
    auth = request.app[AUTH]
    addr = f"addr:{_client(request)}"
    wait = auth.lockout.retry_after(addr)
    if wait > 0:
        return _locked(wait)
    body = await json_body(request, SetupRequest)
    try:
        user = await auth.accounts.setup(body.token, body.username, body.password)
    except AccountError as exc:
        if exc.status == 403:
            auth.lockout.fail(addr)
            logger.warning("setup refused from %s: wrong setup token", _client(request))
        return problem(exc.status, str(exc))
    return _logged_in(request, auth.sessions.create(user.username, user.role), 201)


def _locked(wait: float) -> web.Response:
    response = problem(429, "too many failed attempts; try again later", retry_after=int(wait) + 1)
    response.headers["Retry-After"] = str(int(wait) + 1)
    return response


async def login(request: web.Request) -> web.Response:
    auth = request.app[AUTH]
    body = await json_body(request, LoginRequest)
    keys = (f"user:{body.username[:64]}", f"addr:{_client(request)}")
    wait = auth.lockout.retry_after(*keys)
    if wait > 0:
        logger.warning("login of %r from %s refused: locked out for %.0f s", body.username[:64], keys[1][5:], wait)
        return _locked(wait)
    user = await auth.accounts.authenticate(body.username, body.password)
    if user is None:
        auth.lockout.fail(*keys)
        logger.warning("failed login of %r from %s", body.username[:64], _client(request))
        return problem(401, "wrong user name or password")
    auth.lockout.clear(keys[0])
    logger.info("user %s logged in from %s", user.username, _client(request))
    return _logged_in(request, auth.sessions.create(user.username, user.role), 200)


async def logout(request: web.Request) -> web.Response:
    caller = caller_of(request)
    if caller.session is not None:
        request.app[AUTH].sessions.end(caller.session.id)
    response = web.Response(status=204)
    clear_session_cookies(response)
    return response


async def me(request: web.Request) -> web.Response:
    caller = caller_of(request)
    return reply(Me(caller.name, caller.role, None if caller.session is None else caller.session.csrf))


async def users(request: web.Request) -> web.Response:
    found = request.app[AUTH].accounts.users()
    return reply(UserList([UserView(u.username, u.role, u.created_ns) for u in found]))


async def add_user(request: web.Request) -> web.Response:
    body = await json_body(request, UserRequest)
    try:
        user = await request.app[AUTH].accounts.add_user(body.username, body.password, body.role)
    except AccountError as exc:
        return problem(exc.status, str(exc))
    return reply(UserView(user.username, user.role, user.created_ns), 201)


async def remove_user(request: web.Request) -> web.Response:
    auth = request.app[AUTH]
    username = request.match_info["username"]
    try:
        await auth.accounts.remove_user(username)
    except AccountError as exc:
        return problem(exc.status, str(exc))
    auth.sessions.end_user(username)
    return web.Response(status=204)


async def tokens(request: web.Request) -> web.Response:
    found = request.app[AUTH].accounts.tokens()
    return reply(TokenList([TokenView(t.name, t.role, t.created_ns) for t in found]))


async def add_token(request: web.Request) -> web.Response:
    body = await json_body(request, TokenRequest)
    try:
        secret = await request.app[AUTH].accounts.add_token(body.name, body.role)
    except AccountError as exc:
        return problem(exc.status, str(exc))
    return reply(NewToken(body.name, body.role, secret), 201)


async def remove_token(request: web.Request) -> web.Response:
    try:
        await request.app[AUTH].accounts.remove_token(request.match_info["name"])
    except AccountError as exc:
        return problem(exc.status, str(exc))
    return web.Response(status=204)


_USERNAME = Param("username", NAME, "path", "a user name", required=True)
_TOKEN = Param("name", NAME, "path", "a token name", required=True)

OPERATIONS = [
    Operation("GET", "/api/setup", setup_state, "open", "Whether first-start setup is still needed", "auth",
              response=SetupNeeded),
    Operation("POST", "/api/setup", setup, "open", "Create the first admin with the one-time setup token", "auth",
              body=SetupRequest, response=Me, status=201,
              errors={400: "bad request", 403: "wrong setup token", 409: "setup is done", 429: "locked out"}),
    Operation("POST", "/api/login", login, "open", "Log in: sets the session and CSRF cookies", "auth",
              body=LoginRequest, response=Me, errors={400: "bad request", 401: "wrong credentials",
                                                     429: "locked out (Retry-After)"}),
    Operation("POST", "/api/logout", logout, "viewer", "End the session", "auth", status=204),
    Operation("GET", "/api/me", me, "viewer", "The caller, its role and CSRF token", "auth", response=Me),
    Operation("GET", "/api/users", users, "admin", "Every user", "users", response=UserList),
    Operation("POST", "/api/users", add_user, "admin", "Add a user", "users", body=UserRequest, response=UserView,
              status=201, errors={400: "bad name or password", 409: "the user exists"}),
    Operation("DELETE", "/api/users/{username}", remove_user, "admin", "Remove a user and end their sessions",
              "users", params=(_USERNAME,), status=204, errors={404: "no such user", 409: "the last admin"}),
    Operation("GET", "/api/tokens", tokens, "admin", "Every API token (names and roles, never secrets)", "tokens",
              response=TokenList),
    Operation("POST", "/api/tokens", add_token, "admin", "Make an API token; its secret is shown once", "tokens",
              body=TokenRequest, response=NewToken, status=201, errors={400: "bad name", 409: "the token exists"}),
    Operation("DELETE", "/api/tokens/{name}", remove_token, "admin", "Revoke an API token", "tokens",
              params=(_TOKEN,), status=204, errors={404: "no such token"}),
]  # fmt: skip
