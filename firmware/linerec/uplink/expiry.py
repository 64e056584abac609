"""Which certificate the uplink presents, and when it expires (for the health telemetry).

The expiry is read from the certificate's DER directly (RFC 5280: tbsCertificate, its
validity, notAfter) rather than through cryptography's X.509: the daemon needs this one date,
and X.509 with the key serialization it brings is 1.2 MB of the recorder's memory (issue 19).
The certificates read here were checked whole before: by the site's enrolment or, renewed,
by `tls.check_renewed` before they were kept, and by the TLS handshake that presents them.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from pathlib import Path

from linerec.store.keys import RENEWED_CERT  # in the store directory

_BEGIN, _END = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
_SEQUENCE, _EXPLICIT_0, _UTC_TIME, _GENERALIZED_TIME = 0x30, 0xA0, 0x17, 0x18


def current_cert(configured: Path | None, store_dir: Path) -> Path | None:
    """The certificate the uplink presents: a renewed one kept in `store_dir` unless the
    configured one expires later (a certificate renewed within the second of the configured
    one's issue expires with it, and is still the newer), else the configured one."""
    renewed = store_dir / RENEWED_CERT
    if not renewed.exists():
        return configured
    if configured is None or expires(renewed) >= expires(configured):
        return renewed
    return configured


def expires(path: Path) -> dt.datetime:
    """The notAfter of the first certificate in the PEM file `path`, in UTC; ValueError
    naming the file if it holds none that can be read."""
    try:
        return _not_after(_first_der(path.read_bytes()))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _first_der(pem: bytes) -> bytes:
    start = pem.find(_BEGIN)
    end = pem.find(_END, start + 1)
    if start < 0 or end < 0:
        raise ValueError("no PEM certificate (-----BEGIN CERTIFICATE-----)")
    try:
        return base64.b64decode(b"".join(pem[start + len(_BEGIN) : end].split()), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"certificate not in base64 ({exc})") from None


def _not_after(der: bytes) -> dt.datetime:
    certificate, _ = _element(der, 0, _SEQUENCE, "certificate")
    tbs, _ = _element(der, certificate, _SEQUENCE, "tbsCertificate")
    at = tbs
    if der[at : at + 1] == bytes([_EXPLICIT_0]):  # version, absent in v1 certificates
        at = _skip(der, at)
    for _ in ("serialNumber", "signature", "issuer"):
        at = _skip(der, at)
    validity, _ = _element(der, at, _SEQUENCE, "validity")
    after = _skip(der, validity)  # past notBefore
    tag = der[after] if after < len(der) else None
    if tag not in (_UTC_TIME, _GENERALIZED_TIME):
        raise ValueError(f"certificate's notAfter not found at byte {after}")
    value, end = _content(der, after)
    return _time(tag, der[value:end])


def _element(der: bytes, at: int, tag: int, what: str) -> tuple[int, int]:
    """(start, end) of the content of the element at `at`, which must have `tag`."""
    if at >= len(der) or der[at] != tag:
        raise ValueError(f"certificate's {what} not found at byte {at}")
    return _content(der, at)


def _skip(der: bytes, at: int) -> int:
    return _content(der, at)[1]


def _content(der: bytes, at: int) -> tuple[int, int]:
    if at + 2 > len(der):
        raise ValueError(f"certificate cut short at byte {at}")
    length, start = der[at + 1], at + 2
    if length & 0x80:  # long form: the next (length & 0x7F) bytes hold the length
        count = length & 0x7F
        if count == 0 or count > 4 or start + count > len(der):
            raise ValueError(f"certificate has a bad length at byte {at + 1}")
        length, start = int.from_bytes(der[start : start + count], "big"), start + count
    if start + length > len(der):
        raise ValueError(f"certificate cut short at byte {at}")
    return start, start + length


def _time(tag: int | None, text: bytes) -> dt.datetime:
    # RFC 5280 4.1.2.5: UTCTime YYMMDDHHMMSSZ (YY >= 50 is 19YY) through 2049,
    # GeneralizedTime YYYYMMDDHHMMSSZ from 2050; always in UTC, with seconds.
    digits = text[:-1].decode("ascii", "replace")
    if not text.endswith(b"Z") or not digits.isdigit() or len(digits) not in (12, 14):
        raise ValueError(f"certificate's notAfter is not a time: {text!r}")
    if tag == _UTC_TIME and len(digits) == 12:
        year = int(digits[:2])
        digits = f"{1900 + year if year >= 50 else 2000 + year}{digits[2:]}"
    elif tag != _GENERALIZED_TIME or len(digits) != 14:
        raise ValueError(f"certificate's notAfter is not a time: {text!r}")
    year = int(digits[:4])
    month, day, hour, minute, second = (int(digits[i : i + 2]) for i in range(4, 14, 2))
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
