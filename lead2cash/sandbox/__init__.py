"""Local simulators of Salesforce, Lago and SAP S/4HANA.

They speak each system's wire format over HTTPS and share no code with the connectors they are tested
against, so that a bug cannot hide on both sides.
"""
