"""Reconciliation: prove that two systems agree (``lead2cash reconcile``). ``billing``: the parallel run of
the legacy billing system and the new engine."""
