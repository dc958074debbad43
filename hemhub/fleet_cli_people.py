"""`hemhub fleet principals|care-units|residents|shares ...`: principals, care units,
residents' administrative data and sharing between principals (docs/fleet.md)."""

from __future__ import annotations

from hemhub.fleet_cli import Arg, FleetCommand

_BOOL = ("true", "false")
_TYPES = ("blood_pressure", "body_weight", "pulse_oximetry", "glucose", "medication_event")
_RESIDENT = {"patient_id": "the resident's id"}
_SHARE = {"share_id": "the share's id"}

COMMANDS = [
    # --- principals -------------------------------------------------------------------------
    FleetCommand(
        "principals",
        "list",
        "GET",
        "/api/v1/principals",
        "the principals: all for the operator's admins, else the caller's own",
    ),
    FleetCommand(
        "principals",
        "show",
        "GET",
        "/api/v1/principals/{principal_id}",
        "one principal",
        path_args=("principal_id",),
        path_help={"principal_id": "the principal's id (the tokens' tenant claim)"},
    ),
    FleetCommand(
        "principals",
        "create",
        "POST",
        "/api/v1/principals",
        "a new principal (an admin of the operator principal only)",
        body_args=(
            Arg("id", "its id: lower-case letters, digits, - and _", required=True),
            Arg("name", "its name", required=True),
        ),
    ),
    FleetCommand(
        "principals",
        "rename",
        "PATCH",
        "/api/v1/principals/{principal_id}",
        "rename the caller's principal (admin)",
        path_args=("principal_id",),
        body_args=(Arg("name", "the new name", required=True),),
    ),
    # --- care units -------------------------------------------------------------------------
    FleetCommand("care-units", "list", "GET", "/api/v1/care-units", "the principal's care units"),
    FleetCommand(
        "care-units",
        "create",
        "POST",
        "/api/v1/care-units",
        "a new care unit of the caller's principal",
        body_args=(Arg("name", "its name (unique within the principal)", required=True),),
    ),
    FleetCommand(
        "care-units",
        "rename",
        "PATCH",
        "/api/v1/care-units/{care_unit_id}",
        "rename a care unit",
        path_args=("care_unit_id",),
        body_args=(Arg("name", "the new name", required=True),),
        path_help={"care_unit_id": "the care unit's id"},
    ),
    # --- residents --------------------------------------------------------------------------
    FleetCommand(
        "residents",
        "list",
        "GET",
        "/api/v1/residents",
        "the principal's residents (administrative data, no clinical values)",
        query_args=(
            Arg("deactivated", "also deactivated residents", choices=_BOOL),
            Arg("limit", "at most this many", type=int),
            Arg("offset", "skip this many", type=int),
        ),
    ),
    FleetCommand(
        "residents",
        "show",
        "GET",
        "/api/v1/residents/{patient_id}",
        "one resident's record and measurement schedules",
        path_args=("patient_id",),
        path_help=_RESIDENT,
    ),
    FleetCommand(
        "residents",
        "subject-access",
        "GET",
        "/fhir/r4/Patient/{patient_id}/$subject-access",
        "everything held about the resident as one FHIR Bundle (a request for access:"
        " redirect to a file; audited; docs/fhir.md)",
        path_args=("patient_id",),
        path_help=_RESIDENT,
    ),
    FleetCommand(
        "residents",
        "create",
        "POST",
        "/api/v1/residents",
        "a new resident of the caller's principal",
        body_args=(
            Arg("display_name", "the name nurses see", required=True),
            Arg("programme", "hypertension (default), heart_failure, copd or diabetes"),
            Arg("care_unit_id", "place it in this care unit"),
        ),
    ),
    FleetCommand(
        "residents",
        "update",
        "PATCH",
        "/api/v1/residents/{patient_id}",
        "change a resident's display name and/or programme",
        path_args=("patient_id",),
        body_args=(
            Arg("display_name", "the new name"),
            Arg("programme", "the new programme (its default thresholds apply)"),
        ),
        path_help=_RESIDENT,
    ),
    FleetCommand(
        "residents",
        "erase",
        "POST",
        "/api/v1/residents/{patient_id}/erasure",
        "erase a deactivated resident: clinical data deleted, the access log pseudonymised"
        " (docs/audit.md); prints the pseudonym to keep with the journal",
        path_args=("patient_id",),
        body_args=(
            Arg(
                "basis",
                "why",
                required=True,
                choices=("request", "retention", "registered_in_error"),
            ),
        ),
        path_help=_RESIDENT,
    ),
    FleetCommand(
        "residents",
        "place",
        "PUT",
        "/api/v1/patients/{patient_id}/care-unit",
        "place a resident in a care unit (--body '{\"care_unit_id\": null}': in none)",
        path_args=("patient_id",),
        body_args=(Arg("care_unit_id", "the care unit's id"),),
        path_help=_RESIDENT,
    ),
    FleetCommand(
        "residents",
        "schedule",
        "PUT",
        "/api/v1/residents/{patient_id}/schedules/{measurement_type}",
        "expect a measurement every so often (missing-data alerts)",
        path_args=("patient_id", "measurement_type"),
        body_args=(
            Arg(
                "every", "ISO 8601 duration, e.g. P1D, PT12H (5 minutes to 92 days)", required=True
            ),
            Arg("starts_at", "from (ISO 8601 with offset; default now)"),
        ),
        path_help={**_RESIDENT, "measurement_type": "one of " + ", ".join(_TYPES)},
    ),
    FleetCommand(
        "residents",
        "unschedule",
        "DELETE",
        "/api/v1/residents/{patient_id}/schedules/{measurement_type}",
        "stop expecting a measurement (the schedule is kept, inactive)",
        path_args=("patient_id", "measurement_type"),
        path_help={**_RESIDENT, "measurement_type": "one of " + ", ".join(_TYPES)},
    ),
    FleetCommand(
        "residents",
        "deactivate",
        "POST",
        "/api/v1/residents/{patient_id}/deactivate",
        "deactivate a resident (history kept; return its devices first)",
        path_args=("patient_id",),
        body_args=(Arg("reason", "why (recorded)", required=True),),
        path_help=_RESIDENT,
    ),
    # --- sharing between principals (admins) ------------------------------------------------
    FleetCommand(
        "shares",
        "grant",
        "POST",
        "/api/v1/residents/{patient_id}/shares",
        "share a resident with another principal for a purpose and a period",
        path_args=("patient_id",),
        body_args=(
            Arg("grantee", "the other principal's id", required=True),
            Arg("purpose", "what for, e.g. 'home care'", required=True),
            Arg("reason", "why: consent, care decision (recorded)", required=True),
            Arg("ends_at", "until (exclusive; ISO 8601 with offset)", required=True),
            Arg("starts_at", "from (ISO 8601 with offset; default now)"),
        ),
        path_help=_RESIDENT,
    ),
    FleetCommand(
        "shares",
        "list",
        "GET",
        "/api/v1/shares",
        "the shares the caller's principal granted (or received)",
        query_args=(
            Arg("direction", "granted (default) or received", choices=("granted", "received")),
            Arg("in_force", "only those in force now", choices=_BOOL),
            Arg("limit", "at most this many", type=int),
        ),
    ),
    FleetCommand(
        "shares",
        "of-resident",
        "GET",
        "/api/v1/residents/{patient_id}/shares",
        "every share of one resident, revoked ones too",
        path_args=("patient_id",),
        path_help=_RESIDENT,
    ),
    FleetCommand(
        "shares",
        "show",
        "GET",
        "/api/v1/shares/{share_id}",
        "one share",
        path_args=("share_id",),
        path_help=_SHARE,
    ),
    FleetCommand(
        "shares",
        "revoke",
        "POST",
        "/api/v1/shares/{share_id}/revoke",
        "revoke a share: the other principal sees nothing of the resident from now on",
        path_args=("share_id",),
        body_args=(Arg("reason", "why (recorded)", required=True),),
        path_help=_SHARE,
    ),
]
