"""The sObjects the sandbox knows: fields with their describe attributes, relationships, key prefixes.

One declaration feeds describe, write validation, SOQL name resolution and the seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

API_VERSION = "62.0"
DATA_PATH = f"/services/data/v{API_VERSION}"

STAGES: dict[str, tuple[int, bool, bool]] = {  # name -> (probability, IsClosed, IsWon)
    "Prospecting": (10, False, False),
    "Qualification": (10, False, False),
    "Needs Analysis": (20, False, False),
    "Value Proposition": (50, False, False),
    "Id. Decision Makers": (60, False, False),
    "Perception Analysis": (70, False, False),
    "Proposal/Price Quote": (75, False, False),
    "Negotiation/Review": (90, False, False),
    "Closed Won": (100, True, True),
    "Closed Lost": (0, True, False),
}
CURRENCY_CODES = ("USD", "EUR", "GBP", "JPY", "KWD")
PAYMENT_STATUSES = (
    "Pending",
    "Paid",
    "Partially Paid",
    "Overdue",
    "Payment Failed",
    "Dispute Lost",
    "Refunded",
    "Voided",
)

_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "string": "xsd:string",
    "textarea": "xsd:string",
    "email": "xsd:string",
    "picklist": "xsd:string",
    "currency": "xsd:double",
    "double": "xsd:double",
    "percent": "xsd:double",
    "int": "xsd:int",
    "boolean": "xsd:boolean",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
}
TEXT_TYPES = frozenset({"string", "textarea", "email", "picklist"})
NUMBER_TYPES = frozenset({"currency", "double", "percent", "int"})
ID_TYPES = frozenset({"id", "reference"})


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    label: str
    length: int = 0
    precision: int = 0
    scale: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    calculated: bool = False
    external_id: bool = False
    unique: bool = False
    required: bool = False  # on create, unless defaulted
    default: object = None
    reference_to: str | None = None
    relationship_name: str | None = None
    picklist: tuple[str, ...] = ()
    custom: bool = False

    @property
    def writable_on_create(self) -> bool:
        return self.createable and not self.calculated

    def describe(self) -> dict[str, object]:
        t = self.type
        system = self.name in SYSTEM_FIELD_NAMES
        return {
            "aggregatable": t not in ("textarea", "id") or t == "id",
            "autoNumber": False,
            "byteLength": self.length * 3 if t in TEXT_TYPES else (18 if t in ID_TYPES else 0),
            "calculated": self.calculated,
            "calculatedFormula": None,
            "cascadeDelete": False,
            "caseSensitive": False,
            "controllerName": None,
            "createable": self.createable and not self.calculated,
            "custom": self.custom,
            "defaultValue": self.default if isinstance(self.default, bool) else None,
            "defaultValueFormula": None,
            "defaultedOnCreate": system or self.default is not None,
            "dependentPicklist": False,
            "deprecatedAndHidden": False,
            "digits": 9 if t == "int" else 0,
            "externalId": self.external_id,
            "filterable": t != "textarea",
            "groupable": t not in ("currency", "double", "percent", "textarea", "datetime"),
            "htmlFormatted": False,
            "idLookup": t == "id" or self.external_id,
            "inlineHelpText": None,
            "label": self.label,
            "length": self.length,
            "name": self.name,
            "nameField": self.name == "Name",
            "namePointing": False,
            "nillable": self.nillable,
            "picklistValues": [
                {"active": True, "defaultValue": False, "label": v, "validFor": None, "value": v}
                for v in self.picklist
            ],
            "precision": self.precision,
            "referenceTo": [self.reference_to] if self.reference_to else [],
            "relationshipName": self.relationship_name,
            "relationshipOrder": None,
            "restrictedPicklist": bool(self.picklist) and self.name == "CurrencyIsoCode",
            "scale": self.scale,
            "soapType": _SOAP_TYPES[t],
            "sortable": t != "textarea",
            "type": t,
            "unique": self.unique,
            "updateable": self.updateable and not self.calculated,
            "writeRequiresMasterRead": False,
        }


@dataclass(frozen=True)
class ChildRelationship:
    child: str
    field: str
    name: str
    cascade_delete: bool


@dataclass
class SObject:
    name: str
    label: str
    label_plural: str
    key_prefix: str
    fields: dict[str, Field] = field(default_factory=dict)
    children: dict[str, ChildRelationship] = field(default_factory=dict)  # relationship name -> rel

    def __post_init__(self) -> None:
        self.lower = {f.lower(): f for f in self.fields}
        self.relationships = {f.relationship_name: f for f in self.fields.values() if f.relationship_name}
        self.relationships_lower = {r.lower(): f for r, f in self.relationships.items()}
        self.external_ids = [f.name for f in self.fields.values() if f.external_id]

    def field(self, name: str) -> Field | None:
        f = self.fields.get(name)
        if f is None:
            canonical = self.lower.get(name.lower())
            f = self.fields[canonical] if canonical else None
        return f


def _system_fields(label: str) -> list[Field]:
    return [
        Field("Id", "id", f"{label} ID", length=18, nillable=False, createable=False, updateable=False),
        Field("IsDeleted", "boolean", "Deleted", nillable=False, createable=False, updateable=False),
        Field("CreatedDate", "datetime", "Created Date", nillable=False, createable=False, updateable=False),
        Field(
            "LastModifiedDate",
            "datetime",
            "Last Modified Date",
            nillable=False,
            createable=False,
            updateable=False,
        ),
        Field(
            "SystemModstamp",
            "datetime",
            "System Modstamp",
            nillable=False,
            createable=False,
            updateable=False,
        ),
    ]


SYSTEM_FIELD_NAMES = frozenset({"Id", "IsDeleted", "CreatedDate", "LastModifiedDate", "SystemModstamp"})


def _currency() -> Field:
    return Field(
        "CurrencyIsoCode", "picklist", "Currency ISO Code", length=3, picklist=CURRENCY_CODES, default="USD"
    )


def _key_field() -> Field:
    return Field(
        "Lead2Cash_Key__c",
        "string",
        "Lead2Cash Key",
        length=80,
        external_id=True,
        unique=True,
        custom=True,
    )


def _money(name: str, label: str, **kw: object) -> Field:
    return Field(name, "currency", label, precision=18, scale=2, **kw)  # type: ignore[arg-type]


def _ref(name: str, label: str, target: str, rel: str, **kw: object) -> Field:
    return Field(name, "reference", label, length=18, reference_to=target, relationship_name=rel, **kw)  # type: ignore[arg-type]


def _billing_summary_fields() -> list[Field]:
    """The Account's billing summary (lead2cash's near-real-time summary, docs/usage.md): custom fields
    as an admin would create them for the hub's default field names."""
    money = (
        ("Billing_Subscription_Charges__c", "Billing Subscription Charges"),
        ("Billing_Usage_Charges__c", "Billing Usage Charges"),
        ("Billing_One_Off_Charges__c", "Billing One-Off Charges"),
        ("Billing_Credits__c", "Billing Credits"),
        ("Billing_Taxes__c", "Billing Taxes"),
        ("Billing_Previous_Balance__c", "Billing Previous Balance"),
        ("Billing_Payments_Received__c", "Billing Payments Received"),
        ("Billing_Amount_Due__c", "Billing Amount Due"),
    )
    return [
        Field("Billing_Period_Start__c", "date", "Billing Period Start", custom=True),
        Field("Billing_Period_End__c", "date", "Billing Period End", custom=True),
        *(_money(name, label, custom=True) for name, label in money),
        Field("Billing_Next_Bill_Date__c", "date", "Billing Next Bill Date", custom=True),
        Field(
            "Billing_Last_Invoice_Number__c", "string", "Billing Last Invoice Number", length=80, custom=True
        ),
        Field(
            "Billing_Last_Invoice_Status__c", "string", "Billing Last Invoice Status", length=40, custom=True
        ),
        Field("Billing_Summary_Updated__c", "datetime", "Billing Summary Updated", custom=True),
    ]


