"""ISO 3166-1 alpha-2 country codes.

A static table (all 249 officially assigned codes) so validation does not depend on locale data installed on
the host. User-assigned codes such as XK (Kosovo) are not ISO assignments and are rejected; map them in the
adapter if a source system uses them.
"""

from __future__ import annotations

from typing import Final

_ALPHA_2: Final = (
    "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT "
    "BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH "
    "ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT "
    "HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS "
    "LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI "
    "NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG "
    "SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG "
    "UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW"
)
COUNTRY_CODES: Final = frozenset(_ALPHA_2.split())
"""All officially assigned ISO 3166-1 alpha-2 codes."""


class UnknownCountryError(ValueError):
    """The code is not an officially assigned ISO 3166-1 alpha-2 code."""


def normalize_country(code: object) -> str:
    """Return the upper-case alpha-2 code, or raise UnknownCountryError."""
    if not isinstance(code, str):
        raise UnknownCountryError(
            f"country must be an ISO 3166-1 alpha-2 code string, got {type(code).__name__}"
        )
    normalized = code.strip().upper()
    if normalized not in COUNTRY_CODES:
        raise UnknownCountryError(f"country {code!r} is not an ISO 3166-1 alpha-2 code")
    return normalized
