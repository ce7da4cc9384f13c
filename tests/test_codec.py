"""Encrypted payloads: the codec itself, a real failover with it on the dev server (its raw
history read by a client without the codec), and the codec server the Web UI calls."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import pytest_asyncio
import yaml
from google.protobuf.json_format import MessageToDict, ParseDict
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.failure.v1 import Failure
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError

from failover import names
from failover.alarms import lambda_forwarder
from failover.cli.codec import CodecServerConfigError, build_service
from failover.client.operations import failover_state
from failover.client.temporal import (
    UI_CODEC_ENDPOINT_ENV,
    EmbeddedTemporalServer,
    TemporalEndpoint,
    connect,
    temporal_cli_path,
)
from failover.codec import (
    ENCRYPTED_ENCODING,
    KEY_ID_KEY,
    KEYS_FILE_ENV,
    KEYS_SECRET_ENV,
    EncryptionCodec,
    PayloadDecryptError,
    PayloadKeyError,
    encrypted_data_converter,
    encrypts,
    parse_payload_keys,
    payload_keys_from_env,
    read_secret_string,
)
from failover.models import FailoverResult, FailoverStatus, Outcome
from failover.visibility import SUMMARY
from sandbox.net import free_port
from sandbox.stack import PRIMARY_VALUE, RECORD_NAME, STANDBY_VALUE
from sandbox.waiting import wait_for
from tests.conftest import Stack
from tests.test_lambda_forwarder import alarm_action_invocation
from tests.test_receiver import ALARM, receiver_config
from worker import build_worker

FAILOVER = str(Path(sys.executable).parent / "failover")
OLD_KEY, NEW_KEY = os.urandom(32), os.urandom(32)
TOKEN = base64.b32encode(os.urandom(25)).decode().rstrip("=").lower()  # 40 URL-safe chars
WRONG_TOKEN = TOKEN[:-1] + ("y" if TOKEN.endswith("x") else "x")  # one character off, never equal
UI_ORIGIN = "http://127.0.0.1:8233"


def keys_text(*keys: tuple[str, bytes]) -> str:
    lines = ["# payload keys; the first encrypts"]
    lines += [f"{key_id}: {base64.b64encode(key).decode()}" for key_id, key in keys]
    return "\n".join(lines) + "\n"


def codec_of(*keys: tuple[str, bytes]) -> EncryptionCodec:
    return EncryptionCodec(parse_payload_keys(keys_text(*keys), source="test"))


def plain_payload(value: Any) -> Payload:
    return pydantic_data_converter.payload_converter.to_payloads([value])[0]


# --- the codec ------------------------------------------------------------------------------


async def test_a_payload_roundtrips_encrypted_under_the_current_key() -> None:
    codec = codec_of(("k1", OLD_KEY))
    payload = plain_payload({"node": "http://es-primary.shop.internal:9200"})
    [sealed] = await codec.encode([payload])
    assert sealed.metadata["encoding"] == ENCRYPTED_ENCODING
    assert sealed.metadata[KEY_ID_KEY] == b"k1"
    assert b"es-primary" not in sealed.SerializeToString()
    assert await codec.decode([sealed]) == [payload]
    # A fresh nonce each time: the same payload never encrypts to the same bytes.
    [again] = await codec.encode([payload])
    assert again.data[:12] != sealed.data[:12] and again.data != sealed.data


async def test_rotation_new_key_encrypts_old_key_still_decrypts() -> None:
    before = codec_of(("k1", OLD_KEY))
    after = codec_of(("k2", NEW_KEY), ("k1", OLD_KEY))
    [old] = await before.encode([plain_payload("written before the rotation")])
    [new] = await after.encode([plain_payload("written after")])
    assert new.metadata[KEY_ID_KEY] == b"k2"
    assert await after.decode([old]) == [plain_payload("written before the rotation")]
    with pytest.raises(PayloadDecryptError, match=r"key 'k2', which is not among .*\(k1\)"):
        await before.decode([new])


async def test_tampered_or_relabelled_ciphertext_is_rejected() -> None:
    codec = codec_of(("k1", OLD_KEY), ("k0", NEW_KEY))
    [sealed] = await codec.encode([plain_payload("switch to standby")])
    flipped = Payload()
    flipped.CopyFrom(sealed)
    flipped.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(PayloadDecryptError, match="'k1' does not authenticate"):
        await codec.decode([flipped])
    relabelled = Payload()
    relabelled.CopyFrom(sealed)
    relabelled.metadata[KEY_ID_KEY] = b"k0"  # a key that exists, but not the one used
    with pytest.raises(PayloadDecryptError, match="'k0' does not authenticate"):
        await codec.decode([relabelled])


async def test_payloads_written_before_encryption_still_decode() -> None:
    payload = plain_payload({"history": "from before the codec"})
    assert await codec_of(("k1", OLD_KEY)).decode([payload]) == [payload]


async def test_failure_messages_travel_encrypted() -> None:
    """Failure messages quote node URLs: with the codec they move into the encoded
    attributes, and come back whole."""
    converter = encrypted_data_converter(codec_of(("k1", OLD_KEY)))
    failure = Failure()
    await converter.encode_failure(
        ApplicationError("preflight failed: standby node http://es-standby.shop.internal:9200"),
        failure,
    )
    assert failure.message == "Encoded failure"
    assert b"es-standby" not in failure.SerializeToString()
    back = await converter.decode_failure(failure)
    assert "http://es-standby.shop.internal:9200" in str(back)


def test_key_file_errors_name_the_variable_the_line_and_the_key_id(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text(
        "\n".join(
            [
                f"short: {base64.b64encode(b'x' * 16).decode()}",
                "nobase64: not*base64!",
                "no colon here",
                f"bad id!: {base64.b64encode(OLD_KEY).decode()}",
                f"k1: {base64.b64encode(OLD_KEY).decode()}",
                f"k1: {base64.b64encode(NEW_KEY).decode()}",
            ]
        )
    )
    with pytest.raises(PayloadKeyError) as caught:
        payload_keys_from_env({KEYS_FILE_ENV: str(path)})
    source = f"{KEYS_FILE_ENV} ({path})"
    assert caught.value.errors == [
        f"{source} line 1: key 'short' is 16 bytes; payload keys are 32 bytes (AES-256): "
        "make one with `openssl rand -base64 32`",
        f"{source} line 2: key 'nobase64' is not base64 (make one with `openssl rand -base64 32`)",
        f"{source} line 3: expected `key-id: base64-key`",
        f"{source} line 4: key id 'bad id!' must be 1-64 letters, digits, '.', '_' or '-', "
        "starting with a letter or digit",
        f"{source} line 6: key id 'k1' is listed twice",
    ]
    assert base64.b64encode(OLD_KEY).decode() not in str(caught.value)  # never the key
    with pytest.raises(PayloadKeyError, match="no keys"):
        parse_payload_keys("# nothing yet\n", source="x")
    with pytest.raises(PayloadKeyError, match=f"{KEYS_FILE_ENV}: cannot read"):
        payload_keys_from_env({KEYS_FILE_ENV: str(tmp_path / "missing")})
    with pytest.raises(PayloadKeyError, match="not both"):
        payload_keys_from_env({KEYS_FILE_ENV: str(path), KEYS_SECRET_ENV: "s"})
    assert payload_keys_from_env({}) is None


def test_keys_from_secrets_manager(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_url)
    secret_id = f"failover/payload-keys-{os.urandom(4).hex()}"
    boto3.client("secretsmanager").create_secret(
        Name=secret_id, SecretString=keys_text(("k2", NEW_KEY), ("k1", OLD_KEY))
    )
    keys = payload_keys_from_env({KEYS_SECRET_ENV: secret_id}, read_secret_string)
    assert keys is not None and keys.current == "k2" and keys.ids == ["k2", "k1"]
    assert base64.b64encode(NEW_KEY).decode() not in repr(keys)
    with pytest.raises(PayloadKeyError, match=f"{KEYS_SECRET_ENV}: .*'nope'.*ResourceNotFound"):
        payload_keys_from_env({KEYS_SECRET_ENV: "nope"}, read_secret_string)
    # The codec server's token, from a secret too.
    token_id = f"failover/codec-token-{os.urandom(4).hex()}"
    boto3.client("secretsmanager").create_secret(Name=token_id, SecretString=TOKEN + "\n")
    service = build_service(
        web_ui_origins=[UI_ORIGIN], token_secret_id=token_id, env={KEYS_SECRET_ENV: secret_id}
    )
    assert service.token == TOKEN.encode() and service.codec.keys.current == "k2"


# --- a real failover with the codec on -------------------------------------------------------


def raw_bytes(history: Any) -> bytes:
    return b"".join(event.SerializeToString() for event in history.events)


async def test_an_encrypted_failover_leaves_no_hostname_on_the_server(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, codec_server: CodecServer
) -> None:
    """The Lambda forwarder starts a failover from an alarm whose reason names a host; a
    worker with the codec runs it. The server's raw history (read by the suite's client,
    which has no codec) holds none of the cluster's hostnames or node URLs; the CLI's client
    reads the result; after a key rotation a second worker replays the run with the new
    key current; the `temporal` CLI shows it in the clear through the codec server."""
    keys_file = tmp_path / "payload-keys.txt"
    keys_file.write_text(keys_text(("k1", OLD_KEY)))
    monkeypatch.setenv(KEYS_FILE_ENV, str(keys_file))
    address = stack.client.service_client.config.target_host
    cluster = stack.cluster
    nodes = [str(url) for url in (*cluster.primary.nodes, *cluster.standby.nodes)]
    hidden = [PRIMARY_VALUE, STANDBY_VALUE, RECORD_NAME.rstrip("."), *nodes]
    queue = f"{stack.task_queue}-encrypted"
    raw = receiver_config(stack.config, ca=None, monitors=False).model_dump(mode="json")
    raw["task_queue"] = queue
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("FAILOVER_CONFIG", str(tmp_path / "config.yaml"))
    monkeypatch.setenv("TEMPORAL_ADDRESS", address)
    monkeypatch.delenv("TEMPORAL_API_KEY_SECRET", raising=False)
    alarm = alarm_action_invocation(ALARM)
    alarm["alarmData"]["state"]["reason"] = f"{PRIMARY_VALUE}: cluster status red"

    cli = await connect(TemporalEndpoint(address=address))
    assert encrypts(cli.data_converter)
    workflow_id = names.failover_workflow_id(cluster.name)
    lambda_forwarder._config.cache_clear()
    lambda_forwarder._data_converter.cache_clear()
    worker_client = await connect(TemporalEndpoint(address=address))
    try:
        async with build_worker(worker_client, aws=stack.config.aws, task_queue=queue):
            answer = await asyncio.to_thread(lambda_forwarder.handler, alarm, None)
            assert workflow_id in answer["forwarded"][0]
            await cli.get_workflow_handle(workflow_id).result()
            state = await failover_state(cli, cluster.name)  # what `failover status` shows
    finally:
        lambda_forwarder._config.cache_clear()
        lambda_forwarder._data_converter.cache_clear()
    result = FailoverResult.model_validate(state["result"])
    assert result.trigger == "alarm" and result.result == Outcome.NOT_CONFIRMED

    history = await stack.client.get_workflow_handle(workflow_id).fetch_history()
    stored = raw_bytes(history)
    for name in hidden:
        assert name.encode() not in stored, f"{name} is in the clear in the history"
    started = history.events[0].workflow_execution_started_event_attributes.input.payloads[0]
    assert started.metadata[KEY_ID_KEY] == b"k1"
    codec = cli.data_converter.payload_codec
    assert isinstance(codec, EncryptionCodec)
    assert PRIMARY_VALUE.encode() in codec.decrypt(started).data  # there, but sealed

    plain_description = await stack.client.get_workflow_handle(workflow_id).describe()
    listed = plain_description.typed_search_attributes.get(SUMMARY)
    assert listed == f"{cluster.name}: primary ⇄ standby (alarm)"  # no reason, no host
    summary = await (await cli.get_workflow_handle(workflow_id).describe()).static_summary()
    assert summary is not None and PRIMARY_VALUE in summary  # the full one, encrypted

    # Rotation: k2 now encrypts, k1 still decrypts. A second worker replays the closed run
    # (a query) from the k1 history; its answer is encrypted with k2.
    keys_file.write_text(keys_text(("k2", NEW_KEY), ("k1", OLD_KEY)))
    rotated = await connect(TemporalEndpoint(address=address))
    async with build_worker(rotated, aws=stack.config.aws, task_queue=queue):
        status = await rotated.get_workflow_handle(workflow_id).query(
            names.STATUS_QUERY, result_type=FailoverStatus
        )
        assert status.cluster == cluster.name and status.steps
        with pytest.raises(PayloadDecryptError, match="'k2'"):
            await cli.get_workflow_handle(workflow_id).query(names.STATUS_QUERY)

    shown = await temporal_show(address, workflow_id)
    assert PRIMARY_VALUE not in shown
    assert base64.b64encode(ENCRYPTED_ENCODING).decode() in shown  # the metadata, as JSON has it
    decoded = await temporal_show(
        address,
        workflow_id,
        "--codec-endpoint",
        codec_server.url,
        "--codec-auth",
        f"Bearer {TOKEN}",
    )
    assert base64.b64encode(ENCRYPTED_ENCODING).decode() not in decoded
    plain = payload_texts(json.loads(decoded))
    assert PRIMARY_VALUE in plain and nodes[0] in plain


def payload_texts(value: Any) -> str:
    """Every payload's data in `temporal workflow show -o json` output, as text."""
    if isinstance(value, dict):
        if "metadata" in value and isinstance(value.get("data"), str):
            return base64.b64decode(value["data"]).decode(errors="replace")
        return "\n".join(payload_texts(v) for v in value.values())
    if isinstance(value, list):
        return "\n".join(payload_texts(v) for v in value)
    return ""


