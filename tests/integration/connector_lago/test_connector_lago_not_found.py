"""A plan or add-on Lago does not know: the dead letter names the code, so the operator knows what to add."""

from __future__ import annotations

from pathlib import Path

import doubles
from lago_connector_env import LagoTestEnv, make_orders, run_hub, write_config

from lead2cash.hub import Hub


def test_plan_and_add_on_not_found_name_the_code(lago: LagoTestEnv, tmp_path: Path) -> None:
    orders = make_orders(6, prefix="NF", seed=11, currencies=("USD",))
    recurring = next(o for o in orders if any(line["kind"] == "recurring" for line in o["lines"]))
    one_time = next(
        o for o in orders if o is not recurring and any(line["kind"] == "one_time" for line in o["lines"])
    )
    for line in recurring["lines"]:
        if line["kind"] == "recurring":
            line["product_code"] = "GHOST-PLAN"
    for line in one_time["lines"]:
        if line["kind"] == "one_time":
            line["product_code"] = "GHOST-ADDON"
    doubles.memory_system("mem", {}).records.extend([recurring, one_time])
    hub = Hub.from_files([write_config(tmp_path, lago.system_config())], configure_logs=False)
    try:
        assert run_hub(hub, timeout=30)
        reasons = {d.idempotency_key.split(":")[1]: d.error_message for d in hub.store.dlq_list("bill")}
    finally:
        hub.close()
    assert "plan_not_found" in reasons[recurring["id"]], reasons
    assert "plan_code=GHOST-PLAN__USD" in reasons[recurring["id"]], reasons
    assert "add_on_not_found" in reasons[one_time["id"]], reasons
    assert "add_on_code=GHOST-ADDON" in reasons[one_time["id"]], reasons
