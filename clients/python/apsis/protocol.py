"""The binary protocol (docs/protocol.md), byte by byte: frames, request bodies, responses.
Plain functions over bytes, shared by the blocking and the asyncio client."""
import hashlib
import hmac
import struct
from dataclasses import dataclass, field
from typing import List, Optional

HEADER = 16  # u32 length, u8 kind, u8 opcode, u16 flags, u64 id
HELLO, REQUEST, RESPONSE, ERROR = 1, 2, 3, 4
GET, PUT, DEL, LOOKUP, LOCK, UNLOCK, STAT, PING, ADMIN = range(1, 10)
LIST, CHANGE, PART, COMMIT, READ, LOGIN = 11, 12, 13, 14, 15, 16
CHUNK = 1 << 20  # a large value's chunk: what one PART carries at most
INCR, INCR_FLOAT, APPEND, SETRANGE, MERGE_PATCH = range(5)  # what a CHANGE does
POLICIES = {"one": 1, "quorum": 2, "all": 3}
FLAG_READ_SHIFT = 4  # bits 4-5: a read's policy (POLICIES), 0 the node's
FLAG_GROUPS = 0x8  # the body ends with the groups to ask: u8 count, u32 each
COND_NONE, COND_IF_ABSENT, COND_IF_PRESENT, COND_IF_VERSION = range(4)
STATUSES = ["ok", "not_found", "condition_failed", "stale", "invalid", "io_error", "corruption",
            "timeout", "unavailable", "fenced", "denied"]


class ApsisError(Exception):
    """Base of every error this client raises."""


class ProtocolError(ApsisError):
    """The node sent something this client cannot read, or an error frame."""


class OperationError(ApsisError):
    """An operation that did not happen: `result` says why, replica by replica."""

    def __init__(self, result: "Result"):
        self.result = result
        detail = f": {result.message}" if result.message else ""
        replicas = ", ".join(f"group {r.group} {r.node}/{r.backend}: {r.status}" for r in result.replicas)
        super().__init__(f"{result.status}{detail}" + (f" ({replicas})" if replicas else ""))


class NotFound(OperationError):
    """No live record under the key."""


class ConditionFailed(OperationError):
    """An if-absent / if-present / compare-and-swap condition was false: nothing was written."""


class Fenced(OperationError):
    """The write carried a lock token older than one already seen for the key."""


class Unavailable(OperationError):
    """Too few replicas answered for the policy (unavailable or timeout)."""


class Denied(OperationError):
    """No login, a failed one, or a user without the permission (docs/security.md)."""


ERRORS = {"not_found": NotFound, "condition_failed": ConditionFailed, "fenced": Fenced,
          "unavailable": Unavailable, "timeout": Unavailable, "denied": Denied}


@dataclass(frozen=True)
class Version:
    stamp: int = 0
    node: int = 0

    def __str__(self):
        return f"{self.stamp >> 16}.{self.stamp & 0xffff}@{self.node}"


@dataclass
class Replica:
    """What one replica did: its group, node, backend, status and the version it holds."""
    group: int
    node: str
    backend: int
    status: str
    version: Version


@dataclass
class Listed:
    """One key of a listing's page: its metadata (and its parts, when they were asked for)."""
    key: bytes
    version: Version
    expiry_ms: int = 0
    user_flags: int = 0
    deleted: bool = False
    json_size: int = 0
    data_size: int = 0
    json: bytes = b""
    data: bytes = b""


@dataclass
class Result:
    """An operation's outcome: the policy's verdict over the replicas, and each replica's."""
    status: str = "ok"
    message: str = ""
    version: Version = field(default_factory=Version)
    existed: bool = False
    data: bytes = b""
    json: bytes = b""
    expiry_ms: int = 0
    user_flags: int = 0
    json_size: int = 0
    data_size: int = 0
    token: int = 0
    replicas: List[Replica] = field(default_factory=list)
    cursor: str = ""  # a listing: where the next page starts ("0": it is complete)
    total: int = 0  # a read: the value's whole size
    listed: List[Listed] = field(default_factory=list)
    salt: bytes = b""  # a login's step 1: the password's salt, PBKDF2's iterations, a nonce
    iterations: int = 0
    nonce: bytes = b""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def frame(kind: int, op: int, fid: int, body: bytes = b"", flags: int = 0) -> bytes:
    return struct.pack("<IBBHQ", 12 + len(body), kind, op, flags, fid) + body


def hello_body(name: str = "apsis-python") -> bytes:
    n = name.encode()
    return struct.pack("<HHH", 1, 1, len(n)) + n + struct.pack("<I", 1 << 20)


def _s16(b: bytes) -> bytes:
    if len(b) > 0xffff:
        raise ValueError("longer than 65535 bytes")
    return struct.pack("<H", len(b)) + b


def _s32(b: bytes) -> bytes:
    return struct.pack("<I", len(b)) + b


def _bytes(x) -> bytes:
    return x if isinstance(x, bytes) else str(x).encode()


