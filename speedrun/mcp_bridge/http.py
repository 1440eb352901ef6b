"""`speedrun mcp --http`: the same tools over streamable HTTP; loopback by default, a bearer token anywhere else."""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING, Any

from speedrun.errors import InputError, echo

if TYPE_CHECKING:  # starlette and uvicorn load only when HTTP is served
    from mcp.server.transport_security import TransportSecuritySettings
    from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("speedrun.mcp")

TOKEN_ENV = "SPEEDRUN_MCP_TOKEN"
#: Extra Host names a non-loopback server answers to (e.g. its DNS name), comma-separated.
HOSTS_ENV = "SPEEDRUN_MCP_ALLOWED_HOSTS"
DEFAULT_HOST, DEFAULT_PORT, PATH = "127.0.0.1", 8000, "/mcp"
MIN_TOKEN = 16  # a short token is guessable over the network
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def is_loopback(host: str) -> bool:
    """True for localhost and the loopback addresses (127.0.0.0/8, ::1): config's rule, for a bare host."""
    from speedrun.config import is_loopback as url_is_loopback

    return url_is_loopback(f"http://{_bracket(host)}/")


def check_binding(host: str, port: int, token: str | None) -> None:
    """Refuse a binding that would expose the tools: off loopback a token of MIN_TOKEN+ characters is required."""
    if not 0 < port < 65536:
        raise InputError(f"--port {port} is not a TCP port; pass 1-65535 (default {DEFAULT_PORT}).")
    if token is not None and len(token) < MIN_TOKEN:
        raise InputError(
            f"{TOKEN_ENV} is {len(token)} characters; use at least {MIN_TOKEN} random ones, e.g. from "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`."
        )
    if not is_loopback(host) and not token:
        raise InputError(
            f"--host {echo(host, 80)} is not a loopback address, so anyone who can reach it could run tools that "
            f"write files and run tests. Set {TOKEN_ENV} (at least {MIN_TOKEN} random characters) in the server's "
            f"environment and give clients `Authorization: Bearer <token>`, or bind to {DEFAULT_HOST}."
        )


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def transport_security(host: str, extra_hosts: list[str]) -> TransportSecuritySettings:
    """DNS-rebinding protection: only the loopback names, the bound host and `extra_hosts` as Host (any port), and
    only http(s) origins on those names."""
    from mcp.server.transport_security import TransportSecuritySettings

    names = list(LOOPBACK_HOSTS)
    if not is_loopback(host) and host not in {"0.0.0.0", "::"}:  # a wildcard bind is reached by a real name
        names.append(_bracket(host))
    names += [_bracket(h.strip()) for h in extra_hosts if h.strip()]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{n}:*" for n in names] + names,
        allowed_origins=[f"{scheme}://{n}{port}" for n in names for scheme in ("http", "https") for port in (":*", "")],
    )


class BearerAuth:
    """ASGI middleware: every HTTP request must carry `Authorization: Bearer <token>`, or it gets 401."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        """Wrap `app`; the token is compared in constant time."""
        self.app, self.token = app, token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass authorised requests (and the lifespan) through; answer the rest 401."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from starlette.datastructures import Headers
        from starlette.responses import JSONResponse

        scheme, _, given = Headers(scope=scope).get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token):
            await self.app(scope, receive, send)
            return
        body = {"error": "invalid_token", "error_description": "send Authorization: Bearer <SPEEDRUN_MCP_TOKEN>"}
        headers = {"WWW-Authenticate": 'Bearer realm="speed-run", error="invalid_token"'}
        await JSONResponse(body, status_code=401, headers=headers)(scope, receive, send)


class _Scrub(logging.Filter):
    """Keeps the bearer token out of every log line (settings' redaction knows the keys, not this token)."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if self.token in text:
            record.msg, record.args = text.replace(self.token, "***"), ()
        return True


def build_app(server: Any, host: str, token: str | None, extra_hosts: list[str]) -> ASGIApp:
    """The ASGI app: the SDK's streamable HTTP transport at /mcp, behind the token when one is set."""
    app: ASGIApp = server.streamable_http_app(
        streamable_http_path=PATH, transport_security=transport_security(host, extra_hosts), host=host
    )
    return BearerAuth(app, token) if token else app


def serve(server: Any, host: str, port: int, token: str | None, extra_hosts: list[str]) -> None:
    """Serve until interrupted; the binding is checked first (InputError says how to fix it)."""
    import uvicorn

    check_binding(host, port, token)
    if token:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_Scrub(token))
    app = build_app(server, host, token, extra_hosts)
    where = f"http://{_bracket(host)}:{port}{PATH}"
    log.info("serving MCP over streamable HTTP at %s (%s)", where, "bearer token required" if token else "loopback")
    uvicorn.run(app, host=host.strip("[]"), port=port, log_level="warning", lifespan="on")