async def temporal_show(address: str, workflow_id: str, *codec: str) -> str:
    """`temporal workflow show` as an operator runs it."""
    process = await asyncio.create_subprocess_exec(
        temporal_cli_path(),
        "workflow",
        "show",
        "--address",
        address,
        "-w",
        workflow_id,
        "-o",
        "json",
        *codec,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


# --- the codec server -----------------------------------------------------------------------


@dataclass
class CodecServer:
    url: str
    process: asyncio.subprocess.Process


@pytest_asyncio.fixture(scope="module")
async def codec_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[CodecServer]:
    """`failover codec-server` as a user starts it, with both keys and the Web UI's origin."""
    keys_file = tmp_path_factory.mktemp("codec") / "payload-keys.txt"
    keys_file.write_text(keys_text(("k2", NEW_KEY), ("k1", OLD_KEY)))
    env = os.environ | {KEYS_FILE_ENV: str(keys_file), "FAILOVER_CODEC_TOKEN": TOKEN}
    env.pop(KEYS_SECRET_ENV, None)
    process = await asyncio.create_subprocess_exec(
        FAILOVER,
        "codec-server",
        "--port",
        "0",
        "--web-ui-origin",
        UI_ORIGIN,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    first = await asyncio.wait_for(process.stdout.readline(), 30)
    assert first.startswith(b"codec server on http://"), first
    url = first.split()[3].decode()
    try:
        yield CodecServer(url=url, process=process)
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 10)
    assert code == 0, "the codec server did not stop cleanly on SIGTERM"


def ui_body(*payloads: Payload) -> dict[str, Any]:
    """What the Web UI posts: payloads in protobuf JSON (base64 data and metadata)."""
    return MessageToDict(Payloads(payloads=payloads))


async def test_the_codec_server_decodes_what_the_web_ui_sends(codec_server: CodecServer) -> None:
    secret = {"nodes": ["http://es-primary.shop.internal:9200"]}
    [sealed] = await codec_of(("k1", OLD_KEY)).encode([plain_payload(secret)])
    headers = {"Content-Type": "application/json", "X-Namespace": "default", "Origin": UI_ORIGIN}
    async with httpx.AsyncClient(timeout=10) as http:
        # The Web UI: the token as the endpoint's last segment, the browser's Origin.
        answer = await http.post(
            f"{codec_server.url}/{TOKEN}/decode", json=ui_body(sealed), headers=headers
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["access-control-allow-origin"] == UI_ORIGIN
        [back] = ParseDict(answer.json(), Payloads()).payloads
        assert pydantic_data_converter.payload_converter.from_payloads([back])[0] == secret
        # The temporal CLI: the bearer token; /encode seals with the current key (k2).
        answer = await http.post(
            f"{codec_server.url}/encode",
            json=ui_body(plain_payload(secret)),
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        [encoded] = ParseDict(answer.json(), Payloads()).payloads
        assert encoded.metadata[KEY_ID_KEY] == b"k2"
        assert await codec_of(("k2", NEW_KEY)).decode([encoded]) == [plain_payload(secret)]
        empty = await http.post(f"{codec_server.url}/{TOKEN}/decode", json={"payloads": []})
        assert empty.json() == {"payloads": []}
        garbage = await http.post(f"{codec_server.url}/{TOKEN}/decode", content=b"\xff{")
        assert garbage.status_code == 400

        for wrong in (
            {"url": f"{codec_server.url}/decode", "headers": headers},
            {"url": f"{codec_server.url}/not-the-token/decode", "headers": headers},
            {
                "url": f"{codec_server.url}/decode",
                "headers": {**headers, "Authorization": f"Bearer {WRONG_TOKEN}"},
            },
        ):
            refused = await http.post(json=ui_body(sealed), **wrong)  # type: ignore[arg-type]
            assert refused.status_code == 401, wrong
            assert "es-primary" not in refused.text

        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
        }
        allowed = await http.options(
            f"{codec_server.url}/decode", headers={**preflight, "Origin": UI_ORIGIN}
        )
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == UI_ORIGIN
        offered = allowed.headers["access-control-allow-headers"].lower()
        assert {"authorization", "content-type", "x-namespace"} <= set(offered.split(", "))
        other = await http.options(
            f"{codec_server.url}/decode", headers={**preflight, "Origin": "http://evil.example"}
        )
        assert other.status_code != 200
        assert "access-control-allow-origin" not in other.headers


async def test_a_payload_the_server_cannot_decrypt_comes_back_as_it_was(
    codec_server: CodecServer,
) -> None:
    """An unknown key id fails that payload only: the UI still shows the rest of the page."""
    [unknown] = await codec_of(("k9", os.urandom(32))).encode([plain_payload("k9's")])
    [known] = await codec_of(("k1", OLD_KEY)).encode([plain_payload("k1's")])
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(f"{codec_server.url}/{TOKEN}/decode", json=ui_body(unknown, known))
    first, second = ParseDict(answer.json(), Payloads()).payloads
    assert first == unknown
    assert pydantic_data_converter.payload_converter.from_payloads([second]) == ["k1's"]


def test_the_codec_server_checks_its_settings_before_it_listens(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(keys_text(("k1", OLD_KEY)))
    with pytest.raises(CodecServerConfigError) as caught:
        build_service(
            web_ui_origins=["http://127.0.0.1:8233/", "127.0.0.1:8233"],
            token_secret_id=None,
            env={KEYS_FILE_ENV: str(keys_file), "FAILOVER_CODEC_TOKEN": "short"},
        )
    assert caught.value.errors == [
        "--web-ui-origin 'http://127.0.0.1:8233/': an origin has no path, "
        "e.g. http://127.0.0.1:8233",
        "--web-ui-origin '127.0.0.1:8233': expected http(s)://host[:port]",
        "FAILOVER_CODEC_TOKEN: the token is 5 characters; use at least 32 (`openssl rand -hex 32`)",
    ]
    done = subprocess.run(
        [FAILOVER, "codec-server", "--port", "0"],
        env={k: v for k, v in os.environ.items() if not k.startswith("FAILOVER_")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "no payload keys" in done.stderr and "FAILOVER_CODEC_TOKEN" in done.stderr


def test_clients_made_without_keys_do_not_encrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEYS_FILE_ENV, raising=False)
    monkeypatch.delenv(KEYS_SECRET_ENV, raising=False)
    lambda_forwarder._data_converter.cache_clear()
    try:
        assert lambda_forwarder._data_converter() is pydantic_data_converter
    finally:
        lambda_forwarder._data_converter.cache_clear()
    assert not encrypts(pydantic_data_converter)


async def test_the_embedded_web_ui_is_told_its_codec_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python worker.py` without TEMPORAL_ADDRESS starts the dev server; its Web UI then
    calls the codec server the environment names, token and all."""
    endpoint = f"http://127.0.0.1:8081/{TOKEN}"
    monkeypatch.setenv(UI_CODEC_ENDPOINT_ENV, endpoint)
    server = EmbeddedTemporalServer(tmp_path, port=free_port(), ui_port=free_port())
    await server.start()
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            settings: dict[str, Any] = {}

            async def answered() -> bool:
                with contextlib.suppress(httpx.HTTPError):
                    answer = await http.get(f"{server.endpoint.ui_url}/api/v1/settings")
                    settings.update(answer.json() if answer.status_code == 200 else {})
                return bool(settings)

            await wait_for(answered, what="the Web UI's settings", timeout_s=20)
    finally:
        server.stop()
    assert settings["Codec"]["Endpoint"] == endpoint
