"""API_BUSINESS_PARTNER: business partners with roles, addresses, and customers with company code data.

Deep insert on ``A_BusinessPartner`` creates the partner, its roles (``to_BusinessPartnerRole``), addresses
(``to_BusinessPartnerAddress``) and customer (``to_Customer`` with ``to_CustomerCompany``) in one step; the
customer number equals the partner number. Rules the sandbox enforces, as S/4HANA does with the standard
configuration: ``BusinessPartnerCategory`` 1 (person, needs ``LastName``), 2 (organization, needs
``OrganizationBPName1``) or 3 (group); known roles only; addresses need a ``Country``; company code data needs
role ``FLCU00``, a defined company code and a customer ``ReconciliationAccount``.
"""

from __future__ import annotations

import itertools
import random
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from lead2cash.sandbox.sap import config
from lead2cash.sandbox.sap.edm import ServiceModel
from lead2cash.sandbox.sap.odata import Context, ODataError, ODataService, Row, Table

END_OF_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
FIRST_NUMBER = 1000001

NAV_LINKS = {
    ("A_BusinessPartnerType", "to_BusinessPartnerAddress"): {"BusinessPartner": "BusinessPartner"},
    ("A_BusinessPartnerType", "to_BusinessPartnerRole"): {"BusinessPartner": "BusinessPartner"},
    ("A_BusinessPartnerType", "to_Customer"): {"Customer": "Customer"},
    ("A_CustomerType", "to_CustomerCompany"): {"Customer": "Customer"},
}


def make_tables() -> dict[str, Table]:
    return {
        "A_BusinessPartner": Table(["BusinessPartner"], ("SearchTerm1", "BusinessPartnerIDByExtSystem")),
        "A_BusinessPartnerAddress": Table(["BusinessPartner", "AddressID"], ("BusinessPartner",)),
        "A_BusinessPartnerRole": Table(["BusinessPartner", "BusinessPartnerRole"], ("BusinessPartner",)),
        "A_Customer": Table(["Customer"]),
        "A_CustomerCompany": Table(["Customer", "CompanyCode"], ("Customer",)),
    }


def _items(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict) and "results" in value:
        value = value["results"]
    if isinstance(value, dict):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ODataError(400, "Malformed navigation property payload", "/IWBEP/CM_MGW_RT/003")
    return value


def _bad(message: str, target: str = "", code: str = "R11/001") -> ODataError:
    return ODataError(400, message, code, target=target)


