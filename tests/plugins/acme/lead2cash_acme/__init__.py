"""Acme ledger: a lead2cash system type kept outside lead2cash, to prove the plugin path."""
