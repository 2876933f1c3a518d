"""Data lake (fsspec object store: local folder, s3://, oss://) and the SQLite control-plane catalogue."""

from domainrag.storage.catalog import Catalog
from domainrag.storage.lake import Lake, validate_key
from domainrag.storage.options import redact, resolve, storage_options
from domainrag.storage.preflight import (
    CheckResult,
    Failure,
    check_list,
    check_read,
    check_write,
    preflight,
    require,
)

__all__ = [
    "Catalog",
    "CheckResult",
    "Failure",
    "Lake",
    "check_list",
    "check_read",
    "check_write",
    "preflight",
    "redact",
    "require",
    "resolve",
    "storage_options",
    "validate_key",
]
