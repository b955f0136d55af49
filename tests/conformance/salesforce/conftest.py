from fixtures_salesforce import SfEnv, fresh, sf

__all__ = ["SfEnv", "fresh", "sf"]
