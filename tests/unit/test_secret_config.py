"""Naming secrets in the config: an environment variable (`<name>_env`) or an AWS Secrets
Manager secret (`<name>_secret`), exactly one where a secret is required, checked up front;
and what a reference's json_key reads out of the secret."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from failover.config import (
    AwsSettings,
    ConfigError,
    EventBridgeSettings,
    NotifySettings,
    RedisCache,
    SecretRef,
    load_config,
    parse_config,
)
from failover.secrets import SecretConfigError, secret_field, secret_region
from tests.unit.test_config import _minimal

CONFIGS = Path(__file__).parent.parent / "configs"
SECRET = {"secret_id": "search-failover/catalog-a"}
ARN = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:search-failover/es-AbCdEf"


def config_with_auth(auth: dict[str, Any], **extra: Any) -> dict[str, Any]:
    cluster = _minimal()
    cluster["primary"]["auth"] = auth
    return {"clusters": [cluster | extra]}


def errors_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return caught.value.errors


BASIC_PATH = "clusters[0].primary.auth.basic.password_env"


def test_todays_env_configs_load_unchanged() -> None:
    config = load_config(CONFIGS / "valid.yaml")
    auth = config.cluster("catalog-search").primary.auth
    assert auth.type == "basic"
    assert auth.password_env == "ES_PASSWORD"
    assert auth.password_secret is None


def test_a_password_from_a_secret_is_accepted() -> None:
    secret = {**SECRET, "json_key": "password", "region": "eu-west-1"}
    config = parse_config(
        config_with_auth({"type": "basic", "username": "m", "password_secret": secret})
    )
    auth = config.clusters[0].primary.auth
    assert auth.type == "basic"
    assert auth.password_env is None
    assert auth.password_secret == SecretRef(**secret)


def test_both_sources_are_refused() -> None:
    auth = {
        "type": "basic",
        "username": "m",
        "password_env": "ES_PASSWORD",
        "password_secret": SECRET,
    }
    assert errors_of(config_with_auth(auth)) == [
        f"{BASIC_PATH}: set only one of password_env or password_secret, not both"
    ]


def test_neither_source_is_refused_where_it_always_was() -> None:
    assert errors_of(config_with_auth({"type": "basic", "username": "m"})) == [
        f"{BASIC_PATH}: set password_env (the environment variable holding it) or a valid "
        "password_secret (its AWS Secrets Manager secret)"
    ]


def test_a_bad_reference_is_reported_with_its_own_path() -> None:
    auth = {"type": "basic", "username": "m", "password_secret": {"json_key": "password"}}
    errors = errors_of(config_with_auth(auth))
    assert errors[0] == "clusters[0].primary.auth.basic.password_secret.secret_id: Field required"


def test_a_typo_inside_a_reference_is_not_taken_for_a_secret_value() -> None:
    """'key' is one of the words that mark a secret value, but inside a reference it is a
    typo of json_key; the reference is then not valid, which the _env path says too."""
    auth = {"type": "basic", "username": "m", "password_secret": {**SECRET, "key": "password"}}
    typo, missing = errors_of(config_with_auth(auth))
    assert typo == (
        "clusters[0].primary.auth.basic.password_secret.key: Extra inputs are not permitted"
    )
    assert missing.startswith(f"{BASIC_PATH}: set password_env")


def test_a_secret_value_in_the_file_points_at_both_sources() -> None:
    auth = {"type": "basic", "username": "m", "password_env": "P", "password": "hunter2"}
    [error] = errors_of(config_with_auth(auth))
    assert error.startswith("clusters[0].primary.auth.basic.password: secret values do not")
    assert "password_env" in error and "password_secret" in error
    assert "hunter2" not in error


@pytest.mark.parametrize(
    ("secret_id", "region", "problem"),
    [
        (ARN, "eu-west-1", "region eu-west-1 differs from the Region in the ARN (eu-central-1)"),
        (
            "arn:aws:ssm:eu-west-1:123456789012:parameter/x",
            None,
            "is not a Secrets Manager secret ARN",
        ),
    ],
)
def test_an_arn_must_be_a_secrets_arn_in_its_region(
    secret_id: str, region: str | None, problem: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        SecretRef(secret_id=secret_id, region=region)


def test_the_region_comes_from_the_reference_then_the_arn_then_the_config() -> None:
    assert secret_region(SecretRef(secret_id=ARN), "us-east-1") == "eu-central-1"
    assert secret_region(SecretRef(secret_id="x", region="eu-west-1"), "us-east-1") == "eu-west-1"
    assert secret_region(SecretRef(secret_id="x"), "us-east-1") == "us-east-1"


def test_eventbridge_needs_exactly_one_source() -> None:
    assert EventBridgeSettings(secret_secret=SecretRef(**SECRET)).secret_env is None
    with pytest.raises(ValueError, match=r"set secret_env .* or a valid secret_secret"):
        EventBridgeSettings()
    with pytest.raises(ValueError, match="only one of secret_env or secret_secret"):
        EventBridgeSettings(secret_env="EB", secret_secret=SecretRef(**SECRET))


@pytest.mark.parametrize(
    ("alertmanager", "problem"),
    [
        ({"bearer_token_secret": SECRET}, None),
        ({"basic_username": "am", "basic_password_secret": SECRET}, None),
        ({"bearer_token_env": "T", "bearer_token_secret": SECRET}, "only one of bearer_token_env"),
        (
            {"basic_username": "am", "basic_password_env": "P", "basic_password_secret": SECRET},
            "only one of basic_password_env",
        ),
        ({"basic_password_secret": SECRET}, "needs both basic_username"),
        ({"basic_username": "am", "bearer_token_secret": SECRET}, "needs both basic_username"),
        (
            {"bearer_token_secret": SECRET, "basic_username": "am", "basic_password_env": "P"},
            "exactly one of bearer_token_env",
        ),
    ],
)
def test_alertmanager_secret_sources(alertmanager: dict[str, Any], problem: str | None) -> None:
    raw = {**config_with_auth({"type": "none"}), "receiver": {"alertmanager": alertmanager}}
    if problem is None:
        assert parse_config(raw).receiver is not None
        return
    [error] = errors_of(raw)
    assert error.startswith("receiver.alertmanager")
    assert problem in error


def test_optional_secrets_take_at_most_one_source() -> None:
    assert RedisCache(type="redis", name="r", host="h").password_secret is None
    RedisCache(type="redis", name="r", host="h", password_secret=SecretRef(**SECRET))
    with pytest.raises(ValueError, match="only one of password_env or password_secret"):
        RedisCache(
            type="redis", name="r", host="h", password_env="P", password_secret=SecretRef(**SECRET)
        )
    assert not NotifySettings().has_webhook
    assert NotifySettings(webhook_url_secret=SecretRef(**SECRET)).has_webhook
    with pytest.raises(ValueError, match="only one of webhook_url_env or webhook_url_secret"):
        NotifySettings(webhook_url_env="HOOK", webhook_url_secret=SecretRef(**SECRET))


def test_cache_settings_have_defaults_and_bounds() -> None:
    aws = AwsSettings()
    assert (aws.secrets_cache_seconds, aws.secrets_reread_seconds) == (300, 30)
    errors = errors_of({**config_with_auth({"type": "none"}), "aws": {"secrets_cache_seconds": 0}})
    assert errors == ["aws.secrets_cache_seconds: Input should be greater than or equal to 1"]


# --- what json_key reads ---------------------------------------------------------------------


def test_without_json_key_the_whole_secret_string_is_the_value() -> None:
    text = json.dumps({"password": "pw"})
    assert secret_field(SecretRef(**SECRET), text) == text
    assert secret_field(SecretRef(**SECRET), "plain-pw") == "plain-pw"


def test_json_key_reads_one_key() -> None:
    ref = SecretRef(**SECRET, json_key="password")
    assert secret_field(ref, json.dumps({"username": "m", "password": "pw"})) == "pw"


@pytest.mark.parametrize(
    ("secret_string", "kind", "message"),
    [
        ('{"username": "m"}', "SecretKeyMissing", "the secret has no key 'password'"),
        ("plain-pw", "SecretNotJson", "the secret is not JSON"),
        ('["pw"]', "SecretNotJson", "JSON but not an object"),
        ('{"password": 1234}', "SecretNotUsable", "the key holds a JSON int"),
        ('{"password": ""}', "SecretNotUsable", "the key holds an empty string"),
    ],
)
def test_json_key_problems_name_the_secret_and_key_never_the_value(
    secret_string: str, kind: str, message: str
) -> None:
    ref = SecretRef(**SECRET, json_key="password")
    with pytest.raises(SecretConfigError) as caught:
        secret_field(ref, secret_string)
    assert caught.value.kind == kind
    assert caught.value.message.startswith("secret 'search-failover/catalog-a', key 'password': ")
    assert message in caught.value.message
    assert "plain-pw" not in caught.value.message and "1234" not in caught.value.message
