"""Config validation: every error is reported, each with its path."""

from __future__ import annotations

from pathlib import Path

import pytest

from failover.config import ConfigError, load_config, parse_config

CONFIGS = Path(__file__).parent.parent / "configs"


def errors_of(name: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(CONFIGS / name)
    return caught.value.errors


def test_valid_config_loads_with_defaults() -> None:
    config = load_config(CONFIGS / "valid.yaml")
    cluster = config.cluster("catalog-search")
    assert cluster.primary.auth.type == "basic"
    assert cluster.primary.tls.verify is True
    assert cluster.standby.auth.type == "sigv4"
    assert cluster.probe.yellow_policy == "degraded"
    assert cluster.switch.record_name == "search.shop.internal."
    assert config.task_queue == "search-failover"


def test_every_error_is_reported_with_its_path() -> None:
    errors = errors_of("many-errors.yaml")
    paths = [e.split(":")[0] for e in errors]
    assert paths == [
        "clusters[0].name",
        "clusters[0].primary.nodes[0]",
        "clusters[0].primary.auth.basic.password_env",
        "clusters[0].primary.auth.basic.password",
        "clusters[0].standby.nodes",
        "clusters[0].probe.interval_seconds",
        "clusters[0].probe.yellow_policy",
        "clusters[0].switch.route53.record_type",
    ]


def test_a_secret_in_the_file_is_refused_with_advice() -> None:
    errors = errors_of("many-errors.yaml")
    [secret] = [e for e in errors if e.startswith("clusters[0].primary.auth.basic.password:")]
    assert "secret values do not belong in the config file" in secret
    assert "hunter2" not in " ".join(errors)


def test_unknown_switch_type_names_the_expected_ones() -> None:
    [error] = errors_of("bad-switch-type.yaml")
    assert error.startswith("clusters[0].switch:")
    assert "'carrier-pigeon'" in error and "'route53'" in error


def test_duplicate_nodes_are_named() -> None:
    errors = errors_of("duplicate-names.yaml")
    assert "clusters[0].primary.nodes: node http://127.0.0.1:9200/ is listed twice" in errors


def _minimal(**switch: object) -> dict:
    return {
        "name": "catalog",
        "primary": {"nodes": ["http://127.0.0.1:9200"]},
        "standby": {"nodes": ["http://127.0.0.1:9201"]},
        "switch": {
            "type": "route53",
            "hosted_zone_id": "Z1",
            "record_name": "s.x",
            "primary_value": "a.x",
            "standby_value": "b.x",
        }
        | switch,
    }


def test_duplicate_cluster_names_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"clusters": [_minimal(), _minimal()]})
    assert caught.value.errors == ["clusters: cluster names must be unique; repeated: catalog"]


def test_identical_primary_and_standby_values_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"clusters": [_minimal(standby_value="A.x.")]})
    assert caught.value.errors == [
        "clusters[0].switch.route53: primary_value and standby_value are the same; "
        "a switch would be a no-op"
    ]


def test_malformed_files_get_one_clear_error() -> None:
    [not_yaml] = errors_of("not-yaml.yaml")
    assert "not valid YAML" in not_yaml
    [not_mapping] = errors_of("not-a-mapping.yaml")
    assert "top level must be a mapping" in not_mapping
    [missing] = errors_of("does-not-exist.yaml")
    assert "cannot read" in missing


def test_unknown_cluster_lists_the_configured_ones() -> None:
    config = load_config(CONFIGS / "valid.yaml")
    with pytest.raises(ConfigError) as caught:
        config.cluster("nope")
    assert caught.value.errors == ["clusters: no cluster named 'nope' (configured: catalog-search)"]
