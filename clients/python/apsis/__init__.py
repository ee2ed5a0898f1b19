"""apsis: a Python client of apsis nodes over the binary protocol (standard library only)."""
from .client import AsyncClient, Client, new_upload, tls_context
from .protocol import (ApsisError, ConditionFailed, Denied, Fenced, NotFound, OperationError, ProtocolError,
                       Listed, Replica, Result, Unavailable, Version)

__all__ = ["AsyncClient", "Client", "ApsisError", "ConditionFailed", "Denied", "Fenced", "NotFound",
           "Listed", "OperationError", "ProtocolError", "Replica", "Result", "Unavailable",
           "Version", "new_upload", "tls_context"]
