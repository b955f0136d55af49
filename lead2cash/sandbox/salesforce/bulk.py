"""Bulk API 2.0 ingest jobs (``/jobs/ingest``): insert, update, upsert and delete from CSV.

Jobs are processed synchronously when the client sets ``UploadComplete``: the PATCH answers with
``UploadComplete`` and the next GET already shows ``JobComplete``, which every client's polling loop
accepts. The whole job is stamped with one SystemModstamp, like a bulk batch on the platform.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lead2cash.sandbox.salesforce.api import Call, Handler, Reply
from lead2cash.sandbox.salesforce.schema import API_VERSION, sobject
from lead2cash.sandbox.salesforce.store import SfError, format_datetime

if TYPE_CHECKING:
    import datetime as dt

    from lead2cash.sandbox.salesforce.app import SalesforceSandbox

OPERATIONS = ("insert", "update", "upsert", "delete")
DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^", "BACKQUOTE": "`"}
CSV_TYPE = "text/csv"


def bulk_error(message: str, code: str = "INVALIDJOB", status: int = 400) -> SfError:
    return SfError(status, code, message)


@dataclass
class Job:
    id: str
    object: str
    operation: str
    external_id: str | None
    created: dt.datetime
    line_ending: str = "LF"
    column_delimiter: str = "COMMA"
    state: str = "Open"
    modstamp: dt.datetime | None = None
    data: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    successes: list[list[str]] = field(default_factory=list)
    failures: list[list[str]] = field(default_factory=list)
    unprocessed: list[list[str]] = field(default_factory=list)
    processing_ms: int = 0

    def info(self, base: str, full: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": "005Dx0000000001AAA",
            "createdDate": format_datetime(self.created),
            "systemModstamp": format_datetime(self.modstamp or self.created),
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(API_VERSION),
            "contentUrl": f"{base[1:]}/jobs/ingest/{self.id}/batches",
            "lineEnding": self.line_ending,
            "columnDelimiter": self.column_delimiter,
        }
        if self.external_id:
            out["externalIdFieldName"] = self.external_id
        if full:
            out.update(
                {
                    "jobType": "V2Ingest",
                    "numberRecordsProcessed": len(self.successes) + len(self.failures),
                    "numberRecordsFailed": len(self.failures),
                    "retries": 0,
                    "totalProcessingTime": self.processing_ms,
                    "apiActiveProcessingTime": self.processing_ms,
                    "apexProcessingTime": 0,
                }
            )
        return out


class BulkApi:
    def __init__(self, sandbox: SalesforceSandbox) -> None:
        self.sb = sandbox
        self.jobs: dict[str, Job] = {}
        self.batches_today = 0

    def route(self, method: str, seg: list[str]) -> tuple[str, Handler]:
        n = len(seg)
        if n == 0:
            if method == "POST":
                return "bulk.create", self.create
            if method == "GET":
                return "bulk.get", self.list_jobs
        elif n == 1:
            ops = {
                "GET": ("bulk.get", self.get),
                "PATCH": ("bulk.close", self.patch),
                "DELETE": ("bulk.delete", self.delete),
            }
            if method in ops:
                return ops[method]
        elif n == 2 and seg[1] == "batches" and method == "PUT":
            return "bulk.upload", self.upload
        elif (
            n == 2
            and seg[1] in ("successfulResults", "failedResults", "unprocessedrecords")
            and method == "GET"
        ):
            return "bulk.results", self.results
        raise SfError(404, "NOT_FOUND", "The requested resource does not exist")

    def _job(self, call: Call) -> Job:
        job = self.jobs.get(call.segments[2])
        if job is None:
            raise bulk_error("Job not found", "NOT_FOUND", 404)
        return job

    def create(self, call: Call) -> Reply:
        body = call.json()
        obj = sobject(str(body.get("object", "")))
        operation = body.get("operation")
        if obj is None:
            raise bulk_error(f"sObject type '{body.get('object')}' is not supported.")
        if operation not in OPERATIONS:
            raise bulk_error(f"InvalidJob : Invalid operation: {operation}")
        external = body.get("externalIdFieldName")
        if operation == "upsert":
            f = obj.field(str(external or ""))
            if f is None or not (f.external_id or f.name == "Id"):
                raise bulk_error(f"InvalidJob : External ID was blank or invalid for {obj.name}: {external}")
            external = f.name
        if body.get("contentType", "CSV") != "CSV":
            raise bulk_error("InvalidJob : contentType must be CSV")
        delimiter = body.get("columnDelimiter", "COMMA")
        if delimiter not in DELIMITERS:
            raise bulk_error(f"InvalidJob : Invalid column delimiter: {delimiter}")
        job = Job(
            id=self.sb.minter.mint("750"),
            object=obj.name,
            operation=operation,
            external_id=external if operation == "upsert" else None,
            created=self.sb.clock.now(),
            line_ending=body.get("lineEnding", "LF"),
            column_delimiter=delimiter,
        )
        self.jobs[job.id] = job
        return Reply(200, job.info(call.base, full=False))

    def list_jobs(self, call: Call) -> Reply:
        return Reply(
            200,
            {
                "done": True,
                "records": [j.info(call.base, full=False) for j in self.jobs.values()],
                "nextRecordsUrl": None,
            },
        )

    def get(self, call: Call) -> Reply:
        return Reply(200, self._job(call).info(call.base, full=True))

    def delete(self, call: Call) -> Reply:
        job = self._job(call)
        if job.state not in ("UploadComplete", "JobComplete", "Aborted", "Failed"):
            raise bulk_error("Job must be closed or aborted before it can be deleted", "INVALIDJOBSTATE")
        del self.jobs[job.id]
        return Reply(204)

    def upload(self, call: Call) -> Reply:
        job = self._job(call)
        if job.state != "Open":
            raise bulk_error(f"Job {job.id} is not open for uploads: {job.state}", "INVALIDJOBSTATE", 409)
        if not call.body:
            raise bulk_error("Request body is empty", "INVALIDBATCH")
        job.data.append(call.body.decode("utf-8-sig"))
        self.batches_today += 1
        return Reply(201, None)

    def patch(self, call: Call) -> Reply:
        job = self._job(call)
        state = call.json().get("state")
        if state == "Aborted":
            if job.state in ("JobComplete", "Failed"):
                raise bulk_error(f"Job is already {job.state}", "INVALIDJOBSTATE", 409)
            job.state = "Aborted"
            job.modstamp = self.sb.clock.now()
            return Reply(200, job.info(call.base, full=False))
        if state != "UploadComplete":
            raise bulk_error(f"InvalidJob : Invalid state: {state}", "INVALIDJOBSTATE")
        if job.state != "Open":
            raise bulk_error(f"Job {job.id} is not open: {job.state}", "INVALIDJOBSTATE", 409)
        job.state = "UploadComplete"
        reply = Reply(200, job.info(call.base, full=False), write=True)
        self._process(job)
        return reply

    def _rows(self, job: Job) -> tuple[list[str], list[list[str]]]:
        delimiter = DELIMITERS[job.column_delimiter]
        header: list[str] = []
        rows: list[list[str]] = []
        for chunk in job.data:
            reader = csv.reader(io.StringIO(chunk, newline=""), delimiter=delimiter)
            chunk_header = next(reader, [])
            if not header:
                header = chunk_header
            rows.extend(r for r in reader if r)
        return header, rows

    def _process(self, job: Job) -> None:
        import time

        started = time.perf_counter()
        header, rows = self._rows(job)
        job.header = header
        if not header:
            job.state = "Failed"
            job.modstamp = self.sb.clock.now()
            return
        store, effects = self.sb.store, self.sb.effects
        obj = sobject(job.object)
        assert obj is not None
        stamp = self.sb.clock.now()
        for row in rows:
            values: dict[str, Any] = {}
            for name, cell in zip(header, row, strict=False):
                if cell == "":
                    continue  # an empty cell leaves the field as it is; #N/A sets null
                values[name] = None if cell == "#N/A" else cell
            try:
                if job.operation == "insert":
                    rid, created = store.create(obj.name, values, stamp, from_csv=True), True
                    effects.record(f"{obj.name}.create", rid)
                elif job.operation == "update":
                    rid_in = next((v for k, v in values.items() if k.lower() == "id"), None)
                    if not rid_in:
                        raise SfError(400, "MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
                    rest = {k: v for k, v in values.items() if k.lower() != "id"}
                    rid, created = store.update(obj.name, rid_in, rest, stamp, from_csv=True), False
                    effects.record(f"{obj.name}.update", rid)
                elif job.operation == "upsert":
                    assert job.external_id is not None
                    key = next((v for k, v in values.items() if k.lower() == job.external_id.lower()), None)
                    if not key:
                        raise SfError(
                            400, "MISSING_ARGUMENT", f"{job.external_id} not specified", [job.external_id]
                        )
                    rest = {k: v for k, v in values.items() if k.lower() != job.external_id.lower()}
                    result = store.upsert(obj.name, job.external_id, key, rest, stamp, from_csv=True)
                    rid, created = result.id, result.created
                    effects.record(f"upsert:{obj.name}", key)
                    effects.record(f"{obj.name}.{'create' if created else 'update'}", rid)
                else:
                    rid_in = next((v for k, v in values.items() if k.lower() == "id"), "") or ""
                    rid, created = store.delete(obj.name, rid_in, stamp), False
                    effects.record(f"{obj.name}.delete", rid)
                job.successes.append([rid, "true" if created else "false", *row])
            except SfError as err:
                fields = ",".join(err.fields)
                job.failures.append(["", f"{err.code}:{err.message}:{fields} --", *row])
        job.state = "JobComplete"
        job.modstamp = self.sb.clock.now()
        job.processing_ms = int((time.perf_counter() - started) * 1000)

    def results(self, call: Call) -> Reply:
        job = self._job(call)
        kind = call.segments[3]
        out = io.StringIO()
        writer = csv.writer(
            out, lineterminator="\n" if job.line_ending == "LF" else "\r\n", quoting=csv.QUOTE_ALL
        )
        if kind == "successfulResults":
            writer.writerow(["sf__Id", "sf__Created", *job.header])
            writer.writerows(job.successes)
        elif kind == "failedResults":
            writer.writerow(["sf__Id", "sf__Error", *job.header])
            writer.writerows(job.failures)
        else:
            writer.writerow(job.header)
            writer.writerows(job.unprocessed)
        return Reply(200, out.getvalue(), content_type=CSV_TYPE)
