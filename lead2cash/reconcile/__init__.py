"""Reconciliations (``lead2cash reconcile``), one module per check: ``billing`` (the parallel run of the
legacy billing system and the new engine) and ``three_way`` (CRM won deals <-> billing <-> ledger)."""