def request_body(op: int, ns: str = "", key=b"", *, cond=COND_NONE, expected: Optional[Version] = None,
                 fence=0, expiry_ms=0, user_flags=0, json=b"", data=b"", lease_ms=0, token=0,
                 command=b"", groups=(), cursor="0", limit=0, match=b"", payload=False,
                 since: Optional[Version] = None, change=0, by=0, upload="", offset=0,
                 length=0) -> bytes:
    if op in (STAT, PING):
        return b""
    if op == LIST:
        v = since or Version()
        return (_s16(ns.encode()) + _s16(_bytes(cursor)) + struct.pack("<I", limit) +
                _s16(_bytes(match)) + struct.pack("<BQQ", 1 if payload else 0, v.stamp, v.node))
    if op == ADMIN:
        return _s32(_bytes(command))
    out = _s16(ns.encode()) + _s16(_bytes(key))
    if op == LOGIN:  # step, user, the client's nonce (step 1) or proof (step 2)
        return struct.pack("<B", offset) + _s16(_bytes(key)) + _s16(_bytes(data))
    if op == PART:
        return out + _s16(upload.encode()) + struct.pack("<Q", offset) + _s32(_bytes(data))
    if op == READ:
        return out + struct.pack("<QQ", offset, length)
    if op == COMMIT:
        out += _s16(upload.encode()) + struct.pack("<Q", length)
    if op == CHANGE:
        out += struct.pack("<Bq", change, by)
    if op in (PUT, DEL, CHANGE, COMMIT):
        out += struct.pack("<B", cond)
        if cond == COND_IF_VERSION:
            v = expected or Version()
            out += struct.pack("<QQ", v.stamp, v.node)
        out += struct.pack("<Q", fence)
        if op == PUT:
            out += struct.pack("<QI", expiry_ms, user_flags) + _s32(_bytes(json)) + _s32(_bytes(data))
        if op == CHANGE:
            out += struct.pack("<Q", expiry_ms) + _s32(_bytes(data))
        if op == COMMIT:
            out += struct.pack("<Q", expiry_ms)
    elif op == LOCK:
        out += struct.pack("<I", lease_ms)
    elif op == UNLOCK:
        out += struct.pack("<Q", token)
    if groups:  # key requests only (the frame carries FLAG_GROUPS)
        out += struct.pack("<B", len(groups)) + b"".join(struct.pack("<I", g) for g in groups)
    return out


class _Reader:
    def __init__(self, b: bytes):
        self.b, self.pos = b, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.b):
            raise ProtocolError("response body truncated")
        out = self.b[self.pos:self.pos + n]
        self.pos += n
        return out

    def u(self, fmt: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))[0]

    def s16(self) -> bytes:
        return self.take(self.u("H"))

    def s32(self) -> bytes:
        return self.take(self.u("I"))

    def version(self) -> Version:
        return Version(self.u("Q"), self.u("Q"))


def _status(code: int) -> str:
    if code >= len(STATUSES):
        raise ProtocolError(f"unknown status {code}")
    return STATUSES[code]


def parse_response(op: int, body: bytes) -> Result:
    r = _Reader(body)
    res = Result(status=_status(r.u("B")), message=r.s16().decode(errors="replace"),
                 version=r.version(), existed=r.u("B") != 0)
    if op in (GET, CHANGE):
        res.expiry_ms, res.user_flags, res.json, res.data = r.u("Q"), r.u("I"), r.s32(), r.s32()
    elif op == LOOKUP:
        res.expiry_ms, res.user_flags, res.json_size, res.data_size = r.u("Q"), r.u("I"), r.u("I"), r.u("I")
    elif op == LOCK:
        res.token, res.expiry_ms = r.u("Q"), r.u("Q")
    elif op in (STAT, ADMIN):
        res.data = r.s32()
    elif op == READ:
        res.expiry_ms, res.user_flags, res.total, res.data = r.u("Q"), r.u("I"), r.u("Q"), r.s32()
    elif op == LOGIN:
        res.iterations, res.salt, res.nonce = r.u("I"), r.s16(), r.s16()
    elif op == LIST:
        res.cursor = r.s16().decode()
        for _ in range(r.u("I")):
            res.listed.append(Listed(r.s16(), r.version(), r.u("Q"), r.u("I"), r.u("B") != 0,
                                     r.u("I"), r.u("I"), r.s32(), r.s32()))
    for _ in range(r.u("H")):
        group, node, backend = r.u("I"), r.s16().decode(errors="replace"), r.u("I")
        res.replicas.append(Replica(group, node, backend, _status(r.u("B")), r.version()))
    if r.pos != len(body):
        raise ProtocolError("trailing bytes in a response")
    return res


def parse_error(body: bytes) -> str:
    r = _Reader(body)
    code = r.u("H")
    return f"server error {code}: {r.s16().decode(errors='replace')}"


def split_frame(buf: bytearray):
    """One whole frame from the front of buf as (kind, op, id, body), removed; or None."""
    if len(buf) < 4:
        return None
    length = struct.unpack_from("<I", buf)[0]
    if length < 12:
        raise ProtocolError(f"frame length {length} below 12")
    if len(buf) < 4 + length:
        return None
    _, kind, op, _, fid = struct.unpack_from("<IBBHQ", buf)
    body = bytes(buf[HEADER:4 + length])
    del buf[:4 + length]
    return kind, op, fid, body


def check(result: Result, missing_ok: bool = False) -> Result:
    """The result, or the OperationError subclass its status names."""
    if result.ok or (missing_ok and result.status == "not_found"):
        return result
    raise ERRORS.get(result.status, OperationError)(result)


def login_proof(user: str, password: str, client_nonce: bytes, challenge: "Result") -> bytes:
    """SCRAM-SHA-256's client proof (RFC 5802) for a login's step 2 (docs/protocol.md): the
    password itself never crosses the wire."""
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), challenge.salt, challenge.iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    message = user.encode() + b"," + client_nonce + b"," + challenge.nonce
    signature = hmac.new(stored_key, message, hashlib.sha256).digest()
    return bytes(a ^ b for a, b in zip(client_key, signature))
