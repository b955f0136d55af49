"""A hostile SAP SOAP endpoint for the reliability scenarios: it answers the journal entry service with
what a broken or malicious server could send (billion laughs, external entities, garbage, a truncated
envelope, HTML, an endless body). Business partners still go to the SAP sandbox; only the SOAP endpoint
is replaced, through the hub's own config (``soap.journal_entry_post`` is a full URL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_LOL = "".join(
    f'<!ENTITY lol{n} "{("&lol" + str(n - 1) + ";") * 10}">' if n > 1 else '<!ENTITY lol1 "lol">'
    for n in range(1, 10)
)
_ENVELOPE = (
    '<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/"><soap-env:Body>'
    '<n0:JournalEntryBulkCreateConfirmation xmlns:n0="http://sap.com/xi/SAPSCORE/SFIN"><MessageHeader>'
    "<ID>{id}</ID><CreationDateTime>2024-01-01T00:00:00Z</CreationDateTime></MessageHeader><Log/>"
    "</n0:JournalEntryBulkCreateConfirmation></soap-env:Body></soap-env:Envelope>"
)
BODIES: dict[str, bytes] = {
    # 10**9 "lol"s (3 GB) if an XML parser expanded it.
    "/laughs": (f'<?xml version="1.0"?><!DOCTYPE lolz [{_LOL}]>' + _ENVELOPE.format(id="&lol9;")).encode(),
    "/xxe": (
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        + _ENVELOPE.format(id="&xxe;")
    ).encode(),
    "/garbage": b"this is not <xml",
    "/truncated": _ENVELOPE.format(id="1").encode()[:180],
    "/html": b"<html><body><h1>502 Bad Gateway</h1></body></html>",
    "/empty": b"",
}


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # a WSDL fetch would land here: nothing to offer
        self.send_response(404)
        self.end_headers()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        path = self.path.split("?", 1)[0]
        if path == "/endless":
            self.send_response(200)
            self.send_header("content-type", "text/xml")
            self.end_headers()
            chunk = b"<a>" * 65536
            try:
                for _ in range(3000):  # ~590 MB if anyone read it all
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        body = BODIES[path]
        self.send_response(200)
        self.send_header("content-type", "text/xml; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def hostile_soap() -> Iterator[str]:
    """The base URL of a hostile SOAP server (paths: the keys of ``BODIES`` and ``/endless``)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
