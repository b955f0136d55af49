"""Reconciliations: ``lead2cash reconcile ...`` (cli.py), one module per check."""
