"""A legacy billing system to migrate from: a seeded, vectorised generator of its database.

Legacy conventions, not canonical ones: terse upper-case column names, space-padded strings, dates as
``YYYYMMDD`` text, amounts as text in several formats, country names, currency symbols, some Windows-1252
mojibake. Defects are injected at known rates and written to a ground-truth manifest
(table, record id -> defect class). Shares no code with ``lead2cash.migration``, which it is tested against.
"""

from lead2cash.sandbox.legacy.generator import (
    AS_OF,
    DEFECT_CLASSES,
    LegacyDatabase,
    export,
    generate,
    write_sql,
)

__all__ = ["AS_OF", "DEFECT_CLASSES", "LegacyDatabase", "export", "generate", "write_sql"]
