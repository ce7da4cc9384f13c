"""`failover codec-server`: encrypted payloads, readable in the Temporal Web UI and CLI.

Temporal's codec server protocol: `POST …/decode` and `POST …/encode` with a JSON body
`{"payloads": [...]}` (each payload in protobuf JSON: base64 `data` and `metadata`), the
answer in the same form. Only the last path segment names the operation, so the server can
sit under any prefix. It decrypts with the same payload keys as the workers
(FAILOVER_PAYLOAD_KEYS_FILE or FAILOVER_PAYLOAD_KEYS_SECRET_ID), for whoever holds its
token: `Authorization: Bearer <token>` (the `temporal` CLI's `--codec-auth`), or the token
as the segment before `decode`/`encode` (`https://codec.example/<token>/decode`): the
Web UI cannot send a header of its own, only the user's login token. CORS lets the
configured Web UI origins (and no others) call it from the browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import typer

from failover.cli.common import app, err, out
from failover.process import exit_now, serve_until_started, stop_on_signals

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from temporalio.api.common.v1 import Payload

    from failover.codec import EncryptionCodec

log = logging.getLogger("failover.codec_server")

TOKEN_ENV = "FAILOVER_CODEC_TOKEN"
TOKEN_SECRET_ENV = "FAILOVER_CODEC_TOKEN_SECRET_ID"
MIN_TOKEN_CHARS = 32
# A history page's payloads; Temporal refuses a single payload above 2 MB anyway.
MAX_BODY_BYTES = 8 * 1024 * 1024
ALLOWED_HEADERS = ("Authorization", "Content-Type", "X-Namespace")
OPERATIONS = ("encode", "decode")
DEFAULT_PORT = 8081


class CodecServerConfigError(RuntimeError):
    """The codec server cannot start as configured; every problem found."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("; ".join(errors))


def token_problem(token: str, source: str) -> str | None:
    """Why this token cannot guard the keys, or None. It may travel in a URL: URL-safe."""
    if len(token) < MIN_TOKEN_CHARS:
        return (
            f"{source}: the token is {len(token)} characters; use at least {MIN_TOKEN_CHARS} "
            "(`openssl rand -hex 32`)"
        )
    if any(not (c.isascii() and (c.isalnum() or c in "-._~")) for c in token):
        return f"{source}: the token may hold only letters, digits and - . _ ~"
    return None


def origin_problem(origin: str) -> str | None:
    """An origin is scheme://host[:port] exactly as the browser sends it, or None."""
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"--web-ui-origin {origin!r}: expected http(s)://host[:port]"
    if parts.path or parts.query or parts.fragment or "@" in parts.netloc:
        return f"--web-ui-origin {origin!r}: an origin has no path, e.g. {parts.scheme}://{parts.netloc}"
    return None


def read_token(
    env: Mapping[str, str], secret_id: str | None, read_secret: Callable[[str], str]
) -> bytes:
    """The bearer token: from the secret when one is named, else from FAILOVER_CODEC_TOKEN."""
    if secret_id:
        from botocore.exceptions import BotoCoreError, ClientError

        source = f"secret {secret_id!r}"
        try:
            token = read_secret(secret_id).strip()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise CodecServerConfigError([f"cannot read the token {source}: {code}"]) from None
        except (BotoCoreError, ValueError) as exc:
            raise CodecServerConfigError([f"cannot read the token {source}: {exc}"]) from None
    else:
        source = TOKEN_ENV
        token = env.get(TOKEN_ENV, "").strip()
        if not token:
            raise CodecServerConfigError(
                [f"set {TOKEN_ENV} to the token, or name its secret with --token-secret-id"]
            )
    problem = token_problem(token, source)
    if problem is not None:
        raise CodecServerConfigError([problem])
    return token.encode()


def presented_token(request: Request) -> list[bytes]:
    """What the request offers as the token: its bearer credentials, and the path segment
    before the operation."""
    offered: list[bytes] = []
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        offered.append(credentials.strip().encode())
    segments = [s for s in request.url.path.split("/") if s]
    if len(segments) >= 2:
        offered.append(segments[-2].encode())
    return offered


def authorized(request: Request, token: bytes) -> bool:
    # Every offer compared in full, in constant time.
    matches = [hmac.compare_digest(given, token) for given in presented_token(request)]
    return any(matches)


