"""The software and firmware a hub should run, from the rollout campaigns (migration 0016),
as `ingest.hub_fleet.build_config` puts them into the hub's retained configuration.

Per hub (hub software) and per device (firmware), the target asked last wins: the
artifact's version while the target is asked, confirmed or failed (the hub does not
retry a version of a campaign that failed or reverted; HMC decides: resume, roll back),
its version before the campaign once it is rolled back. A target not asked yet, or
skipped, asks nothing.
"""

from __future__ import annotations

from typing import Any

from hemhub.contract import DesiredFirmware, DesiredSoftware
from ingest.fleet_common import AConn
from ingest.fleet_common import all_rows as _all

DESIRED_SQL = """
SELECT DISTINCT ON (t.address)
       t.address, t.state, t.from_version, t.campaign_id, a.kind, a.version, a.target,
       a.product_id,
       (SELECT p.target FROM ota_artifacts p
        WHERE p.tenant_id = a.tenant_id AND p.kind = a.kind AND p.version = t.from_version
          AND p.product_id IS NOT DISTINCT FROM a.product_id) AS from_target
FROM ota_campaign_targets t
JOIN ota_campaigns c ON c.id = t.campaign_id
JOIN ota_artifacts a ON a.id = c.artifact_id
WHERE t.hub_id = %s AND t.issued_at IS NOT NULL
  AND t.state IN ('issued', 'confirmed', 'failed', 'rolled_back', 'restored')
ORDER BY t.address, t.issued_at DESC, c.created_at DESC
"""


def bundle_target(version: str) -> str:
    """The repository's name of a hub software bundle (docs/firmware-rollouts.md)."""
    return f"hemhub-hub-{version}.tar"


def _version_and_target(row: dict[str, Any]) -> tuple[str, str] | None:
    if row["state"] in ("rolled_back", "restored"):
        if row["from_version"] is None:
            return None  # it ran no known version before: nothing to go back to
        target = row["from_target"]
        if target is None and row["kind"] == "hub_software":
            target = bundle_target(row["from_version"])
        return (row["from_version"], target) if target is not None else None
    return row["version"], row["target"]


async def desired(conn: AConn, hub_id: str) -> tuple[DesiredSoftware | None, list[DesiredFirmware]]:
    software: DesiredSoftware | None = None
    firmware: list[DesiredFirmware] = []
    for row in await _all(conn, DESIRED_SQL, (hub_id,)):
        wanted = _version_and_target(row)
        if wanted is None:
            continue
        version, target = wanted
        campaign = str(row["campaign_id"])
        if row["kind"] == "hub_software" and row["address"] == "":
            software = DesiredSoftware(version=version, target=target, campaign_id=campaign)
        elif row["kind"] == "device_firmware" and row["address"]:
            firmware.append(
                DesiredFirmware(
                    address=row["address"], version=version, target=target, campaign_id=campaign
                )
            )
    return software, firmware