class BusinessPartners:
    def __init__(self, model: ServiceModel, service: ODataService, on_create: Callable[[Row], None]):
        self.model = model
        self.service = service
        self.tables = service.tables
        self.on_create = on_create
        self._lock = threading.Lock()
        self._numbers = itertools.count(FIRST_NUMBER)
        self._addresses = itertools.count(22000)
        service.create_handlers.update(
            {
                "A_BusinessPartner": self.create_partner,
                "A_BusinessPartnerRole": self.create_role,
                "A_BusinessPartnerAddress": self.create_address,
                "A_CustomerCompany": self.create_customer_company,
            }
        )
        service.update_handlers["A_BusinessPartner"] = self.update_partner

    def reset(self) -> None:
        for table in self.tables.values():
            table.clear()
        self._numbers = itertools.count(FIRST_NUMBER)
        self._addresses = itertools.count(22000)

    def _insert(self, set_name: str, row: Row, ctx: Context) -> None:
        table = self.tables[set_name]
        table.insert(row)
        key = table.key_of(row)
        ctx.undo.append(lambda: table.delete(key))

    # --- partner ---------------------------------------------------------------------------------------

    def create_partner(self, payload: dict[str, Any], ctx: Context) -> Row:
        etype = self.model.types["A_BusinessPartnerType"]
        values, navs = self.service.parse_entity(etype, payload, creating=True)
        category = values.get("BusinessPartnerCategory") or ""
        if category not in ("1", "2", "3"):
            raise _bad(
                f"Business partner category '{category}' is not valid", "BusinessPartnerCategory", "R11/003"
            )
        if category == "1" and not values.get("LastName"):
            raise _bad("Enter a last name for the person", "LastName", "R11/401")
        if category in ("2", "3") and not values.get("OrganizationBPName1"):
            raise _bad("Enter a name for the organization", "OrganizationBPName1", "R11/402")
        with self._lock:
            number = values.get("BusinessPartner")
            if number:
                if self.tables["A_BusinessPartner"].get((number,)) is not None:
                    raise _bad(f"Business partner {number} already exists", "BusinessPartner", "R11/124")
            else:
                number = str(next(self._numbers))
                while self.tables["A_BusinessPartner"].get((number,)) is not None:
                    number = str(next(self._numbers))
        now = datetime.now(UTC)
        user = ctx.user[:12]
        for term in ("SearchTerm1", "SearchTerm2", "BusinessPartnerIDByExtSystem"):
            if values.get(term):
                values[term] = values[term].upper()
        if category == "1":
            name = " ".join(p for p in (values.get("FirstName"), values.get("LastName")) if p)
        else:
            name = " ".join(
                p for p in (values.get("OrganizationBPName1"), values.get("OrganizationBPName2")) if p
            )
        row: Row = {
            **values,
            "BusinessPartner": number,
            "BusinessPartnerFullName": name[:81],
            "BusinessPartnerName": name[:81],
            "BusinessPartnerUUID": uuid.uuid4(),
            "IsNaturalPerson": "X" if category == "1" else "",
            "CreatedByUser": user,
            "CreationDate": datetime(now.year, now.month, now.day, tzinfo=UTC),
            "CreationTime": timedelta(hours=now.hour, minutes=now.minute, seconds=now.second),
            "LastChangedByUser": user,
            "ETag": f"{user}{now:%Y%m%d%H%M%S}"[:26],
        }
        self._insert("A_BusinessPartner", row, ctx)
        roles = [self._role(number, p, ctx) for p in _items(navs.get("to_BusinessPartnerRole", []))]
        for address in _items(navs.get("to_BusinessPartnerAddress", [])):
            self._address(number, address, ctx)
        role_names = {r["BusinessPartnerRole"] for r in roles}
        if "to_Customer" in navs or role_names & config.CUSTOMER_ROLES:
            customer_payload = navs.get("to_Customer") or {}
            if not isinstance(customer_payload, dict):
                raise _bad("Malformed to_Customer payload", "to_Customer")
            self._customer(row, customer_payload, role_names, ctx)
        ctx.on_commit.append(lambda: self.on_create(row))
        return row

    def update_partner(self, row: Row, payload: dict[str, Any], ctx: Context) -> None:
        etype = self.model.types["A_BusinessPartnerType"]
        values, _navs = self.service.parse_entity(etype, payload, creating=False)
        values.pop("BusinessPartner", None)
        before = dict(row)
        row.update(values)
        now = datetime.now(UTC)
        row["LastChangedByUser"] = ctx.user[:12]
        row["LastChangeDate"] = datetime(now.year, now.month, now.day, tzinfo=UTC)
        row["LastChangeTime"] = timedelta(hours=now.hour, minutes=now.minute, seconds=now.second)
        row["ETag"] = f"{ctx.user[:12]}{now:%Y%m%d%H%M%S}"[:26]
        ctx.undo.append(lambda: (row.clear(), row.update(before)))
        self.tables["A_BusinessPartner"].insert(row)

    # --- children --------------------------------------------------------------------------------------

    def _role(self, partner: str, payload: dict[str, Any], ctx: Context) -> Row:
        etype = self.model.types["A_BusinessPartnerRoleType"]
        values, _ = self.service.parse_entity(etype, payload, creating=True)
        role = values.get("BusinessPartnerRole") or ""
        if role not in config.BUSINESS_PARTNER_ROLES:
            raise _bad(f"BP role {role} does not exist", "BusinessPartnerRole", "R11/655")
        if self.tables["A_BusinessPartnerRole"].get((partner, role)) is not None:
            raise _bad(
                f"Business partner {partner} already has role {role}", "BusinessPartnerRole", "R11/657"
            )
        now = datetime.now(UTC).replace(microsecond=0)
        row = {
            "ValidFrom": now,
            "ValidTo": END_OF_TIME,
            **values,
            "BusinessPartner": partner,
            "BusinessPartnerRole": role,
        }
        self._insert("A_BusinessPartnerRole", row, ctx)
        return row

    def _address(self, partner: str, payload: dict[str, Any], ctx: Context) -> Row:
        etype = self.model.types["A_BusinessPartnerAddressType"]
        values, _ = self.service.parse_entity(etype, payload, creating=True)
        if not values.get("Country"):
            raise _bad("Enter a country/region", "Country", "AM/216")
        bp = self.tables["A_BusinessPartner"].get((partner,)) or {}
        row = {
            "ValidityStartDate": datetime.now(UTC).replace(microsecond=0),
            "ValidityEndDate": END_OF_TIME,
            **values,
            "BusinessPartner": partner,
            "AddressID": str(next(self._addresses)),
            "AddressUUID": uuid.uuid4(),
            "FullName": bp.get("BusinessPartnerFullName", "")[:80],
        }
        self._insert("A_BusinessPartnerAddress", row, ctx)
        return row

    def _customer(self, bp: Row, payload: dict[str, Any], roles: set[str], ctx: Context) -> None:
        etype = self.model.types["A_CustomerType"]
        values, navs = self.service.parse_entity(etype, payload, creating=True)
        number = bp["BusinessPartner"]
        row = {
            "CustomerAccountGroup": "CUST",
            **values,
            "Customer": number,
            "CustomerName": bp["BusinessPartnerName"][:80],
            "CustomerFullName": bp["BusinessPartnerFullName"][:220],
            "CreatedByUser": bp["CreatedByUser"],
            "CreationDate": bp["CreationDate"],
        }
        self._insert("A_Customer", row, ctx)
        bp["Customer"] = number
        for company in _items(navs.get("to_CustomerCompany", [])):
            self._company(number, company, roles, ctx)

    def _company(self, customer: str, payload: dict[str, Any], roles: set[str], ctx: Context) -> Row:
        if "FLCU00" not in roles:
            raise _bad(
                "Company code data requires business partner role FLCU00", "to_CustomerCompany", "R11/658"
            )
        etype = self.model.types["A_CustomerCompanyType"]
        values, _ = self.service.parse_entity(etype, payload, creating=True)
        code = values.get("CompanyCode") or ""
        if code not in config.COMPANY_CODES:
            raise _bad(f"Company code {code} does not exist", "CompanyCode", "F2/165")
        if self.tables["A_CustomerCompany"].get((customer, code)) is not None:
            raise _bad(f"Customer {customer} already exists in company code {code}", "CompanyCode", "F2/151")
        recon = values.get("ReconciliationAccount") or ""
        account = config.GL_ACCOUNTS.get(recon)
        if not recon:
            raise _bad("Enter a reconciliation account", "ReconciliationAccount", "F2/414")
        if account is None or account.reconciliation_for != "D":
            raise _bad(
                f"Account {recon} is not a reconciliation account for customers",
                "ReconciliationAccount",
                "F2/213",
            )
        row = {**values, "Customer": customer, "CompanyCode": code}
        self._insert("A_CustomerCompany", row, ctx)
        return row

    def create_role(self, payload: dict[str, Any], ctx: Context) -> Row:
        partner = payload.get("BusinessPartner") or ""
        bp = self.tables["A_BusinessPartner"].get((partner,))
        if bp is None:
            raise ODataError(404, f"Business partner {partner} does not exist", "R11/002")
        row = self._role(partner, payload, ctx)
        if row["BusinessPartnerRole"] in config.CUSTOMER_ROLES and not bp.get("Customer"):
            self._customer(bp, {}, {row["BusinessPartnerRole"]}, ctx)
        return row

    def create_address(self, payload: dict[str, Any], ctx: Context) -> Row:
        partner = payload.get("BusinessPartner") or ""
        if self.tables["A_BusinessPartner"].get((partner,)) is None:
            raise ODataError(404, f"Business partner {partner} does not exist", "R11/002")
        return self._address(partner, payload, ctx)

    def create_customer_company(self, payload: dict[str, Any], ctx: Context) -> Row:
        customer = payload.get("Customer") or ""
        if self.tables["A_Customer"].get((customer,)) is None:
            raise ODataError(404, f"Customer {customer} does not exist", "F2/302")
        roles = {
            r["BusinessPartnerRole"]
            for r in self.tables["A_BusinessPartnerRole"].where("BusinessPartner", customer)
        }
        return self._company(customer, payload, roles, ctx)

    # --- seed ------------------------------------------------------------------------------------------

    def seed(self, size: int, seed: int) -> None:
        from faker import Faker

        fake = Faker("en_US")
        fake.seed_instance(seed)
        rng = random.Random(seed)
        currencies = sorted(config.COMPANY_CODE_BY_CURRENCY)
        for n in range(size):
            currency = currencies[n % len(currencies)]
            code = config.COMPANY_CODE_BY_CURRENCY[currency]
            country = config.COMPANY_CODES[code].country
            ctx = Context(user="SEED")
            self.create_partner(
                {
                    "BusinessPartnerCategory": "2",
                    "BusinessPartnerGrouping": "BP02",
                    "OrganizationBPName1": fake.company()[:40],
                    "SearchTerm1": f"SEED{n + 1:05d}",
                    "Language": "EN",
                    "to_BusinessPartnerRole": [
                        {"BusinessPartnerRole": "FLCU00"},
                        {"BusinessPartnerRole": "FLCU01"},
                    ],
                    "to_BusinessPartnerAddress": [
                        {
                            "Country": country,
                            "CityName": fake.city()[:40],
                            "StreetName": fake.street_name()[:60],
                            "HouseNumber": str(rng.randint(1, 200)),
                            "PostalCode": fake.postcode()[:10],
                            "Language": "EN",
                        }
                    ],
                    "to_Customer": {
                        "to_CustomerCompany": [
                            {
                                "CompanyCode": code,
                                "ReconciliationAccount": config.RECEIVABLES_ACCOUNT,
                                "PaymentTerms": "0001",
                            }
                        ]
                    },
                },
                ctx,
            )
            ctx.on_commit.clear()  # seed data is not an effect
            ctx.commit()
