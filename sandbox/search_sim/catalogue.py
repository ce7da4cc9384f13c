"""The catalogue the clusters serve (in Magento's product indices and a plain one) and the
version each distribution reports. Which indices hold it: indices.py."""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from typing import Any

# --------------------------------------------------------------------------- catalogue

CATALOGUE: tuple[dict[str, Any], ...] = tuple(
    {"entity_id": entity_id, "sku": sku, "name": name, "price": price}
    for entity_id, (sku, name, price) in enumerate(
        [
            ("24-MB01", "Joust Duffle Bag", 34.0),
            ("24-MB04", "Strive Shoulder Pack", 32.0),
            ("24-MB03", "Crown Summit Backpack", 38.0),
            ("24-MB05", "Wayfarer Messenger Bag", 45.0),
            ("24-MB06", "Rival Field Messenger", 45.0),
            ("24-MB02", "Fusion Backpack", 59.0),
            ("24-WB07", "Overnight Duffle", 45.0),
            ("24-UG06", "Affirm Water Bottle", 7.0),
            ("24-UG07", "Dual Handle Cardio Ball", 12.0),
            ("24-UG01", "Quest Lumaflex Band", 19.0),
            ("MH01", "Chaz Kangeroo Hoodie", 52.0),
            ("WS12", "Radiant Tee", 22.0),
        ],
        start=1,
    )
)
"""A few Magento Luma sample products, so searches return something recognisable."""

SOURCE_FIELDS = ("sku", "name", "price")


# --------------------------------------------------------------------------- versions


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version.split("-")[0])[:3])


_KNOWN_BUILDS: dict[tuple[str, str], tuple[str, str, str]] = {
    ("elasticsearch", "8.15.0"): (
        "1a77947f34deddb41af25e6f0ddb8e830159c179",
        "2024-08-05T10:05:34.233336849Z",
        "9.11.1",
    ),
    ("opensearch", "2.17.0"): (
        "8586481dc99b1740ca3c7c966aee15ad0fc7b548",
        "2024-09-13T01:04:46.735497043Z",
        "9.11.1",
    ),
}


def version_info(distribution: str, version: str) -> dict[str, Any]:
    """The `version` object of `GET /`, with the fields each distribution really sends."""
    major = (version_tuple(version) or (0,))[0]
    build_hash, build_date, lucene = _KNOWN_BUILDS.get(
        (distribution, version),
        (
            hashlib.sha1(f"{distribution}-{version}".encode()).hexdigest(),
            "2024-01-01T00:00:00.000000000Z",
            "8.11.1" if major in (1, 7) else "9.11.1",
        ),
    )
    wire, index = ("6.8.0", "6.0.0-beta1") if major in (1, 7) else ("7.17.0", "7.0.0")
    if distribution == "opensearch":
        if major >= 2:
            wire = "7.10.0"
        return {
            "distribution": "opensearch",
            "number": version,
            "build_type": "tar",
            "build_hash": build_hash,
            "build_date": build_date,
            "build_snapshot": "SNAPSHOT" in version,
            "lucene_version": lucene,
            "minimum_wire_compatibility_version": wire,
            "minimum_index_compatibility_version": index,
        }
    return {
        "number": version,
        "build_flavor": "default",
        "build_type": "docker",
        "build_hash": build_hash,
        "build_date": build_date,
        "build_snapshot": "SNAPSHOT" in version,
        "lucene_version": lucene,
        "minimum_wire_compatibility_version": wire,
        "minimum_index_compatibility_version": index,
    }


def new_cluster_uuid() -> str:
    """22 base64url characters, the shape of a real cluster_uuid."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