class CodecService:
    """The codec behind the protocol, the token and the CORS origins."""

    def __init__(
        self, codec: EncryptionCodec, *, token: bytes, web_ui_origins: Sequence[str]
    ) -> None:
        self.codec = codec
        self.token = token
        self.web_ui_origins = list(web_ui_origins)

    def app(self) -> Starlette:
        from starlette.applications import Starlette
        from starlette.middleware import Middleware
        from starlette.middleware.cors import CORSMiddleware
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def health(_: Request) -> JSONResponse:
            return JSONResponse({"status": "ok"})

        return Starlette(
            routes=[
                Route("/healthz", health, methods=["GET"]),
                Route("/{path:path}", self.handle, methods=["POST"]),
            ],
            middleware=[
                # Preflights are answered here, before the token is asked for: a browser
                # sends none with them. An origin not listed gets no CORS headers.
                Middleware(
                    CORSMiddleware,
                    allow_origins=self.web_ui_origins,
                    allow_methods=["POST"],
                    allow_headers=list(ALLOWED_HEADERS),
                    max_age=600,
                )
            ],
        )

    async def handle(self, request: Request) -> Response:
        from google.protobuf.json_format import MessageToDict, Parse, ParseError
        from starlette.responses import JSONResponse
        from temporalio.api.common.v1 import Payloads

        peer = request.client.host if request.client else "unknown"
        operation = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        if operation not in OPERATIONS:
            return JSONResponse({"error": "not found: POST …/encode or …/decode"}, 404)
        if not authorized(request, self.token):
            log.warning("codec %s refused: peer=%s: no valid token", operation, peer)
            return JSONResponse(
                {"error": "unauthorized: a valid token is needed"},
                401,
                headers={"WWW-Authenticate": 'Bearer realm="failover-codec"'},
            )
        body = await _read_body(request)
        if body is None:
            return JSONResponse({"error": f"body larger than {MAX_BODY_BYTES} bytes"}, 413)
        try:
            payloads = Parse(body, Payloads(), ignore_unknown_fields=True)
        except (ParseError, ValueError) as exc:  # ValueError: not UTF-8
            return JSONResponse({"error": f"not a Payloads JSON object: {exc}"}, 400)
        if operation == "encode":
            done = [self.codec.encrypt(p) for p in payloads.payloads]
        else:
            done = [self._decrypt_or_keep(p, peer) for p in payloads.payloads]
        # Built by hand so that `payloads` is there even when empty.
        return JSONResponse({"payloads": [MessageToDict(payload) for payload in done]})

    def _decrypt_or_keep(self, payload: Payload, peer: str) -> Payload:
        """A payload that cannot be decrypted is answered as it came (the UI shows it
        encrypted) rather than failing the whole page."""
        from failover.codec import PayloadDecryptError

        try:
            return self.codec.decrypt(payload)
        except PayloadDecryptError as exc:
            log.warning("codec decode: peer=%s: %s", peer, exc)
            return payload


async def _read_body(request: Request) -> bytes | None:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return None
    return bytes(body)


def build_service(
    *,
    web_ui_origins: Sequence[str],
    token_secret_id: str | None,
    env: Mapping[str, str] = os.environ,
    read_secret: Callable[[str], str] | None = None,
) -> CodecService:
    """Everything checked before anything listens; every problem reported at once."""
    from failover.codec import PayloadKeyError, payload_codec_from_env, read_secret_string

    errors = [p for p in map(origin_problem, web_ui_origins) if p is not None]
    codec = token = None
    try:
        codec = payload_codec_from_env(env)
        if codec is None:
            errors.append(
                "no payload keys: set FAILOVER_PAYLOAD_KEYS_FILE or "
                "FAILOVER_PAYLOAD_KEYS_SECRET_ID, as for the workers"
            )
    except PayloadKeyError as exc:
        errors += exc.errors
    try:
        token = read_token(env, token_secret_id, read_secret or read_secret_string)
    except CodecServerConfigError as exc:
        errors += exc.errors
    if errors or codec is None or token is None:
        raise CodecServerConfigError(errors)
    return CodecService(codec, token=token, web_ui_origins=web_ui_origins)


async def serve_codec(
    service: CodecService,
    *,
    host: str,
    port: int,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serves until SIGINT/SIGTERM (or `stop` is set)."""
    import uvicorn

    class Server(uvicorn.Server):
        """Without signal handlers of its own: `stop` decides when it ends."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    if stop is None:
        stop = stop_on_signals()
    server = Server(
        uvicorn.Config(
            service.app(),
            host=host,
            port=port,
            log_level="warning",
            # The path may hold the token: no access log.
            access_log=False,
            lifespan="off",
            server_header=False,
            limit_concurrency=200,
            ssl_certfile=str(tls_cert) if tls_cert else None,
            ssl_keyfile=str(tls_key) if tls_key else None,
        )
    )
    serving = await serve_until_started(server, "codec server")
    bound = server.servers[0].sockets[0].getsockname()[1]
    scheme = "https" if tls_cert else "http"
    base = f"{scheme}://{host}:{bound}"
    out.print(f"codec server on {base} (POST /decode, /encode; Bearer token)")
    out.print(f"Web UI codec endpoint: {base}/<token>")
    if service.web_ui_origins:
        out.print(f"Web UI origins allowed: {', '.join(service.web_ui_origins)}")
    else:
        out.print("no --web-ui-origin: only clients outside a browser (the temporal CLI)")
    sys.stdout.flush()
    await stop.wait()
    server.should_exit = True
    await serving


@app.command("codec-server")
def codec_server(
    web_ui_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--web-ui-origin",
            metavar="ORIGIN",
            envvar="FAILOVER_CODEC_WEB_UI_ORIGIN",
            help="origin of a Web UI allowed to call it from the browser, e.g. "
            "http://127.0.0.1:8233 (repeat for more)",
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on (0: any free one)")] = DEFAULT_PORT,
    token_secret_id: Annotated[
        str | None,
        typer.Option(
            envvar=TOKEN_SECRET_ENV,
            help=f"Secrets Manager secret holding the token (else the {TOKEN_ENV} variable)",
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option(help="serve HTTPS with this certificate (PEM)")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="the certificate's key (PEM)")] = None,
) -> None:
    """Decrypt payloads for the Temporal Web UI and CLI (the codec server protocol)."""
    if bool(tls_cert) != bool(tls_key):
        err.print("error: give both --tls-cert and --tls-key, or neither")
        exit_now(2)
    try:
        service = build_service(web_ui_origins=web_ui_origin or [], token_secret_id=token_secret_id)
    except CodecServerConfigError as exc:
        for line in exc.errors:
            err.print(f"error: {line}")
        exit_now(2)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve_codec(service, host=host, port=port, tls_cert=tls_cert, tls_key=tls_key))
    except (OSError, RuntimeError) as exc:
        err.print(f"error: {exc}")
        exit_now(2)
    exit_now(0)
