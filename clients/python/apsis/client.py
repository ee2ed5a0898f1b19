"""apsis clients over the binary protocol: `Client` (blocking) and `AsyncClient` (asyncio,
many requests in flight on one connection). Both take a session's settings (namespace,
groups to ask, policy for writes, read policy for reads, timeout) and answer `Result`s with one entry per
replica; an operation that did not happen raises the `OperationError` its status names."""
import asyncio
import json as jsonlib
import os
import socket
import ssl
import time
from typing import Callable, Optional

from . import protocol as p


class _Operations:
    """Every operation, built once: a subclass's `_run(op, flags, body, finish)` sends it and
    hands the Result to finish (blocking: returns its value; asyncio: an awaitable)."""

    def __init__(self, ns: str = "default", policy: Optional[str] = None, latest: bool = False,
                 timeout: float = 10.0, groups=(), read: Optional[str] = None):
        for name, value in (("policy", policy), ("read", read)):
            if value is not None and value not in p.POLICIES:
                raise ValueError(f"{name} must be one of {sorted(p.POLICIES)}, not {value!r}")
        if len(groups) > 255 or any(not 0 <= g < 2**32 for g in groups):
            raise ValueError("groups: at most 255 group numbers (u32)")
        self.ns, self.policy, self.latest, self.timeout = ns, policy, latest, timeout
        self.read_policy = "all" if latest else read
        self.groups = tuple(groups)  # key requests ask only these groups of the node's session

    def _flags(self, op: int) -> int:
        keyed = op in (p.GET, p.LOOKUP, p.PUT, p.DEL, p.CHANGE)
        flags = p.FLAG_GROUPS if keyed and self.groups else 0
        if op in (p.PUT, p.DEL, p.CHANGE) and self.policy:
            flags |= p.POLICIES[self.policy]
        if op in (p.GET, p.LOOKUP) and self.read_policy:
            flags |= p.POLICIES[self.read_policy] << p.FLAG_READ_SHIFT
        return flags

    def _op(self, op: int, key=b"", finish: Callable = p.check, **fields):
        groups = self.groups if op in (p.GET, p.LOOKUP, p.PUT, p.DEL, p.CHANGE) else ()
        return self._run(op, self._flags(op), p.request_body(op, self.ns, key, groups=groups, **fields), finish)

    def get(self, key):
        """The record under key (`.data`, `.json`, `.version`); NotFound if there is none."""
        return self._op(p.GET, key)

    def lookup(self, key):
        """The record's metadata (`.version`, `.expiry_ms`, `.data_size`...); NotFound if none."""
        return self._op(p.LOOKUP, key)

    def put(self, key, data=b"", *, json=b"", ttl: Optional[float] = None, if_absent=False,
            if_present=False, if_version: Optional[p.Version] = None, fence=0, user_flags=0):
        """Stores data (and a JSON part). Conditions: if_absent, if_present, or if_version (the
        stored version must be that one: compare-and-swap); ConditionFailed when false."""
        if sum([if_absent, if_present, if_version is not None]) > 1:
            raise ValueError("if_absent, if_present and if_version exclude each other")
        cond = (p.COND_IF_ABSENT if if_absent else p.COND_IF_PRESENT if if_present
                else p.COND_IF_VERSION if if_version is not None else p.COND_NONE)
        if isinstance(json, (dict, list)):
            json = jsonlib.dumps(json).encode()
        expiry = int(time.time() * 1000 + ttl * 1000) if ttl else 0
        return self._op(p.PUT, key, cond=cond, expected=if_version, fence=fence, expiry_ms=expiry,
                        user_flags=user_flags, json=json, data=data)

    def delete(self, key, *, if_version: Optional[p.Version] = None, fence=0):
        """Removes the key (a tombstone); `.existed` says whether a live record was there."""
        cond = p.COND_IF_VERSION if if_version is not None else p.COND_NONE
        return self._op(p.DEL, key, cond=cond, expected=if_version, fence=fence)

    def incr(self, key, by=1):
        """Adds `by` (an int, or a float as INCRBYFLOAT adds) to a counter, computed once by the
        key's owner in one group; the new value (int or float). OperationError (status
        invalid) when the stored value is not a number."""
        if isinstance(by, float):
            return self._op(p.CHANGE, key, change=p.INCR_FLOAT, data=repr(by).encode(),
                            finish=lambda r: float(p.check(r).data))
        return self._op(p.CHANGE, key, change=p.INCR, by=by, finish=lambda r: int(p.check(r).data))

    def append(self, key, data):
        """Appends bytes to the value; its new length."""
        return self._op(p.CHANGE, key, change=p.APPEND, data=data,
                        finish=lambda r: len(p.check(r).data))

    def patch(self, key, patch, *, if_version: Optional[p.Version] = None):
        """Applies a JSON merge patch (RFC 7386; a dict, or its text) to the JSON part, once, by
        the key's owner in one group; the Result (`.json` the patched document). With
        if_version, ConditionFailed unless the stored version is that one."""
        text = jsonlib.dumps(patch).encode() if isinstance(patch, (dict, list)) else p._bytes(patch)
        cond = p.COND_IF_VERSION if if_version is not None else p.COND_NONE
        return self._op(p.CHANGE, key, change=p.MERGE_PATCH, data=text, cond=cond,
                        expected=if_version)

    def read(self, key, offset=0, length=16 * p.CHUNK):
        """Bytes [offset, offset + length) of a value, plain or large (16 MiB a call at most):
        `.data`, and `.total`, the value's size."""
        return self._op(p.READ, key, offset=offset, length=length)

    def write_part(self, key, upload: str, index: int, data: bytes):
        """Writes part `index` of an upload (an id from new_upload()): 1 MiB, the last part
        shorter. Parts go in any order and stay invisible until commit()."""
        return self._op(p.PART, key, upload=upload, offset=index, data=data)

    def commit(self, key, upload: str, size: int, *, ttl: Optional[float] = None):
        """Makes an upload's parts the key's value of `size` bytes, visible from now on with a
        new version; OperationError (invalid) naming a part that is missing or short."""
        expiry = int(time.time() * 1000 + ttl * 1000) if ttl else 0
        return self._op(p.COMMIT, key, upload=upload, length=size, expiry_ms=expiry)

    def lock(self, key, lease_ms: int = 30000):
        """Waits for and takes the key's lease: `.token` (pass it as `fence` to writes) and
        `.expiry_ms`. The lease belongs to this connection: closing it releases the lease."""
        return self._op(p.LOCK, key, lease_ms=lease_ms)

    def unlock(self, key, token: int):
        """Ends the lease with this token; False if it had already ended."""
        return self._op(p.UNLOCK, key, token=token, finish=lambda r: p.check(r, missing_ok=True).ok)

    def list_page(self, cursor="0", *, match=None, prefix=None, limit=100, payload=False):
        """One page of the namespace's keys from `cursor` ("0" to start): `.listed` (Listed
        entries: key, version, sizes, expiry; json and data with payload) and `.cursor`, where
        the next page starts ("0": the listing is complete). `prefix` or `match` (a glob)
        narrow it."""
        if prefix is not None and match is not None:
            raise ValueError("give prefix or match, not both")
        if prefix is not None:
            match = b"".join(b"\\" + bytes([c]) if c in b"*?[]\\" else bytes([c])
                             for c in p._bytes(prefix)) + b"*"
        body = p.request_body(p.LIST, self.ns, cursor=cursor, limit=limit,
                              match=p._bytes(match or b""), payload=payload)
        return self._run(p.LIST, 0, body, p.check)

    def stat(self):
        """The node's statistics, as a dict."""
        return self._run(p.STAT, 0, b"", lambda r: jsonlib.loads(p.check(r).data))

    def admin(self, command: dict):
        """An operator's command (e.g. {"cmd": "routes"}), answered as a dict."""
        body = p.request_body(p.ADMIN, command=jsonlib.dumps(command).encode())
        return self._run(p.ADMIN, 0, body, lambda r: jsonlib.loads(p.check(r).data))


