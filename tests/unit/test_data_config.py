"""The storefront's indices (`magento`) and replication in the config: defaults, and every
error reported with its path."""

from __future__ import annotations

import pytest

from activities.search_probe import HEALTH_PATH, health_path_of
from failover.config import ConfigError, MagentoIndices, ReplicationSettings, parse_config

REPLICATION = {"kind": "opensearch", "primary_connection": "to-primary"}


def cluster(**sections: object) -> dict:
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
        },
    } | sections


def parsed(**sections: object):
    return parse_config({"clusters": [cluster(**sections)]}).cluster("catalog")


def errors(**sections: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config({"clusters": [cluster(**sections)]})
    return caught.value.errors


# --- magento ---------------------------------------------------------------------------------


def test_magento_is_off_by_default() -> None:
    config = parsed()
    assert config.magento is None
    assert health_path_of(config) == HEALTH_PATH


def test_magento_defaults() -> None:
    magento = parsed(magento={}).magento
    assert magento is not None
    assert magento.index_prefix == "magento2"
    assert magento.stores == [1]
    assert magento.alias_names() == ["magento2_product_1"]
    assert magento.min_document_ratio == 0.9
    assert magento.check_every_seconds == 30


def test_store_aliases_follow_the_prefix() -> None:
    magento = MagentoIndices(index_prefix="shop-de", stores=[0, 1, 3])
    assert magento.alias_names() == ["shop-de_product_0", "shop-de_product_1", "shop-de_product_3"]
    assert magento.health_path() == (
        "/_cluster/health/shop-de_product_0,shop-de_product_1,shop-de_product_3?timeout=0s"
    )


def test_explicit_aliases_replace_the_store_aliases() -> None:
    config = parsed(magento={"stores": [1, 2], "aliases": ["magento2_product_1", "brands"]})
    assert config.magento.alias_names() == ["magento2_product_1", "brands"]
    assert health_path_of(config) == "/_cluster/health/magento2_product_1,brands?timeout=0s"


def test_alias_names_is_a_copy() -> None:
    magento = MagentoIndices(aliases=["brands"])
    magento.alias_names().append("other")
    assert magento.alias_names() == ["brands"]


@pytest.mark.parametrize(
    ("magento", "expected"),
    [
        pytest.param(
            {"stores": [1, 2, 1, 2, 3]},
            "clusters[0].magento.stores: stores are listed twice: 1, 2",
            id="repeated-stores",
        ),
        pytest.param(
            {"stores": [1, -1]},
            "clusters[0].magento.stores: store ids are whole numbers from 0",
            id="negative-store",
        ),
        pytest.param(
            {"aliases": ["brands", "brands"]},
            "clusters[0].magento.aliases: alias names must be unique; repeated: brands",
            id="repeated-aliases",
        ),
        pytest.param(
            {"aliases": ["brands", "Products", "_hidden", "magento2_*"]},
            "clusters[0].magento.aliases: not index or alias names: 'Products', '_hidden', "
            "'magento2_*' (lowercase, no wildcards, no leading _ or -)",
            id="bad-alias-names",
        ),
    ],
)
def test_magento_errors(magento: dict, expected: str) -> None:
    assert errors(magento=magento) == [expected]


@pytest.mark.parametrize(
    ("magento", "path"),
    [
        ({"stores": []}, "clusters[0].magento.stores"),
        ({"min_document_ratio": 0}, "clusters[0].magento.min_document_ratio"),
        ({"min_document_ratio": 1.5}, "clusters[0].magento.min_document_ratio"),
        ({"check_every_seconds": 0}, "clusters[0].magento.check_every_seconds"),
        ({"index_prefix": "Magento2"}, "clusters[0].magento.index_prefix"),
        ({"index_prefix": "_magento"}, "clusters[0].magento.index_prefix"),
        ({"store": [1]}, "clusters[0].magento.store"),
    ],
)
def test_magento_values_out_of_range(magento: dict, path: str) -> None:
    [error] = errors(magento=magento)
    assert error.startswith(f"{path}: "), error


def test_a_ratio_of_one_is_allowed() -> None:
    assert parsed(magento={"min_document_ratio": 1}).magento.min_document_ratio == 1


# --- replication -----------------------------------------------------------------------------


def test_replication_is_off_by_default() -> None:
    config = parsed()
    assert config.replication.kind == "none"
    assert config.replication.enabled is False
    assert config.replication.promote is True
    assert config.promotes is False  # nothing to promote without replication


def test_configured_replication() -> None:
    config = parsed(
        magento={"stores": [1, 2]},
        replication=REPLICATION
        | {"standby_connection": "to-standby", "max_lag_operations": 0, "max_lag_seconds": 60},
    )
    replication = config.replication
    assert replication.enabled is True
    assert config.promotes is True
    assert replication.connection_to("primary") == "to-primary"
    assert replication.connection_to("standby") == "to-standby"
    assert replication.max_lag_operations == 0
    assert replication.max_lag_seconds == 60


def test_promotion_can_be_turned_off() -> None:
    config = parsed(magento={}, replication=REPLICATION | {"promote": False})
    assert config.replication.enabled is True
    assert config.promotes is False


def test_no_standby_connection_means_none_to_reseed_the_primary_from() -> None:
    assert ReplicationSettings(**REPLICATION).connection_to("standby") is None


@pytest.mark.parametrize("kind", ["opensearch", "elasticsearch"])
def test_replication_needs_the_indices_it_replicates(kind: str) -> None:
    assert errors(replication=REPLICATION | {"kind": kind}) == [
        "clusters[0]: replication is configured but magento is not: name the indices that "
        "are replicated (magento: {index_prefix: ..., stores: [...]})"
    ]


def test_replication_needs_the_connection_to_the_primary() -> None:
    assert errors(magento={}, replication={"kind": "elasticsearch"}) == [
        "clusters[0]: replication.primary_connection is required: the remote connection on "
        "the standby that its follower indices replicate from"
    ]


def test_no_replication_needs_no_indices() -> None:
    assert parsed(replication={"kind": "none", "max_lag_seconds": 10}).magento is None


@pytest.mark.parametrize(
    ("replication", "path"),
    [
        ({"kind": "mongodb"}, "clusters[0].replication.kind"),
        ({"max_lag_operations": -1}, "clusters[0].replication.max_lag_operations"),
        ({"max_lag_seconds": -5}, "clusters[0].replication.max_lag_seconds"),
        ({"primary_connection": "to primary"}, "clusters[0].replication.primary_connection"),
        ({"standby_connection": "a:b"}, "clusters[0].replication.standby_connection"),
        ({"sync_timeout_seconds": 0}, "clusters[0].replication.sync_timeout_seconds"),
        ({"poll_seconds": 301}, "clusters[0].replication.poll_seconds"),
        ({"promote_on_drill": True}, "clusters[0].replication.promote_on_drill"),
    ],
)
def test_replication_values_out_of_range(replication: dict, path: str) -> None:
    [error] = errors(magento={}, replication=REPLICATION | replication)
    assert error.startswith(f"{path}: "), error


def test_every_error_in_both_sections_is_listed() -> None:
    found = errors(
        magento={"stores": [2, 2], "min_document_ratio": 2},
        replication=REPLICATION | {"max_lag_operations": -1},
    )
    assert [e.split(":")[0] for e in found] == [
        "clusters[0].magento.stores",
        "clusters[0].magento.min_document_ratio",
        "clusters[0].replication.max_lag_operations",
    ]
