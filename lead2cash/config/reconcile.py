"""Config of the reconciliations the hub can run on a schedule (``reconcile:``)."""

from __future__ import annotations

from pydantic import Field

from lead2cash.config.base import Duration, Strict


class ThreeWayConfig(Strict):
    """Salesforce closed-won deals against the billing engine's invoices against the ledger's postings
    (``lead2cash reconcile three-way``). The systems are found by type when the config has one of each;
    name them when it has several."""

    every: Duration | None = Field(
        None, description="run inside the hub at this interval and expose the result as metrics; null: off"
    )
    out: str | None = Field(
        None,
        description="the scheduled run writes its JSON report here (relative: to the first config file's "
        "folder), e.g. <workdir>/reconcile/three-way.json for `cutover check`",
    )
    crm: str | None = Field(None, description="the Salesforce system (default: the one of type salesforce)")
    billing: str | None = Field(None, description="the billing engine (default: the one of type lago)")
    ledger: str | None = Field(None, description="the ledger (default: the one of type sap)")


class ReconcileConfig(Strict):
    three_way: ThreeWayConfig = Field(
        default_factory=lambda: ThreeWayConfig(),
        description="CRM won deals <-> billing <-> ledger (`lead2cash reconcile three-way`)",
    )