def tls_context(cafile: str, certfile: Optional[str] = None,
                keyfile: Optional[str] = None) -> ssl.SSLContext:
    """A TLS context for `tls=`: trusts the CA in cafile (the node's certificate must be
    signed by it and name the host connected to), and shows certfile/keyfile when the node
    asks for a client certificate (tls.client_ca)."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if certfile:
        ctx.load_cert_chain(certfile, keyfile)
    return ctx


def new_upload() -> str:
    """A fresh upload id for write_part() and commit(): 16 random hex digits."""
    return os.urandom(8).hex()


class Client(_Operations):
    """A blocking client: one connection, one request at a time. Use one per thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 7380, *, user: Optional[str] = None,
                 password: Optional[str] = None, tls: Optional[ssl.SSLContext] = None,
                 **session):
        super().__init__(**session)
        try:
            self._sock = socket.create_connection((host, port), timeout=self.timeout)
            if tls is not None:
                self._sock = tls.wrap_socket(self._sock, server_hostname=host)
        except OSError as e:
            raise p.ApsisError(f"connect {host}:{port}: {e}") from e
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = bytearray()
        self._next = 0
        self._send(p.frame(p.HELLO, 0, 0, p.hello_body()))
        kind, _, _, body = self._receive()
        if kind != p.HELLO:
            raise p.ProtocolError("the node did not answer the hello")
        if user is not None:
            nonce = os.urandom(16).hex().encode()
            challenge = self._op(p.LOGIN, user, offset=1, data=nonce)
            self._op(p.LOGIN, user, offset=2,
                     data=p.login_proof(user, password or "", nonce, challenge))

    def _send(self, data: bytes):
        try:
            self._sock.sendall(data)
        except OSError as e:
            raise p.ApsisError(f"send: {e}") from e

    def _receive(self):
        while True:
            f = p.split_frame(self._buf)
            if f:
                if f[0] == p.ERROR:
                    raise p.ProtocolError(p.parse_error(f[3]))
                return f
            try:
                chunk = self._sock.recv(1 << 16)
            except socket.timeout as e:
                raise p.ApsisError(f"no answer within {self.timeout} s") from e
            except OSError as e:
                raise p.ApsisError(f"receive: {e}") from e
            if not chunk:
                raise p.ApsisError("the node closed the connection")
            self._buf += chunk

    def upload(self, key, fileobj, *, window=8):
        """Stores what a binary file object holds, of any size, as a large value: parts of
        1 MiB (`window` in flight), then the commit that makes it visible. The commit's
        Result."""
        upload = new_upload()
        size, index, done = 0, 0, False
        while not done:
            parts = []
            for _ in range(window):
                data = fileobj.read(p.CHUNK)
                if not data and index > 0:
                    done = True
                    break
                parts.append(p.request_body(p.PART, self.ns, key, upload=upload, offset=index,
                                            data=data))
                size, index = size + len(data), index + 1
                if len(data) < p.CHUNK:
                    done = True
                    break
            for r in self._run_many(p.PART, parts):
                p.check(r)
        return self._op(p.COMMIT, key, upload=upload, length=size)

    def download(self, key, fileobj):
        """Writes a value of any size, plain or large, to a binary file object, 16 MiB a read;
        its size."""
        at, total = 0, None
        while total is None or at < total:
            r = self.read(key, at)
            total = r.total
            if not r.data:
                break
            fileobj.write(r.data)
            at += len(r.data)
        return at

    def _run_many(self, op, bodies):
        """Requests in flight together (one send), their Results in order."""
        first = self._next + 1
        self._send(b"".join(p.frame(p.REQUEST, op, first + i, b) for i, b in enumerate(bodies)))
        self._next += len(bodies)
        out = []
        for i in range(len(bodies)):
            kind, rop, fid, rbody = self._receive()
            if kind != p.RESPONSE or fid != first + i:
                raise p.ProtocolError(f"expected the response to request {first + i}")
            out.append(p.parse_response(rop, rbody))
        return out

    def _run(self, op, flags, body, finish):
        self._next += 1
        self._send(p.frame(p.REQUEST, op, self._next, body, flags))
        kind, rop, fid, rbody = self._receive()
        if kind != p.RESPONSE or fid != self._next:
            raise p.ProtocolError(f"expected the response to request {self._next}, got frame {kind}/{fid}")
        return finish(p.parse_response(rop, rbody))

    def scan(self, *, match=None, prefix=None, page=1000, payload=False):
        """Every key of the namespace (Listed entries), page by page: memory is one page's.
        A key present for the whole walk is returned at least once."""
        cursor = "0"
        while True:
            r = self.list_page(cursor, match=match, prefix=prefix, limit=page, payload=payload)
            yield from r.listed
            cursor = r.cursor
            if cursor == "0":
                return

    def close(self):
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class AsyncClient(_Operations):
    """An asyncio client: every call is a coroutine, and many may be in flight at once on
    the one connection (responses are matched by request id). `await AsyncClient.connect()`."""

    @classmethod
    async def connect(cls, host: str = "127.0.0.1", port: int = 7380, *,
                      user: Optional[str] = None, password: Optional[str] = None,
                      tls: Optional[ssl.SSLContext] = None, **session):
        self = cls(**session)
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=tls), self.timeout)
        except (OSError, asyncio.TimeoutError) as e:
            raise p.ApsisError(f"connect {host}:{port}: {e}") from e
        self._buf = bytearray()
        self._next = 0
        self._waiting = {}
        self._failed = None
        self._writer.write(p.frame(p.HELLO, 0, 0, p.hello_body()))
        kind, _, _, _ = await asyncio.wait_for(self._read_frame(), self.timeout)
        if kind != p.HELLO:
            raise p.ProtocolError("the node did not answer the hello")
        self._task = asyncio.get_running_loop().create_task(self._read_loop())
        if user is not None:
            nonce = os.urandom(16).hex().encode()
            challenge = await self._op(p.LOGIN, user, offset=1, data=nonce)
            await self._op(p.LOGIN, user, offset=2,
                           data=p.login_proof(user, password or "", nonce, challenge))
        return self

    async def _read_frame(self):
        while True:
            f = p.split_frame(self._buf)
            if f:
                return f
            chunk = await self._reader.read(1 << 16)
            if not chunk:
                raise p.ApsisError("the node closed the connection")
            self._buf += chunk

    async def _read_loop(self):
        try:
            while True:
                kind, op, fid, body = await self._read_frame()
                if kind == p.ERROR:
                    raise p.ProtocolError(p.parse_error(body))
                fut = self._waiting.pop(fid, None)
                if fut and not fut.done():
                    fut.set_result(p.parse_response(op, body))
        except Exception as e:  # the connection is over: fail every open and later call
            self._failed = e if isinstance(e, p.ApsisError) else p.ApsisError(str(e))
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(self._failed)
            self._waiting.clear()

    async def _arun(self, op, flags, body, finish):
        if self._failed:
            raise self._failed
        self._next += 1
        fid = self._next
        fut = asyncio.get_running_loop().create_future()
        self._waiting[fid] = fut
        self._writer.write(p.frame(p.REQUEST, op, fid, body, flags))
        try:
            result = await asyncio.wait_for(fut, self.timeout)
        except asyncio.TimeoutError as e:
            self._waiting.pop(fid, None)
            raise p.ApsisError(f"no answer within {self.timeout} s") from e
        return finish(result)

    def _run(self, op, flags, body, finish):
        return self._arun(op, flags, body, finish)

    async def scan(self, *, match=None, prefix=None, page=1000, payload=False):
        """As Client.scan, an async iterator."""
        cursor = "0"
        while True:
            r = await self.list_page(cursor, match=match, prefix=prefix, limit=page,
                                     payload=payload)
            for e in r.listed:
                yield e
            cursor = r.cursor
            if cursor == "0":
                return

    async def close(self):
        self._task.cancel()
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except OSError:
            pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()
