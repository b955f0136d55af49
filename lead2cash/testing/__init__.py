"""Config tests (``lead2cash test``) and checks of a config against the live systems' metadata
(``lead2cash check --live``). A face above the hub, like the CLI: it may wire everything."""

from lead2cash.testing.runner import ConfigTestRunner, Summary, translate

__all__ = ["ConfigTestRunner", "Summary", "translate"]