def _build() -> dict[str, SObject]:
    objs = [
        SObject(
            "Account",
            "Account",
            "Accounts",
            "001",
            {
                f.name: f
                for f in [
                    *_system_fields("Account"),
                    Field("Name", "string", "Account Name", length=255, nillable=False, required=True),
                    Field(
                        "Type",
                        "picklist",
                        "Account Type",
                        length=255,
                        picklist=("Prospect", "Customer - Direct", "Customer - Channel", "Partner", "Other"),
                    ),
                    Field("BillingStreet", "textarea", "Billing Street", length=255),
                    Field("BillingCity", "string", "Billing City", length=40),
                    Field("BillingState", "string", "Billing State/Province", length=80),
                    Field("BillingPostalCode", "string", "Billing Zip/Postal Code", length=20),
                    Field("BillingCountry", "string", "Billing Country", length=80),
                    _currency(),
                    _key_field(),
                    *_billing_summary_fields(),
                ]
            },
            {
                "Contacts": ChildRelationship("Contact", "AccountId", "Contacts", False),
                "Opportunities": ChildRelationship("Opportunity", "AccountId", "Opportunities", True),
            },
        ),
        SObject(
            "Contact",
            "Contact",
            "Contacts",
            "003",
            {
                f.name: f
                for f in [
                    *_system_fields("Contact"),
                    _ref("AccountId", "Account ID", "Account", "Account"),
                    Field("FirstName", "string", "First Name", length=40),
                    Field("LastName", "string", "Last Name", length=80, nillable=False, required=True),
                    Field("Email", "email", "Email", length=80),
                    _currency(),
                ]
            },
        ),
        SObject(
            "Product2",
            "Product",
            "Products",
            "01t",
            {
                f.name: f
                for f in [
                    *_system_fields("Product"),
                    Field("Name", "string", "Product Name", length=255, nillable=False, required=True),
                    Field("ProductCode", "string", "Product Code", length=255),
                    Field(
                        "Family",
                        "picklist",
                        "Product Family",
                        length=255,
                        picklist=("Software", "Services", "Training", "Hardware"),
                    ),
                    Field("IsActive", "boolean", "Active", nillable=False, default=False),
                    Field(
                        "Billing_Type__c",
                        "picklist",
                        "Billing Type",
                        length=255,
                        picklist=("Recurring", "One-Time"),
                        custom=True,
                    ),
                    Field(
                        "Billing_Period__c",
                        "picklist",
                        "Billing Period",
                        length=255,
                        picklist=("Monthly", "Quarterly", "Yearly"),
                        custom=True,
                    ),
                    _currency(),
                    _key_field(),
                ]
            },
            {"PricebookEntries": ChildRelationship("PricebookEntry", "Product2Id", "PricebookEntries", True)},
        ),
        SObject(
            "Pricebook2",
            "Price Book",
            "Price Books",
            "01s",
            {
                f.name: f
                for f in [
                    *_system_fields("Price Book"),
                    Field("Name", "string", "Price Book Name", length=255, nillable=False, required=True),
                    Field("IsActive", "boolean", "Active", nillable=False, default=False),
                    Field(
                        "IsStandard",
                        "boolean",
                        "Is Standard Price Book",
                        nillable=False,
                        createable=False,
                        updateable=False,
                        default=False,
                    ),
                ]
            },
            {
                "PricebookEntries": ChildRelationship(
                    "PricebookEntry", "Pricebook2Id", "PricebookEntries", True
                )
            },
        ),
        SObject(
            "PricebookEntry",
            "Price Book Entry",
            "Price Book Entries",
            "01u",
            {
                f.name: f
                for f in [
                    *_system_fields("Price Book Entry"),
                    Field("Name", "string", "Product Name", length=255, calculated=True),
                    _ref(
                        "Pricebook2Id",
                        "Price Book ID",
                        "Pricebook2",
                        "Pricebook2",
                        nillable=False,
                        required=True,
                        updateable=False,
                    ),
                    _ref(
                        "Product2Id",
                        "Product ID",
                        "Product2",
                        "Product2",
                        nillable=False,
                        required=True,
                        updateable=False,
                    ),
                    Field("ProductCode", "string", "Product Code", length=255, calculated=True),
                    _money("UnitPrice", "List Price", nillable=False, required=True),
                    Field("IsActive", "boolean", "Active", nillable=False, default=False),
                    Field("UseStandardPrice", "boolean", "Use Standard Price", nillable=False, default=False),
                    Field(
                        "CurrencyIsoCode",
                        "picklist",
                        "Currency ISO Code",
                        length=3,
                        picklist=CURRENCY_CODES,
                        default="USD",
                        updateable=False,
                    ),
                ]
            },
        ),
        SObject(
            "Opportunity",
            "Opportunity",
            "Opportunities",
            "006",
            {
                f.name: f
                for f in [
                    *_system_fields("Opportunity"),
                    _ref("AccountId", "Account ID", "Account", "Account"),
                    Field("Name", "string", "Name", length=120, nillable=False, required=True),
                    Field("Description", "textarea", "Description", length=32000),  # Long Text Area
                    Field(
                        "StageName",
                        "picklist",
                        "Stage",
                        length=255,
                        nillable=False,
                        required=True,
                        picklist=tuple(STAGES),
                    ),
                    _money("Amount", "Amount"),
                    Field("Probability", "percent", "Probability (%)", precision=3, scale=0),
                    Field("CloseDate", "date", "Close Date", nillable=False, required=True),
                    Field("IsClosed", "boolean", "Closed", nillable=False, calculated=True),
                    Field("IsWon", "boolean", "Won", nillable=False, calculated=True),
                    Field(
                        "LastStageChangeDate",
                        "datetime",
                        "Last Stage Change Date",
                        createable=False,
                        updateable=False,
                        calculated=True,
                    ),
                    _currency(),
                    _ref("Pricebook2Id", "Price Book ID", "Pricebook2", "Pricebook2"),
                    Field(
                        "Billing_Invoice_Number__c",
                        "string",
                        "Billing Invoice Number",
                        length=80,
                        custom=True,
                    ),
                    Field(
                        "Billing_Invoiced_Amount__c",
                        "currency",
                        "Billing Invoiced Amount",
                        precision=16,
                        scale=2,
                        custom=True,
                    ),
                    Field(
                        "Billing_Payment_Status__c",
                        "picklist",
                        "Billing Payment Status",
                        length=255,
                        picklist=PAYMENT_STATUSES,
                        custom=True,
                    ),
                    Field(
                        "SAP_Accounting_Document__c",
                        "string",
                        "SAP Accounting Document",
                        length=40,
                        custom=True,
                    ),
                    Field("Billing_Last_Sync__c", "datetime", "Billing Last Sync", custom=True),
                    _key_field(),
                ]
            },
            {
                "OpportunityLineItems": ChildRelationship(
                    "OpportunityLineItem", "OpportunityId", "OpportunityLineItems", True
                )
            },
        ),
        SObject(
            "OpportunityLineItem",
            "Opportunity Product",
            "Opportunity Product",
            "00k",
            {
                f.name: f
                for f in [
                    *_system_fields("Line Item"),
                    _ref(
                        "OpportunityId",
                        "Opportunity ID",
                        "Opportunity",
                        "Opportunity",
                        nillable=False,
                        required=True,
                        updateable=False,
                    ),
                    _ref(
                        "PricebookEntryId",
                        "Price Book Entry ID",
                        "PricebookEntry",
                        "PricebookEntry",
                        required=True,
                        updateable=False,
                    ),
                    _ref(
                        "Product2Id", "Product ID", "Product2", "Product2", createable=False, updateable=False
                    ),
                    Field("Name", "string", "Opportunity Product Name", length=376, calculated=True),
                    Field("ProductCode", "string", "Product Code", length=255, calculated=True),
                    Field(
                        "Quantity", "double", "Quantity", precision=12, scale=2, nillable=False, required=True
                    ),
                    _money("UnitPrice", "Sales Price", required=True),
                    _money("ListPrice", "List Price", calculated=True),
                    Field("Discount", "percent", "Discount", precision=5, scale=2),
                    _money("TotalPrice", "Total Price", calculated=True),
                    Field("ServiceDate", "date", "Date"),
                    Field("Service_End_Date__c", "date", "Service End Date", custom=True),
                    Field(
                        "CurrencyIsoCode",
                        "picklist",
                        "Currency ISO Code",
                        length=3,
                        picklist=CURRENCY_CODES,
                        calculated=True,
                    ),
                ]
            },
        ),
    ]
    return {o.name: o for o in objs}


OBJECTS: dict[str, SObject] = _build()
OBJECTS_LOWER = {k.lower(): v for k, v in OBJECTS.items()}
BY_PREFIX = {o.key_prefix: o for o in OBJECTS.values()}


def sobject(name: str) -> SObject | None:
    return OBJECTS.get(name) or OBJECTS_LOWER.get(name.lower())


def child_relationships_of(obj: SObject) -> list[dict[str, object]]:
    return [
        {
            "cascadeDelete": rel.cascade_delete,
            "childSObject": rel.child,
            "deprecatedAndHidden": False,
            "field": rel.field,
            "junctionIdListNames": [],
            "junctionReferenceTo": [],
            "relationshipName": rel.name,
            "restrictedDelete": False,
        }
        for rel in obj.children.values()
    ]
