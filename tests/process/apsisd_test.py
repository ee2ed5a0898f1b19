"""Process tests: real apsisd nodes on 127.0.0.1, each on a port it picks and prints, driven
over RESP with raw sockets and with redis-cli, stopped by PID. Every loop is bounded in time
and count. Run by ctest with APSISD set to the binary."""
import http.client
import json
import os
import random
import re
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

APSISD = os.environ.get("APSISD", "build/tools/apsisd")
APSIS = os.environ.get("APSIS", "build/tools/apsis")


class Node:
    """One apsisd process on its own data directory."""

    def __init__(self, data_dir, *settings, config=None):
        args = [APSISD, *(["-c", config] if config else []),
                "--set", "network.resp_port=0", "--set", "network.binary_port=0",
                "--set", "network.http_port=0",
                "--set", f"node.data_dir={data_dir}",
                "--set", "log.level=warn"]
        for s in settings:
            args += ["--set", s]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.port = None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 15
        while self.port is None and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if sel.select(timeout=0.2):
                line = self.proc.stdout.readline()
                m = re.search(r"RESP on 127\.0\.0\.1:(\d+).*binary on 127\.0\.0\.1:(\d+)"
                              r".*http on 127\.0\.0\.1:(\d+)", line)
                if m:
                    self.port, self.binary_port, self.http_port = map(int, m.groups())
        sel.close()
        if self.port is None:
            self.kill()
            raise RuntimeError("apsisd did not start: " + self.proc.stderr.read())

    def stop(self):
        """SIGTERM, then its exit status; a failure's stderr tail goes to ours (sanitizers)."""
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=15)
        if rc != 0:
            print(self.proc.stderr.read()[-4000:], file=sys.stderr)
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=15)


def free_port():
    """A port free on 127.0.0.1 now (the cluster port must be known before a node starts),
    below Linux's ephemeral range (32768-60999): a port the kernel hands out for a bind to
    port 0 (every node's client ports, in tests running side by side) cannot then take it
    before the node binds it, as one did in CI."""
    for _ in range(1000):
        port = random.randrange(20000, 32768)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32767")


def wait_for(predicate, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds} s: {what}")


def encode(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


class Client:
    """A minimal RESP client: pipelined commands, one parsed reply at a time."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def send(self, *commands):
        self.sock.sendall(b"".join(encode(*c) for c in commands))

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b"-"):
            return (kind + rest).decode()
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                self.buf += chunk
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if kind == b"*":
            return [self.reply() for _ in range(int(rest))]
        if kind == b"%":  # RESP3: a map
            return {self.reply(): self.reply() for _ in range(int(rest))}
        if kind == b"_":  # RESP3: null
            return None
        raise ValueError(line)

    def call(self, *args):
        self.send(args)
        return self.reply()

    def close(self):
        self.sock.close()


class BinaryClient:
    """Pipelined puts over the binary protocol (docs/protocol.md), with a per-request policy in
    the frame's flags (1 one, 2 quorum, 3 all). Answers (status, [(node, status)]) per put."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.buf = b""
        self.sock.sendall(self.frame(1, 0, 0, 0, struct.pack("<HHH", 1, 1, 0) + struct.pack("<I", 1 << 20)))
        self.read_frame()

    @staticmethod
    def frame(kind, op, flags, fid, body=b""):
        return struct.pack("<IBBHQ", 12 + len(body), kind, op, flags, fid) + body

    def read_frame(self):
        while len(self.buf) < 4 or len(self.buf) < 4 + struct.unpack("<I", self.buf[:4])[0]:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        n = 4 + struct.unpack("<I", self.buf[:4])[0]
        f, self.buf = self.buf[:n], self.buf[n:]
        return f[4], f[16:]

    def put_all(self, items, policy):
        def body(k, v):
            k, v = k.encode(), v.encode()
            return (struct.pack("<H", 7) + b"default" + struct.pack("<H", len(k)) + k
                    + struct.pack("<BQQI", 0, 0, 0, 0) + struct.pack("<I", 0) + struct.pack("<I", len(v)) + v)
        self.sock.sendall(b"".join(self.frame(2, 2, policy, i, body(k, v)) for i, (k, v) in enumerate(items)))
        out = []
        for _ in items:
            kind, b = self.read_frame()
            assert kind == 3, kind
            status, mlen = b[0], struct.unpack("<H", b[1:3])[0]
            pos = 3 + mlen + 16 + 1  # status, message, version, existed
            count, pos = struct.unpack("<H", b[pos:pos + 2])[0], pos + 2
            replicas = []
            for _ in range(count):  # group u32, node str16, backend u32, status u8, version
                nlen = struct.unpack("<H", b[pos + 4:pos + 6])[0]
                replicas.append((b[pos + 6:pos + 6 + nlen].decode(), b[pos + 6 + nlen + 4]))
                pos += 4 + 2 + nlen + 4 + 1 + 16
            out.append((status, replicas))
        return out

    def close(self):
        self.sock.close()


class NodeTest(unittest.TestCase):
    """A temporary directory per test, and every node started in it killed at the end."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="apsis-process-")
        self.nodes = []

    def tearDown(self):
        for n in self.nodes:
            n.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, *settings, config=None):
        n = Node(self.dir, *settings, config=config)
        self.nodes.append(n)
        return n


class ClusterTest(NodeTest):
    """Helpers for tests that start clusters and drive nodes with the apsis CLI."""

    def cluster_node(self, i, ports, seed, *extra, cookie="cluster-test-cookie", group=None,
                     config=None):
        return self.start(f"node.name=n{i}", f"node.id={i}", f"node.data_dir={self.dir}/n{i}",
                          f"backend.group={group or i}", f"cluster.port={ports[i]}",
                          f'cluster.cookie="{cookie}"', f'cluster.seeds=["127.0.0.1:{seed}"]',
                          "cluster.heartbeat_ms=100", "cluster.anti_entropy_ms=100",
                          "replication.timeout_ms=1000", "replication.policy=quorum", *extra,
                          config=config)

    def keys_held(self, node):
        return self.stats(node)["backends"][0]["keys"]

    def state_of(self, node, name):
        nodes = json.loads(self.cli(node, "--json", "cluster", "status").stdout)["cluster"]["nodes"]
        return {n["name"]: n["state"] for n in nodes}.get(name)

    def replicas(self, node, key):
        r = self.cli(node, "--json", "put", key, "probe")
        return json.loads(r.stdout)["replicas"] if r.returncode == 0 else []

    def stats(self, node):
        return json.loads(self.cli(node, "--json", "stat").stdout)

    def joined_cluster(self, *extra):
        """Three nodes, a group each, joined through the first: (ports, nodes) once a write
        through n1 reaches every replica."""
        ports = {i: free_port() for i in (1, 2, 3)}
        nodes = {i: self.cluster_node(i, ports, ports[1], *extra) for i in (1, 2, 3)}
        wait_for(lambda: [r["status"] for r in self.replicas(nodes[1], "probe")] == ["ok"] * 3, 20,
                 "every node joined")
        return ports, nodes

    def cli(self, node, *args, stdin=None):
        return subprocess.run([APSIS, "--port", str(node.binary_port), *args], input=stdin,
                              capture_output=True, text=True, timeout=30)

    def paused_node_is_taken_back(self, pause, *extra):
        """n2 frozen (SIGSTOP) longer than the heartbeat timeout, then thawed: both nodes take
        each other back by themselves within 5 s, and quorum writes succeed again."""
        ports = {1: free_port(), 2: free_port()}
        heartbeat = "cluster.heartbeat_ms=500"  # the default: a connection times out after 2 s
        n1 = self.cluster_node(1, ports, ports[1], heartbeat, *extra)
        n2 = self.cluster_node(2, ports, ports[1], heartbeat, *extra)
        wait_for(lambda: [r["status"] for r in self.replicas(n1, "probe")] == ["ok"] * 2, 20, "n2 joined")
        n2.proc.send_signal(signal.SIGSTOP)
        try:
            stopped = time.monotonic()
            wait_for(lambda: self.state_of(n1, "n2") == "down", 20, "n1 sees n2 down")
            self.assertEqual(self.cli(n1, "put", "k", "during").returncode, 1)  # quorum of 2: not met
            time.sleep(max(0.0, pause - (time.monotonic() - stopped)))
        finally:
            n2.proc.send_signal(signal.SIGCONT)
        thawed = time.monotonic()
        wait_for(lambda: self.state_of(n1, "n2") == "up" and self.state_of(n2, "n1") == "up", 5,
                 "both up again within 5 s")
        wait_for(lambda: [r["status"] for r in self.replicas(n1, "k")] == ["ok"] * 2, 5 - (time.monotonic() - thawed),
                 "a quorum write succeeds within 5 s")
        heard = json.loads(self.cli(n1, "--json", "cluster", "status").stdout)["cluster"]["nodes"]
        self.assertLess({n["name"]: n for n in heard}["n2"]["last_heard_ms"], 5000)
        r = self.cli(n2, "--read", "all", "get", "k")
        self.assertEqual(r.stdout, "probe", r.stderr)


class ApsisdTest(ClusterTest):

    def test_redis_cli_works_unchanged(self):
        self.assertIsNotNone(shutil.which("redis-cli"), "tools/setup.sh installs redis-tools")
        node = self.start()

        def cli(*args, raw=False):
            r = subprocess.run(["redis-cli", "-p", str(node.port), *args], capture_output=True,
                               text=True, timeout=10)
            return r.stdout if raw else r.stdout.strip()

        self.assertEqual(cli("PING"), "PONG")
        self.assertEqual(cli("SET", "k", "hello world"), "OK")
        self.assertEqual(cli("GET", "k"), "hello world")
        self.assertEqual(cli("SET", "k", "x", "NX"), "")
        self.assertEqual(cli("SET", "k", "y", "XX", "EX", "100"), "OK")
        self.assertIn(cli("TTL", "k"), ("99", "100"))
        self.assertEqual(cli("EXISTS", "k", "nope"), "1")
        self.assertEqual(cli("MSET", "a", "1", "b", "2"), "OK")
        self.assertEqual(cli("MGET", "a", "b", "c", raw=True), "1\n2\n\n")  # nil: empty line
        self.assertEqual(cli("DEL", "a", "b", "c"), "2")
        self.assertEqual(cli("SELECT", "2"), "OK")
        self.assertIn("keys=", cli("INFO"))

    def test_redis_string_and_keyspace_commands_answer_as_redis_does(self):
        node = self.start()
        c = Client(node.port)
        self.assertEqual(c.call("SETNX", "n", "1"), 1)
        self.assertEqual(c.call("SETNX", "n", "2"), 0)
        self.assertEqual(c.call("GET", "n"), b"1")
        self.assertEqual(c.call("GETSET", "n", "3"), b"1")
        self.assertIsNone(c.call("GETSET", "fresh", "x"))
        self.assertEqual(c.call("SET", "n", "4", "GET"), b"3")
        self.assertEqual(c.call("SET", "n", "5", "NX", "GET"), b"4")  # not set; the old value
        self.assertEqual(c.call("GET", "n"), b"4")
        self.assertEqual(c.call("STRLEN", "n"), 1)
        self.assertEqual(c.call("STRLEN", "nope"), 0)
        self.assertEqual(c.call("TYPE", "n"), "+string")
        self.assertEqual(c.call("TYPE", "nope"), "+none")
        self.assertEqual(c.call("SET", "s", "Hello World"), "+OK")
        self.assertEqual(c.call("GETRANGE", "s", "0", "4"), b"Hello")
        self.assertEqual(c.call("GETRANGE", "s", "-5", "-1"), b"World")
        self.assertEqual(c.call("GETRANGE", "s", "5", "2"), b"")
        self.assertEqual(c.call("GETRANGE", "s", "0", "100"), b"Hello World")
        self.assertEqual(c.call("GETRANGE", "nope", "0", "1"), b"")
        # Expiry: EXPIRETIME is absolute; PERSIST removes it once; GETEX sets or clears it.
        self.assertEqual(c.call("EXPIRETIME", "s"), -1)
        self.assertEqual(c.call("EXPIRETIME", "nope"), -2)
        self.assertEqual(c.call("PERSIST", "s"), 0)  # no expiry: nothing written
        at = int(time.time()) + 100
        self.assertEqual(c.call("GETEX", "s", "EXAT", str(at)), b"Hello World")
        self.assertEqual(c.call("EXPIRETIME", "s"), at)
        self.assertEqual(c.call("PEXPIRETIME", "s"), at * 1000)
        self.assertEqual(c.call("PERSIST", "s"), 1)
        self.assertEqual(c.call("PERSIST", "s"), 0)
        self.assertEqual(c.call("TTL", "s"), -1)
        self.assertEqual(c.call("GETEX", "s", "PX", "100000"), b"Hello World")
        self.assertGreater(c.call("PTTL", "s"), 90000)
        self.assertEqual(c.call("GETEX", "s", "PERSIST"), b"Hello World")
        self.assertEqual(c.call("TTL", "s"), -1)
        self.assertTrue(c.call("GETEX", "s", "EX", "0").startswith("-ERR invalid expire"))
        self.assertEqual(c.call("GETEX", "s", "SOON", "1"), "-ERR syntax error")
        self.assertIsNone(c.call("GETEX", "nope", "EX", "10"))
        # GETDEL, UNLINK, TOUCH.
        self.assertEqual(c.call("GETDEL", "s"), b"Hello World")
        self.assertIsNone(c.call("GETDEL", "s"))
        self.assertEqual(c.call("MSET", "a", "1", "b", "2"), "+OK")
        self.assertEqual(c.call("TOUCH", "a", "b", "nope"), 2)
        self.assertEqual(c.call("UNLINK", "a", "b", "nope"), 2)
        self.assertEqual(c.call("EXISTS", "a", "b"), 0)
        # HELLO: RESP2 (an array), or RESP3 (a map, and RESP3's null from then on).
        hello = c.call("HELLO")
        self.assertEqual(hello[:6], [b"server", b"apsis", b"version", b"0.1.0", b"proto", 2])
        self.assertEqual(c.call("HELLO", "2")[5], 2)
        self.assertTrue(c.call("HELLO", "4").startswith("-NOPROTO"))
        self.assertEqual(c.call("HELLO", "3", "SETNAME", "me")[b"proto"], 3)
        c.send(("GET", "nope"))
        self.assertEqual(c._line(), b"_")
        self.assertEqual(c.call("MGET", "n", "nope"), [b"4", None])
        self.assertTrue(c.call("HELLO", "3", "AUTH", "u", "p").startswith("-ERR AUTH"))
        self.assertEqual(c.call("HELLO", "2")[5], 2)
        c.send(("GET", "nope"))
        self.assertEqual(c._line(), b"$-1")
        self.assertTrue(c.call("GETRANGE", "n", "x", "1").startswith("-ERR value is not an integer"))
        self.assertTrue(c.call("SETNX", "n").startswith("-ERR wrong number of arguments"))
        self.assertEqual(c.call("GET", "n"), b"4")

    def test_counters_append_and_setrange_read_modify_write_as_redis_does(self):
        node = self.start()
        c = Client(node.port)
        self.assertEqual(c.call("INCR", "n"), 1)
        self.assertEqual(c.call("INCRBY", "n", "41"), 42)
        self.assertEqual(c.call("DECR", "n"), 41)
        self.assertEqual(c.call("DECRBY", "n", "-9"), 50)
        self.assertEqual(c.call("GET", "n"), b"50")
        self.assertEqual(c.call("SET", "big", str(2**63 - 1)), "+OK")
        self.assertEqual(c.call("INCR", "big"), "-ERR increment or decrement would overflow")
        self.assertEqual(c.call("SET", "word", "abc"), "+OK")
        self.assertEqual(c.call("INCR", "word"), "-ERR value is not an integer or out of range")
        self.assertEqual(c.call("SET", "zero", "01"), "+OK")
        self.assertEqual(c.call("INCR", "zero"), "-ERR value is not an integer or out of range")
        self.assertEqual(c.call("GET", "word"), b"abc")  # a refused change writes nothing
        self.assertEqual(c.call("INCRBY", "n", "x"), "-ERR value is not an integer or out of range")
        self.assertEqual(c.call("INCRBYFLOAT", "f", "10.5"), b"10.5")
        self.assertEqual(c.call("INCRBYFLOAT", "f", "0.1"), b"10.6")
        self.assertEqual(c.call("INCRBYFLOAT", "f", "-20"), b"-9.4")
        self.assertEqual(c.call("INCRBYFLOAT", "f", "nan"), "-ERR value is not a valid float")
        self.assertEqual(c.call("APPEND", "s", "Hello"), 5)
        self.assertEqual(c.call("APPEND", "s", " World"), 11)
        self.assertEqual(c.call("SETRANGE", "s", "6", "Redis"), 11)
        self.assertEqual(c.call("GET", "s"), b"Hello Redis")
        self.assertEqual(c.call("SETRANGE", "pad", "3", "x"), 4)
        self.assertEqual(c.call("GET", "pad"), b"\0\0\0x")
        self.assertEqual(c.call("SETRANGE", "none", "5", ""), 0)
        self.assertEqual(c.call("EXISTS", "none"), 0)  # an empty SETRANGE creates nothing
        self.assertEqual(c.call("SETRANGE", "s", "-1", "x"), "-ERR offset is out of range")
        # A change keeps the time to live, as in Redis.
        self.assertEqual(c.call("SET", "t", "1", "EX", "100"), "+OK")
        self.assertEqual(c.call("INCR", "t"), 2)
        self.assertIn(c.call("TTL", "t"), (99, 100))
        # Pipelined: what follows a change sees it, in order.
        c.send(("SET", "p", "1"), ("INCR", "p"), ("GET", "p"), ("APPEND", "p", "0"), ("GET", "p"),
               ("INCR", "p"), ("DEL", "p"), ("INCR", "p"))
        self.assertEqual([c.reply() for _ in range(8)], ["+OK", 2, b"2", 2, b"20", 21, 1, 1])

    def test_concurrent_increments_are_each_counted(self):
        node = self.start()
        clients = [Client(node.port) for _ in range(4)]
        per_client = 500

        def hammer(c):
            c.send(*[("INCR", "hits")] * per_client)
            for _ in range(per_client):
                c.reply()
        threads = [threading.Thread(target=hammer, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        self.assertEqual(clients[0].call("GET", "hits"), str(4 * per_client).encode())

    def test_cli_get_ends_with_a_newline_only_on_a_terminal(self):
        import pty
        import select
        node = self.start()
        self.assertEqual(self.cli(node, "put", "k", "value").returncode, 0)
        self.assertEqual(self.cli(node, "get", "k").stdout, "value")  # piped: the bytes exactly
        leader, follower = pty.openpty()
        try:
            r = subprocess.run([APSIS, "--port", str(node.binary_port), "get", "k"], stdout=follower,
                               stderr=subprocess.PIPE, timeout=10)
            self.assertEqual(r.returncode, 0, r.stderr)
            out = b""
            deadline = time.monotonic() + 5
            while not out.endswith(b"\n") and time.monotonic() < deadline:
                ready, _, _ = select.select([leader], [], [], 0.2)
                if ready:
                    out += os.read(leader, 100)
            self.assertEqual(out, b"value\r\n")  # the terminal turns \n into \r\n
        finally:
            os.close(leader)
            os.close(follower)

    def test_namespaces_keep_keys_apart(self):
        node = self.start()
        c = Client(node.port)
        self.assertEqual(c.call("SET", "k", "in default"), "+OK")
        self.assertEqual(c.call("SELECT", "accounts"), "+OK")
        self.assertIsNone(c.call("GET", "k"))
        self.assertEqual(c.call("SET", "k", "in accounts"), "+OK")
        self.assertEqual(c.call("SELECT", "0"), "+OK")
        self.assertEqual(c.call("GET", "k"), b"in default")
        # In one pipeline, each command in the namespace selected before it (ids are
        # computed for a whole read at once; a SELECT inside it must not blur them).
        keys = [f"p{i}" for i in range(20)]
        c.send(*[("SET", k, "d") for k in keys], ("SELECT", "accounts"),
               *[("SET", k, "a") for k in keys], ("SELECT", "0"), ("MGET", *keys),
               ("SELECT", "accounts"), ("MGET", *keys), ("GET", "k"))
        replies = [c.reply() for _ in range(2 * len(keys) + 6)]
        self.assertEqual(replies[-4], [b"d"] * len(keys))
        self.assertEqual(replies[-2], [b"a"] * len(keys))
        self.assertEqual(replies[-1], b"in accounts")

    def test_pipelined_replies_come_back_in_order(self):
        node = self.start()
        c = Client(node.port)
        n = 2000
        cmds = []
        for i in range(n):
            cmds.append(("SET", f"p{i}", f"v{i}"))
            cmds.append(("GET", f"p{i}"))
        c.send(*cmds)
        for i in range(n):
            self.assertEqual(c.reply(), "+OK")
            self.assertEqual(c.reply(), f"v{i}".encode())

    def test_a_value_over_the_limit_is_refused_and_the_connection_goes_on(self):
        node = self.start("limits.max_value_size=1048576")
        c = Client(node.port)
        big = b"x" * (3 << 20)
        c.send(("SET", "big", big), ("PING",), ("SET", "small", "ok"))
        refused = c.reply()
        self.assertTrue(refused.startswith("-ERR argument of 3145728 bytes exceeds the limit"), refused)
        self.assertEqual((c.reply(), c.reply()), ("+PONG", "+OK"))
        self.assertIsNone(c.call("GET", "big"))
        self.assertEqual(c.call("GET", "small"), b"ok")
        c.close()

    def test_malformed_input_gets_an_error_and_the_connection_closes(self):
        node = self.start()
        for bad in (b"*1\r\n$abc\r\n", b"*2\r\n$1\r\nab\r\n", b"*99999999999\r\n", b"$3\r\nGET\r\n"):
            c = Client(node.port)
            c.sock.sendall(bad)
            reply = c.reply()
            self.assertTrue(reply.startswith("-ERR"), (bad, reply))
            if bad.startswith(b"*"):
                self.assertTrue(reply.startswith("-ERR Protocol error"), (bad, reply))
                with self.assertRaises(ConnectionError):
                    c.reply()
            c.close()
        self.assertEqual(Client(node.port).call("PING"), "+PONG")  # still serving

    def test_sigkill_under_write_load_keeps_every_acknowledged_write(self):
        # always: the replies wait for the fsync; interval: they do not, and a killed process
        # still loses nothing, the writes being in the page cache.
        for fsync in ("always", "interval:1000"):
            with self.subTest(fsync=fsync):
                self.sigkill_under_write_load(fsync)

    def sigkill_under_write_load(self, fsync):
        data = os.path.join(self.dir, fsync.split(":")[0])
        node = self.start(f"backend.fsync={fsync}", f"node.data_dir={data}")
        acked = {}
        errors = []

        def writer():
            try:
                c = Client(node.port)
                deadline = time.monotonic() + 10
                i = 0
                while i < 200000 and time.monotonic() < deadline:
                    batch = [(f"key{i + j}", f"value{i + j}") for j in range(16)]
                    c.send(*[("SET", k, v) for k, v in batch])
                    for k, v in batch:
                        if c.reply() == "+OK":
                            acked[k] = v
                    i += 16
            except (ConnectionError, OSError):
                pass  # the node died under us: expected
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        t = threading.Thread(target=writer)
        t.start()
        deadline = time.monotonic() + 10
        while len(acked) < 500 and time.monotonic() < deadline:
            time.sleep(0.01)
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(timeout=10)
        t.join(timeout=15)
        self.assertFalse(errors)
        self.assertGreaterEqual(len(acked), 500)
        node = self.start(f"backend.fsync={fsync}", f"node.data_dir={data}")
        c = Client(node.port)
        keys = list(acked)
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            c.send(*[("GET", k) for k in chunk])
            for k in chunk:
                self.assertEqual(c.reply(), acked[k].encode(), k)

    def test_fsync_always_writes_of_many_clients_share_fsyncs(self):
        # Each client waits for its reply before the next SET, so only writes of different
        # clients can share an fsync: the node must gather them (group commit), count them in
        # its stats, and acknowledge nothing it has not made durable.
        node = self.start("backend.fsync=always")
        clients, each = 16, 100
        errors = []

        def writer(w):
            try:
                c = Client(node.port)
                for i in range(each):
                    self.assertEqual(c.call("SET", f"k{w}-{i}", f"v{i}"), "+OK")
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        self.assertFalse(errors)
        stats = self.stats(node)
        backend = stats["backends"][0]
        self.assertGreaterEqual(backend["synced_writes"], clients * each)
        # Counted once their fsync is done, before the reply: every SET is in.
        self.assertGreaterEqual(stats["requests"]["resp"]["operations"], clients * each)
        self.assertGreaterEqual(backend["synced_writes"] / backend["syncs"], 2.0, backend)
        self.assertRegex(self.cli(node, "stat").stdout, r"writes/fsync\n1\s.*\s\d+\.\d\n")
        c = Client(node.port)
        self.assertEqual(c.call("GET", f"k{clients - 1}-{each - 1}"), f"v{each - 1}".encode())

    def test_fsync_always_commands_of_several_rounds_share_fsyncs(self):
        # MSETNX reads, then writes; RENAME reads, writes, deletes; FLUSHDB lists, then
        # deletes. Under fsync always each round that wrote is answered once the flusher has
        # synced it, with the other clients' writes (redis-benchmark: 16 real connections).
        # Through the shard actors instead, each write waited for an fsync of its own: 1.4
        # writes an fsync in this test, against 13 now.
        node = self.start("backend.fsync=always")
        r = subprocess.run(["redis-benchmark", "-p", str(node.port), "-c", "16", "-n", "1600",
                            "-r", "1000000", "MSETNX", "k:__rand_int__", "v"],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        backend = self.stats(node)["backends"][0]
        self.assertGreaterEqual(backend["synced_writes"], 1500, backend)  # a few keys repeat
        self.assertGreaterEqual(backend["synced_writes"] / backend["syncs"], 2.0, backend)
        c = Client(node.port)
        self.assertEqual(c.call("MSETNX", "a", "1", "b", "2"), 1)
        self.assertEqual(c.call("MSETNX", "a", "x", "c", "3"), 0)  # a exists: nothing set
        self.assertEqual(c.call("RENAME", "a", "renamed"), "+OK")
        self.assertEqual(c.call("GET", "renamed"), b"1")
        self.assertIsNone(c.call("GET", "a"))
        self.assertIsNone(c.call("GET", "c"))
        self.assertEqual(c.call("FLUSHDB"), "+OK")
        self.assertEqual(c.call("DBSIZE"), 0)

    def test_concurrent_writers_of_one_key_all_succeed(self):
        # Connections on different I/O threads race for one key; newest wins, none fails.
        node = self.start()
        replies, errors = [], []

        def writer(w):
            try:
                c = Client(node.port)
                for i in range(0, 2000, 50):
                    c.send(*[("SET", "hot", f"{w}:{i + j}") for j in range(50)])
                    replies.extend(c.reply() for _ in range(50))
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        self.assertFalse(errors)
        self.assertEqual(len(replies), 8000)
        self.assertEqual(set(replies), {"+OK"})
        self.assertRegex(Client(node.port).call("GET", "hot").decode(), r"^[0-3]:\d+$")

    def test_a_second_process_on_the_same_data_is_refused(self):
        self.start()
        r = subprocess.run([APSISD, "--set", "network.resp_port=0", "--set", "network.binary_port=0",
                            "--set", "network.http_port=0", "--set", f"node.data_dir={self.dir}"],
                           capture_output=True, text=True,
                           timeout=15)
        self.assertEqual(r.returncode, 1)
        self.assertIn("locked by another process", r.stderr)

    def test_a_config_file_sets_the_node_up(self):
        path = os.path.join(self.dir, "node.toml")
        with open(path, "w") as f:
            f.write('[node]\nname = "from-file"\n'
                    f'data_dir = "{self.dir}"\n'
                    '[network]\nresp_port = 0\nbinary_port = 0\nhttp_port = 0\n'
                    '[log]\nlevel = "warn"\n'
                    '[[backend]]\nid = 7\ngroup = 3\nengine = "sorted"\ndir = "b7"\n'
                    'fsync = "always"\n')
        proc = subprocess.Popen([APSISD, "--config", path], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline()
            self.assertIn("from-file serving RESP on 127.0.0.1:", line)
            port = int(line.split("127.0.0.1:")[1].split(",")[0])
            c = Client(port)
            self.assertEqual(c.call("SET", "k", "v"), "+OK")
            info = c.call("INFO").decode()
            self.assertIn("backend7:engine=sorted,group=3", info)
            self.assertIn("fsync=always", info)
            self.assertTrue(os.path.isdir(os.path.join(self.dir, "b7", "db")))
        finally:
            proc.kill()
            proc.wait(timeout=15)
        with open(path, "a") as f:
            f.write("shards = 0\n")
        r = subprocess.run([APSISD, "--config", path], capture_output=True, text=True, timeout=15)
        self.assertEqual(r.returncode, 2)
        self.assertIn(f"{path}:16: backend.shards: must be between 1 and 256, got 0", r.stderr)

    def test_a_bad_config_is_refused_naming_the_key(self):
        r = subprocess.run([APSISD, "--set", "network.resp_prot=1"], capture_output=True,
                           text=True, timeout=15)
        self.assertEqual(r.returncode, 2)
        self.assertIn("network.resp_prot: unknown key", r.stderr)

    def test_sigterm_stops_gracefully_and_data_survives(self):
        node = self.start()
        c = Client(node.port)
        self.assertEqual(c.call("SET", "durable", "yes"), "+OK")
        c.close()
        self.assertEqual(node.stop(), 0)
        node = self.start()
        self.assertEqual(Client(node.port).call("GET", "durable"), b"yes")

    def test_a_backend_keeps_its_ring_seed_and_a_bad_one_is_refused(self):
        ports = {1: free_port()}
        node = self.cluster_node(1, ports, ports[1], "cluster.points=64")
        path = os.path.join(self.dir, "n1", "backend-1.ring")
        with open(path) as f:
            kept = f.read()
        self.assertRegex(kept, r"^[0-9a-f]{16} 64\n$")
        self.assertEqual(node.stop(), 0)
        node = self.cluster_node(1, ports, ports[1], "cluster.points=128")  # drawn once: kept
        status = json.loads(self.cli(node, "--json", "cluster", "status").stdout)
        self.assertEqual(status["cluster"]["nodes"][0]["backends"][0]["points"], 64)
        with open(path) as f:
            self.assertEqual(f.read(), kept)
        self.assertEqual(node.stop(), 0)
        with open(path, "w") as f:
            f.write("not-a-seed 64\n")
        with self.assertRaises(RuntimeError) as refused:
            self.cluster_node(1, ports, ports[1])
        self.assertIn(f'{path}: not "<16 hex digits> <count of points, 1-4096>"',
                      str(refused.exception))

    # -- a cluster of three (helpers in ClusterTest) ---------------------------

    def test_a_cluster_replicates_survives_a_dead_node_and_converges(self):
        ports, nodes = self.joined_cluster()
        expected = {}
        b = BinaryClient(nodes[1].binary_port)
        for start in range(0, 10000, 1000):  # policy all, per request (the nodes' is quorum)
            batch = [(f"k{i}", f"v{i}") for i in range(start, start + 1000)]
            self.assertEqual({r[0] for r in b.put_all(batch, 3)}, {0})
            expected.update(batch)

        nodes[3].proc.send_signal(signal.SIGKILL)
        nodes[3].proc.wait(timeout=10)
        wait_for(lambda: [r["status"] for r in self.replicas(nodes[1], "probe")][2:] == ["unavailable"],
                 20, "n3 seen down")
        states = {n["name"]: n["state"] for n in
                  json.loads(self.cli(nodes[1], "--json", "cluster", "status").stdout)["cluster"]["nodes"]}
        self.assertEqual(states, {"n1": "self", "n2": "up", "n3": "down"})
        during = b.put_all([("during", "outage")], 2)[0]  # quorum: two of three
        self.assertEqual(during, (0, [("n1", 0), ("n2", 0), ("n3", 8)]))  # 8: unavailable
        self.assertEqual(b.put_all([("strict", "x")], 3)[0][0], 8)  # all: cannot be met
        expected["during"] = "outage"
        expected["strict"] = "x"  # written where it could be: replicas that succeeded stay
        b.close()
        c = Client(nodes[1].port)
        more = [(f"k{i}", f"new{i}") for i in range(9900, 11000)]  # 100 overwrites, 1000 new
        c.send(*[("SET", k, v) for k, v in more])
        self.assertEqual({c.reply() for _ in more}, {"+OK"})
        expected.update(more)
        gone = [f"k{i}" for i in range(0, 50)]
        c.send(*[("DEL", k) for k in gone])
        self.assertEqual({c.reply() for _ in gone}, {1})
        for k in gone:
            del expected[k]
        c.close()

        nodes[3] = self.cluster_node(3, ports, ports[1])  # no manual command from here on
        def converged():
            keys = [self.stats(nodes[i])["backends"][0]["keys"] for i in (1, 2, 3)]
            return keys[0] == keys[1] == keys[2]
        wait_for(converged, 60, "n3 caught up by anti-entropy")
        # n2 hears of n3's second incarnation by gossip (every second)
        wait_for(lambda: re.search(r"n3\s+127\.0\.0\.1:\d+\s+2\s+up", self.cli(nodes[2], "cluster", "status").stdout),
                 10, "n2 sees n3's second incarnation up")
        self.assertGreater(self.stats(nodes[1])["anti_entropy"]["repaired"]
                           + self.stats(nodes[2])["anti_entropy"]["repaired"], 0)
        for n in nodes.values():
            self.assertEqual(n.stop(), 0)
        # Key by key, each replica on its own: a node started alone on each data directory.
        for i in (1, 2, 3):
            alone = self.start(f"node.name=n{i}", f"node.data_dir={self.dir}/n{i}")
            c = Client(alone.port)
            keys = sorted(expected) + gone
            c.send(*[("GET", k) for k in keys])
            for k in keys:
                want = expected[k].encode() if k in expected else None
                self.assertEqual(c.reply(), want, f"n{i} {k}")
            c.close()
            alone.stop()

    def test_a_joining_node_takes_its_keys_over_by_merge(self):
        # n2 joins n1's group: the part of the ring its points claim moves to it, in the
        # background, and n1 forgets it; every key stays readable through either node.
        ports = {1: free_port(), 2: free_port()}
        n1 = self.cluster_node(1, ports, ports[1], group=1)
        c = Client(n1.port)
        data = {f"m{i}": f"v{i}" for i in range(2000)}
        c.send(*[("SET", k, v) for k, v in data.items()])
        self.assertEqual({c.reply() for _ in data}, {"+OK"})
        c.close()
        self.assertEqual(self.keys_held(n1), 2000)
        n2 = self.cluster_node(2, ports, ports[1], group=1)
        wait_for(lambda: self.keys_held(n1) + self.keys_held(n2) == 2000 and self.keys_held(n2) > 0
                 and self.stats(n1)["merge"]["moved"] == self.keys_held(n2), 30, "n2's keys moved to it")
        self.assertRegex(self.cli(n1, "cluster", "status").stdout,
                         r"merge: \d+ passes, \d+ keys moved, 0 waiting for their owner")
        for node in (n1, n2):
            c = Client(node.port)
            c.send(*[("GET", k) for k in data])
            self.assertEqual([c.reply() for _ in data], [v.encode() for v in data.values()])
            c.close()
        # A client that routes sends each key straight to its owner: across keys, both nodes.
        vias = {}
        for i in range(20):
            r = json.loads(self.cli(n1, "--route", "--json", "put", f"routed{i}", "x").stdout)
            self.assertEqual([e["node"] for e in r["replicas"]], [r["via"]])  # the owner wrote it
            vias[r["via"]] = vias.get(r["via"], 0) + 1
        self.assertEqual(set(vias), {"n1", "n2"}, vias)

    def test_recover_dc_dry_run_counts_then_repairs_and_resumes_after_a_restart(self):
        # Anti-entropy's timer is an hour away: only `apsis recover` repairs here. Its rate is
        # low (50 records/s) so that the pass can be caught in the middle.
        ports = {1: free_port(), 2: free_port()}
        slow = ("cluster.anti_entropy_ms=3600000", "cluster.recovery_rate=50", "replication.policy=one")
        n1 = self.cluster_node(1, ports, ports[1], *slow)
        n2 = self.cluster_node(2, ports, ports[1], *slow)
        wait_for(lambda: [r["status"] for r in self.replicas(n1, "probe")] == ["ok"] * 2, 20, "n2 joined")
        n2.kill()
        wait_for(lambda: self.state_of(n1, "n2") == "down", 20, "n2 seen down")
        c = Client(n1.port)
        keys = [f"r{i}" for i in range(300)]
        c.send(*[("SET", k, "x") for k in keys])
        self.assertEqual({c.reply() for _ in keys}, {"+OK"})
        c.close()
        n2 = self.cluster_node(2, ports, ports[1], *slow)
        wait_for(lambda: self.state_of(n1, "n2") == "up", 20, "n2 back")
        self.assertEqual(self.keys_held(n2), 1)  # the probe

        dry = json.loads(self.cli(n1, "--json", "recover", "dc", "--dry-run").stdout)
        self.assertEqual((dry["state"], dry["done"], dry["total"], dry["repaired"]), ("done", 1, 1, 0))
        self.assertGreaterEqual(dry["divergent"], 300)
        self.assertEqual(self.keys_held(n2), 1)  # a dry run changes nothing

        started = json.loads(self.cli(n1, "--json", "recover", "dc", "--no-wait").stdout)
        self.assertEqual(started["state"], "running")
        self.assertIn("recover dc: running", self.cli(n1, "recover", "status").stdout)
        self.assertEqual(self.cli(n1, "recover", "merge").returncode, 1)  # one pass at a time
        stopped = self.cli(n1, "--json", "recover", "stop")
        self.assertEqual(json.loads(stopped.stdout)["state"], "stopped", stopped.stderr)
        resumed = json.loads(self.cli(n1, "--json", "recover", "resume", "--no-wait").stdout)
        self.assertEqual(resumed["state"], "running")
        time.sleep(0.5)
        n1.kill()  # in the middle of the pass: it is saved, and goes on after the restart
        n1 = self.cluster_node(1, ports, ports[1], *slow)
        wait_for(lambda: json.loads(self.cli(n1, "--json", "recover", "status").stdout)["state"] == "done",
                 60, "the pass resumed after the restart and finished")
        self.assertEqual(self.keys_held(n2), 301)

    def test_read_latest_answers_the_newest_and_repairs_the_stale_replica(self):
        ports = {1: free_port(), 2: free_port()}
        quiet = ("cluster.anti_entropy_ms=3600000", "replication.policy=one")  # no repair but ours
        n1 = self.cluster_node(1, ports, ports[1], *quiet)
        n2 = self.cluster_node(2, ports, ports[1], *quiet)
        wait_for(lambda: [r["status"] for r in self.replicas(n1, "probe")] == ["ok"] * 2, 20, "n2 joined")
        self.assertEqual(self.cli(n2, "--policy", "all", "put", "k", "v1").returncode, 0)
        n1.kill()
        wait_for(lambda: self.state_of(n2, "n1") == "down", 20, "n1 seen down")
        self.assertEqual(self.cli(n2, "put", "k", "v2").returncode, 0)  # n2 alone has v2
        self.assertEqual(self.cli(n2, "--policy", "all", "put", "x", "y").returncode, 1)  # all: not met
        n1 = self.cluster_node(1, ports, ports[1], *quiet)
        wait_for(lambda: self.state_of(n2, "n1") == "up", 20, "n1 back")
        self.assertEqual(self.cli(n2, "--read", "one", "get", "k").stdout, "v1")  # group 1 first: stale
        latest = json.loads(self.cli(n2, "--json", "--latest", "get", "k").stdout)
        self.assertEqual(latest["data"], "v2")
        self.assertEqual([e["node"] for e in latest["replicas"]], ["n1", "n2"])
        wait_for(lambda: self.cli(n1, "get", "k").stdout == "v2", 10, "n1 repaired by the read")
        self.assertGreaterEqual(self.stats(n2)["anti_entropy"]["read_repairs"], 1)

    def test_a_node_paused_for_4_s_comes_back_by_itself(self):
        self.paused_node_is_taken_back(4)

    def test_a_node_paused_for_30_s_comes_back_by_itself(self):
        self.paused_node_is_taken_back(30)

    def test_reads_honour_every_acknowledged_write_after_a_replica_returns(self):
        # Three groups; n1 (group 1, first in every session) is dead while 20,000 new keys are
        # written through n2 under quorum. Back, it holds none of them, and anti-entropy is
        # slowed to an hour: under the default read policy every node still reads them all.
        ports = {i: free_port() for i in (1, 2, 3)}
        slow = "cluster.anti_entropy_ms=3600000"
        nodes = {i: self.cluster_node(i, ports, ports[1], slow) for i in (1, 2, 3)}
        wait_for(lambda: [r["status"] for r in self.replicas(nodes[1], "probe")] == ["ok"] * 3, 20,
                 "every node joined")
        nodes[1].kill()
        wait_for(lambda: self.state_of(nodes[2], "n1") == "down", 20, "n2 sees n1 down")
        keys = [f"rw{i}" for i in range(20000)]
        c = Client(nodes[2].port)
        for start in range(0, len(keys), 1000):
            c.send(*[("SET", k, "v" + k) for k in keys[start:start + 1000]])
            self.assertEqual({c.reply() for _ in range(1000)}, {"+OK"})  # acknowledged: 2 of 3
        c.close()
        nodes[1] = self.cluster_node(1, ports, ports[1], slow)
        wait_for(lambda: all(self.state_of(nodes[i], f"n{j}") == "up" for i in (1, 2, 3) for j in (1, 2, 3) if i != j),
                 20, "n1 back in every view")
        self.assertEqual(self.keys_held(nodes[1]), 1)  # the probe: nothing repaired it yet
        for i in (1, 2, 3):
            c = Client(nodes[i].port)
            missing = 0
            for start in range(0, len(keys), 1000):
                batch = keys[start:start + 1000]
                c.send(*[("GET", k) for k in batch])
                missing += sum(c.reply() != ("v" + k).encode() for k in batch)
            c.close()
            self.assertEqual(missing, 0, f"through n{i}")

    def test_reads_under_one_miss_here_and_fail_over_to_the_replica_that_has_them(self):
        # Read policy one: a node answers a read from its own replica when it has the key
        # (on the connection's thread), and asks the next group when it has not. n1 is dead
        # while keys are written through n2 (policy one); back, with anti-entropy slowed to
        # an hour, n1 holds none of them, yet reads through n1 find them all; with n2 dead in
        # turn, n1 still answers what it holds.
        ports = {1: free_port(), 2: free_port()}
        extra = ("cluster.anti_entropy_ms=3600000", "replication.read_policy=one",
                 "replication.policy=one")
        nodes = {i: self.cluster_node(i, ports, ports[1], *extra) for i in (1, 2)}
        wait_for(lambda: [r["status"] for r in self.replicas(nodes[1], "probe")] == ["ok"] * 2, 20,
                 "n2 joined")
        c = Client(nodes[1].port)
        c.send(*[("SET", f"both{i}", f"b{i}") for i in range(100)])
        self.assertEqual({c.reply() for _ in range(100)}, {"+OK"})
        c.close()
        nodes[1].kill()
        wait_for(lambda: self.state_of(nodes[2], "n1") == "down", 20, "n2 sees n1 down")
        c = Client(nodes[2].port)
        c.send(*[("SET", f"late{i}", f"l{i}") for i in range(100)])
        self.assertEqual({c.reply() for _ in range(100)}, {"+OK"})
        c.close()
        nodes[1] = self.cluster_node(1, ports, ports[1], *extra)
        wait_for(lambda: self.state_of(nodes[1], "n2") == "up", 20, "n1 back")
        self.assertEqual(self.keys_held(nodes[1]), 101)  # the probe and both*: none of late*
        c = Client(nodes[1].port)
        c.send(*[("GET", f"late{i}") for i in range(100)], *[("GET", f"both{i}") for i in range(100)])
        got = [c.reply() for _ in range(200)]
        self.assertEqual(got, [f"l{i}".encode() for i in range(100)] + [f"b{i}".encode() for i in range(100)])
        self.assertIsNone(c.call("GET", "nowhere"))
        nodes[2].kill()
        wait_for(lambda: self.state_of(nodes[1], "n2") == "down", 20, "n1 sees n2 down")
        self.assertEqual(c.call("GET", "both7"), b"b7")
        c.close()

    def test_a_corrupt_replica_is_read_around_and_rewritten(self):
        # Two groups; one byte of each value flipped in n1's blob file under the running node (bit
        # rot). A read that meets it answers from group 2 and rewrites n1's copy; anti-entropy is
        # slowed to an hour so that only the read can have repaired it.
        ports = {1: free_port(), 2: free_port()}
        slow = "cluster.anti_entropy_ms=3600000"
        n1 = self.cluster_node(1, ports, ports[1], slow)
        n2 = self.cluster_node(2, ports, ports[1], slow)
        wait_for(lambda: [r["status"] for r in self.replicas(n1, "probe")] == ["ok"] * 2, 20, "n2 joined")
        values = {k: k * 200 for k in ("victim-one", "victim-quorum")}
        for k, v in values.items():
            self.assertEqual(self.cli(n1, "--policy", "all", "put", k, v).returncode, 0)
        flipped = 0
        for name in os.listdir(f"{self.dir}/n1/backend-1"):
            if name.endswith(".blob"):
                with open(f"{self.dir}/n1/backend-1/{name}", "r+b") as f:
                    data = f.read()
                    for v in values.values():
                        at = data.find(v.encode())
                        if at >= 0:
                            f.seek(at + 100)
                            f.write(bytes([data[at + 100] ^ 0xff]))
                            flipped += 1
        self.assertEqual(flipped, 2)

        def group1(key):  # n1's replica alone
            return self.cli(n1, "--groups", "1", "--read", "one", "get", key)

        self.assertIn("corruption", group1("victim-one").stderr)
        r = json.loads(self.cli(n1, "--json", "--read", "one", "get", "victim-one").stdout)
        self.assertEqual((r["status"], r["data"]), ("ok", values["victim-one"]))  # from group 2
        self.assertEqual([(e["node"], e["status"]) for e in r["replicas"]], [("n1", "corruption"), ("n2", "ok")])
        # Quorum of two groups: a corrupt copy is no answer, so the read fails, and repairs.
        r = json.loads(self.cli(n1, "--json", "--read", "quorum", "get", "victim-quorum").stdout)
        self.assertEqual((r["status"], r["message"]), ("unavailable", "read policy quorum: 1 of 2 replicas answered"))
        for key in values:
            wait_for(lambda: group1(key).stdout == values[key], 10, f"{key}: n1's copy rewritten")
        self.assertEqual(self.cli(n1, "get", "victim-quorum").stdout, values["victim-quorum"])
        self.assertGreaterEqual(self.stats(n1)["anti_entropy"]["read_repairs"], 2)

    def flip_values(self, node_dir, values):
        # One byte of each value flipped in the node's blob files, under the running node.
        flipped = 0
        for name in os.listdir(f"{node_dir}/backend-1"):
            if name.endswith(".blob"):
                with open(f"{node_dir}/backend-1/{name}", "r+b") as f:
                    data = f.read()
                    for v in values:
                        at = data.find(v.encode())
                        if at >= 0:
                            f.seek(at + 10)
                            f.write(bytes([data[at + 10] ^ 0xff]))
                            flipped += 1
        return flipped

    def test_the_scrub_finds_rot_nobody_reads_and_heals_it_from_another_group(self):
        # Two groups; three values rot on n1 and nobody reads them. The scrub finds them, drops
        # them, and anti-entropy refills them from group 2. A node of its own can only report.
        ports = {1: free_port(), 2: free_port()}
        scrub = ("scrub.rate=5000", "scrub.pause_ms=300")
        n1 = self.cluster_node(1, ports, ports[1], *scrub)
        n2 = self.cluster_node(2, ports, ports[1], *scrub)
        wait_for(lambda: [r["status"] for r in self.replicas(n1, "probe")] == ["ok"] * 2, 20, "n2 joined")
        b = BinaryClient(n1.binary_port)
        keys = [(f"s{i}", f"value-{i}-" + "x" * 50) for i in range(300)]
        self.assertEqual({r[0] for r in b.put_all(keys, 3)}, {0})  # all: both groups
        b.close()
        rotten = dict(keys[10:13])
        self.assertEqual(self.flip_values(f"{self.dir}/n1", rotten.values()), 3)
        wait_for(lambda: self.stats(n1)["scrub"]["dropped_for_repair"] >= 3, 20, "n1's scrub found the rot")
        for k, v in rotten.items():  # n1's replica alone, refilled by anti-entropy, not a read
            wait_for(lambda: self.cli(n1, "--groups", "1", "--read", "one", "get", k).stdout == v, 20, f"{k} refilled")
        s = self.stats(n1)
        self.assertEqual((s["scrub"]["corrupt_found"], s["scrub"]["unrepairable"]), (3, 0))
        self.assertEqual(s["anti_entropy"]["read_repairs"], 0)
        self.assertEqual(self.stats(n2)["scrub"]["corrupt_found"], 0)

        solo = self.start("node.name=solo", f"node.data_dir={self.dir}/solo", *scrub)
        self.assertEqual(self.cli(solo, "put", "lonely", "y" * 100).returncode, 0)
        self.cli(solo, "put", "fine", "z" * 100)
        time.sleep(1.5)  # the interval fsync puts the records in the file
        self.assertEqual(self.flip_values(f"{self.dir}/solo", ["y" * 100]), 1)
        wait_for(lambda: self.stats(solo)["scrub"]["unrepairable"] == 1, 20, "the solo node's scrub reports it")
        self.assertIn("corruption", self.cli(solo, "get", "lonely").stderr)  # kept, and said so
        self.assertEqual(self.cli(solo, "get", "fine").stdout, "z" * 100)
        conn = http.client.HTTPConnection("127.0.0.1", solo.http_port, timeout=10)
        conn.request("GET", "/metrics")
        metrics = conn.getresponse().read().decode()
        conn.close()
        self.assertIn("apsis_scrub_unrepairable 1\n", metrics)

    def test_a_dead_node_is_forgotten_and_its_group_refilled(self):
        # n1 and n2 share group 1, n3 is group 2. n2 dies for good: forgetting it hands its
        # ranges to n1, which anti-entropy fills from group 2; what would empty a group is refused.
        ports = {i: free_port() for i in (1, 2, 3)}
        nodes = {i: self.cluster_node(i, ports, ports[1], group={1: 1, 2: 1, 3: 2}[i]) for i in (1, 2, 3)}
        wait_for(lambda: all(self.state_of(nodes[1], f"n{j}") == "up" for j in (2, 3)), 20, "every node joined")
        b = BinaryClient(nodes[1].binary_port)
        keys = [(f"f{i}", f"v{i}") for i in range(2000)]
        self.assertEqual({r[0] for r in b.put_all(keys, 3)}, {0})  # all: both groups
        b.close()
        self.assertLess(self.keys_held(nodes[1]), 2000)  # group 1 is split between n1 and n2
        nodes[2].kill()
        wait_for(lambda: self.state_of(nodes[1], "n2") == "down", 20, "n2 seen down")

        def forget(node, name):
            r = self.cli(node, "cluster", "forget", name)
            return r.returncode, (r.stdout + r.stderr).strip()

        self.assertEqual(forget(nodes[1], "n1"), (1, "apsis cluster forget: a node cannot forget itself"))
        self.assertEqual(forget(nodes[1], "n3"), (1, "apsis cluster forget: node 'n3' is up: only a node that is down can be forgotten"))
        self.assertEqual(forget(nodes[1], "nx"), (1, "apsis cluster forget: no node named 'nx' in the cluster"))
        self.assertEqual(forget(nodes[1], "n2")[0], 0)
        wait_for(lambda: self.state_of(nodes[3], "n2") == "forgotten", 10, "n3 hears n2 is forgotten")
        wait_for(lambda: self.keys_held(nodes[1]) >= 2000, 60, "n1 filled with n2's ranges from group 2")
        self.assertEqual([(r["node"], r["status"]) for r in self.replicas(nodes[3], "after")],
                         [("n1", "ok"), ("n3", "ok")])
        c = Client(nodes[3].port)
        c.send(*[("GET", k) for k, _ in keys])
        self.assertEqual([c.reply() for _ in keys], [v.encode() for _, v in keys])
        c.close()
        nodes[3].kill()  # now group 2 has one node, down: forgetting it would empty the group
        wait_for(lambda: self.state_of(nodes[1], "n3") == "down", 20, "n3 seen down")
        self.assertEqual(forget(nodes[1], "n3"), (1, "apsis cluster forget: forgetting 'n3' would leave group 2 with no backend"))

    def test_a_new_node_serves_nothing_until_it_has_joined(self):
        # n2's seed is not up yet: alone, its "quorum" would be itself, acknowledging writes
        # that no other replica holds. It refuses until it has joined, then serves.
        ports = {1: free_port(), 2: free_port()}
        n2 = self.cluster_node(2, ports, ports[1])
        r = self.cli(n2, "put", "early", "v")
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"this node has not joined its cluster yet (seeds: 127.0.0.1:{ports[1]})", r.stdout + r.stderr)
        self.assertEqual(Client(n2.port).call("SET", "early", "v")[:1], "-")
        self.cluster_node(1, ports, ports[1])
        wait_for(lambda: self.cli(n2, "put", "later", "v").returncode == 0, 20, "n2 joined and serves")
        self.assertEqual([(r["node"], r["status"]) for r in self.replicas(n2, "later")], [("n1", "ok"), ("n2", "ok")])

    def test_a_node_leaves_draining_its_keys_even_when_their_owner_pauses(self):
        # n1 and n3 share group 1, n2 is group 2. n3 leaves: its keys move to n1 (throttled),
        # n1 is paused mid-drain (moves fail and are retried), then n3 stops by itself, and
        # every key is on n1 and readable there. Leaving n2 would empty group 2: refused.
        ports = {i: free_port() for i in (1, 2, 3)}
        nodes = {i: self.cluster_node(i, ports, ports[1], "cluster.recovery_rate=400",
                                      group={1: 1, 2: 2, 3: 1}[i]) for i in (1, 2, 3)}
        wait_for(lambda: all(self.state_of(nodes[1], f"n{j}") == "up" for j in (2, 3)), 20, "every node joined")
        b = BinaryClient(nodes[1].binary_port)
        keys = [(f"l{i}", f"v{i}") for i in range(2000)]
        self.assertEqual({r[0] for r in b.put_all(keys, 3)}, {0})  # all: both groups
        b.close()
        on_n3 = self.keys_held(nodes[3])
        self.assertGreater(on_n3, 400)  # enough for the drain to take a few seconds
        r = self.cli(nodes[2], "cluster", "leave")
        self.assertEqual((r.returncode, r.stderr.strip()),
                         (1, "apsis cluster leave: leaving would leave group 2 with no backend"))
        leave = subprocess.Popen([APSIS, "--port", str(nodes[3].binary_port), "cluster", "leave"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: self.state_of(nodes[2], "n3") == "leaving", 10, "n2 hears n3 leaves")
        nodes[1].proc.send_signal(signal.SIGSTOP)
        time.sleep(2)
        nodes[1].proc.send_signal(signal.SIGCONT)
        out, err = leave.communicate(timeout=60)
        self.assertEqual((leave.returncode, out), (0, "n3 has left the cluster\n"), err)
        self.assertEqual(nodes[3].proc.wait(timeout=20), 0)  # it stopped by itself
        self.assertEqual(self.keys_held(nodes[1]), 2000)
        wait_for(lambda: self.state_of(nodes[2], "n3") == "left", 10, "n2 hears n3 has left")
        c = Client(nodes[2].port)
        c.send(*[("GET", k) for k, _ in keys])
        self.assertEqual([c.reply() for _ in keys], [v.encode() for _, v in keys])
        c.close()
        self.assertEqual([(r["node"], r["status"]) for r in self.replicas(nodes[2], "after")],
                         [("n1", "ok"), ("n2", "ok")])

    def test_history_checker_every_acknowledged_write_survives_faults(self):
        # A randomized workload over RESP through random live nodes, with nodes SIGKILLed and
        # restarted between rounds. Every reply is recorded: after healing, each key must hold,
        # on every replica, its last acknowledged value, or a value written after it whose
        # reply was an error (a write that failed its policy stays where it was written).
        seed = int(os.environ.get("APSIS_SEED", random.randrange(1 << 30)))
        print(f"\nhistory checker seed {seed} (APSIS_SEED={seed} repeats it)", file=sys.stderr)
        rng = random.Random(seed)
        ports = {i: free_port() for i in (1, 2, 3)}
        # n3 coordinates with policy all: its writes fail while a node is down, yet stay
        # written on the replicas that took them.
        policy = {1: "replication.policy=quorum", 2: "replication.policy=quorum", 3: "replication.policy=all"}
        start = lambda i, seed_port: self.cluster_node(i, ports, seed_port, policy[i])
        nodes = {i: start(i, ports[1]) for i in (1, 2, 3)}
        wait_for(lambda: [r["status"] for r in self.replicas(nodes[1], "probe")] == ["ok"] * 3, 20,
                 "every node joined")
        keys = [f"h{i}" for i in range(200)]
        acked = {}      # key -> last acknowledged value (None: deleted)
        after = {}      # key -> values written after it whose replies were errors
        down = None
        for rnd in range(16):
            if down is None and rng.random() < 0.5:
                down = rng.choice([1, 2, 3])
                nodes[down].kill()
            elif down is not None and rng.random() < 0.6:
                nodes[down] = start(down, ports[1] if down != 1 else ports[2])
                wait_for(lambda: all(self.state_of(nodes[i], f"n{down}") == "up" for i in nodes if i != down),
                         20, f"n{down} back (seed {seed})")
                down = None
            live = [i for i in nodes if i != down]
            via = rng.choice(live)
            c = Client(nodes[via].port)
            ops = []
            for i in range(300):
                k = rng.choice(keys)
                ops.append((k, None) if rng.random() < 0.2 else (k, f"{rnd}.{i}"))
            c.send(*[("DEL", k) if v is None else ("SET", k, v) for k, v in ops])
            if down is None and rng.random() < 0.3:  # another node dies with writes in flight
                down = rng.choice([i for i in nodes if i != via])
                nodes[down].kill()
            for k, v in ops:
                reply = c.reply()
                ok = reply == "+OK" if v is not None else isinstance(reply, int)
                if ok:
                    acked[k], after[k] = v, set()
                else:
                    after.setdefault(k, set()).add(v)
            c.close()
        if down is not None:
            nodes[down] = start(down, ports[1] if down != 1 else ports[2])
        failed = sum(len(v) for v in after.values())
        print(f"history: {len(acked)} keys acknowledged, {failed} writes failed", file=sys.stderr)

        def converged():
            for n in nodes.values():
                r = self.cli(n, "--json", "recover", "dc", "--dry-run")
                if r.returncode != 0 or json.loads(r.stdout)["divergent"] != 0:
                    return False
            return True
        wait_for(converged, 60, f"replicas converged (seed {seed})")
        for n in nodes.values():
            self.assertEqual(n.stop(), 0)
        for i in (1, 2, 3):  # each replica standing alone
            alone = self.start(f"node.name=n{i}", f"node.data_dir={self.dir}/n{i}")
            c = Client(alone.port)
            written = sorted(set(acked) | set(after))
            c.send(*[("GET", k) for k in written])
            for k in written:
                got = c.reply()
                got = got.decode() if got is not None else None
                allowed = ({acked[k]} if k in acked else {None}) | after.get(k, set())
                self.assertIn(got, allowed, f"n{i} {k} (seed {seed})")
            c.close()
            alone.stop()

    def test_a_client_that_coordinates_writes_every_replica_itself(self):
        ports, nodes = self.joined_cluster()
        r = json.loads(self.cli(nodes[1], "--coordinate", "--json", "put", "k", "v").stdout)
        self.assertEqual(r["status"], "ok")
        self.assertEqual([(e["node"], e["status"]) for e in r["replicas"]], [("n1", "ok"), ("n2", "ok"), ("n3", "ok")])
        self.assertGreaterEqual(int(r["version"].split("@")[1]), 1 << 63)  # the client's clock, not a node's
        self.assertEqual(len({e["version"] for e in r["replicas"]}), 1)   # one version everywhere
        self.assertEqual(self.cli(nodes[2], "get", "k").stdout, "v")
        nodes[3].kill()
        r = json.loads(self.cli(nodes[1], "--coordinate", "--json", "put", "k2", "v2").stdout)
        self.assertEqual((r["status"], [e["status"] for e in r["replicas"]]), ("ok", ["ok", "ok", "unavailable"]))
        r = self.cli(nodes[1], "--coordinate", "--policy", "all", "--json", "put", "k3", "v3")
        self.assertEqual((r.returncode, json.loads(r.stdout)["status"]), (1, "unavailable"))
        r = json.loads(self.cli(nodes[2], "--coordinate", "--json", "del", "k").stdout)
        self.assertEqual(r["status"], "ok")
        self.assertEqual(self.cli(nodes[1], "get", "k").returncode, 1)  # deleted on n1 too

    def test_tombstones_are_forgotten_after_their_grace_period(self):
        node = self.start("cluster.tombstone_grace_ms=1000", "cluster.merge_every_ms=200")
        c = Client(node.port)
        c.send(*[("SET", f"t{i}", "v") for i in range(10)])
        self.assertEqual({c.reply() for _ in range(10)}, {"+OK"})
        c.send(*[("DEL", f"t{i}") for i in range(5)])
        self.assertEqual({c.reply() for _ in range(5)}, {1})
        self.assertEqual(self.keys_held(node), 10)  # five live records, five tombstones
        wait_for(lambda: self.stats(node)["merge"]["tombstones_purged"] == 5 and self.keys_held(node) == 5,
                 10, "the tombstones forgotten once past their grace")
        c.send(*[("GET", f"t{i}") for i in range(10)])
        self.assertEqual([c.reply() for _ in range(10)], [None] * 5 + [b"v"] * 5)
        c.close()
        node.stop()
        again = self.start()  # and they stay forgotten after a restart
        self.assertEqual(self.keys_held(again), 5)

    def test_a_node_with_the_wrong_cookie_is_refused_on_both_sides(self):
        ports = {1: free_port(), 2: free_port()}
        good = self.cluster_node(1, ports, ports[1])
        bad = self.cluster_node(2, ports, ports[1], cookie="not-the-cookie")
        time.sleep(1.5)
        self.assertEqual([r["node"] for r in self.replicas(good, "k")], ["n1"])
        good.kill()
        bad.kill()
        self.assertIn("refused node 'n2'", good.proc.stdout.read())  # spdlog writes to stdout
        self.assertIn("refused to let us join: wrong cluster cookie", bad.proc.stdout.read())

    def test_increments_through_every_node_of_a_cluster_are_each_counted(self):
        # 8 clients x 1,000 INCR of one key through the three nodes of a 3-group cluster: one
        # group's owner computes each change and the others store its record, so every
        # replica ends at exactly 8,000.
        ports, nodes = self.joined_cluster()
        refused = []

        def hammer(node):
            c = Client(node.port)
            for _ in range(10):
                c.send(*[("INCR", "hits")] * 100)
                refused.extend(r for r in (c.reply() for _ in range(100)) if not isinstance(r, int))
            c.close()
        threads = [threading.Thread(target=hammer, args=(nodes[1 + k % 3],)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        self.assertEqual(refused, [])
        for i in (1, 2, 3):  # each group's replica, read alone
            r = self.cli(nodes[1], "--groups", str(i), "--read", "one", "get", "hits")
            self.assertEqual((r.returncode, r.stdout), (0, "8000"), f"group {i}")
        c = Client(nodes[2].port)
        self.assertEqual(c.call("SET", "word", "abc"), "+OK")
        self.assertEqual(c.call("INCR", "word"), "-ERR value is not an integer or out of range")
        self.assertEqual(c.call("APPEND", "word", "de"), 5)
        self.assertEqual(c.call("GET", "word"), b"abcde")

    def test_a_lease_is_one_across_the_cluster(self):
        # Leases live with the key's owner in the first group: a lock taken through n1 holds
        # back the same lock asked of n2, and passes on when its holder dies.
        ports = {1: free_port(), 2: free_port()}
        n1 = self.cluster_node(1, ports, ports[1])
        n2 = self.cluster_node(2, ports, ports[1])
        wait_for(lambda: [r["status"] for r in self.replicas(n1, "probe")] == ["ok"] * 2, 20,
                 "n2 joined")
        self.lease_passes_on_when_its_holder_dies(n1, n2, "job")

    def test_a_lease_is_taken_over_while_its_owner_is_down(self):
        # n1 owns every lease (the only node of group 1) and is every node's seed. While it
        # is down, the owner in the next group (n2) grants them, still one holder at a time,
        # with larger tokens; n3 reaches n2 directly (it dialed n2 when it joined, before n2
        # could hear of it), so the seed's death does not cut them apart.
        ports, nodes = self.joined_cluster()

        def token(node):
            r = self.cli(node, "lock", "job", "--lease", "5000", "--", "true")
            self.assertEqual(r.returncode, 0, r.stderr)
            return int(re.search(r"token (\d+)", r.stdout).group(1))

        before = token(nodes[3])
        nodes[1].proc.send_signal(signal.SIGKILL)
        nodes[1].proc.wait(timeout=10)
        wait_for(lambda: self.state_of(nodes[3], "n1") == "down" and self.state_of(nodes[2], "n1") == "down",
                 20, "n1 seen down")
        self.assertEqual([r["status"] for r in self.replicas(nodes[3], "after")], ["unavailable", "ok", "ok"])
        after = token(nodes[3])  # through n3, granted by n2
        self.assertGreater(after, before)
        self.lease_passes_on_when_its_holder_dies(nodes[2], nodes[3], "job")

    # -- the binary protocol and the CLI ---------------------------------------

    def test_cli_round_trip(self):
        node = self.start()
        self.assertEqual(self.cli(node, "put", "k", "hello").returncode, 0)
        self.assertEqual(self.cli(node, "get", "k").stdout, "hello")
        r = self.cli(node, "put", "k", "again", "--nx")
        self.assertEqual(r.returncode, 1)
        self.assertIn("condition_failed", r.stderr)
        self.assertEqual(self.cli(node, "put", "s", "-", stdin="from stdin").returncode, 0)
        self.assertEqual(self.cli(node, "get", "s").stdout, "from stdin")
        out = json.loads(self.cli(node, "put", "j", "v", "--json-part", '{"a":1}', "--json").stdout)
        self.assertEqual(out["status"], "ok")
        self.assertEqual(out["replicas"][0]["group"], 1)
        got = json.loads(self.cli(node, "get", "j", "--json").stdout)
        self.assertEqual((got["data"], got["json"]), ("v", '{"a":1}'))
        bad = self.cli(node, "put", "x", "v", "--json-part", "{oops")
        self.assertEqual(bad.returncode, 1)
        self.assertIn("JSON", bad.stderr)
        self.assertIn("data 5 bytes", self.cli(node, "lookup", "k").stdout)
        self.assertTrue(json.loads(self.cli(node, "del", "k", "--json").stdout)["existed"])
        self.assertEqual(self.cli(node, "get", "k").returncode, 1)
        # RESP sees what the binary protocol wrote, and the other way round.
        self.assertEqual(Client(node.port).call("GET", "s"), b"from stdin")
        self.assertRegex(self.cli(node, "stat").stdout, r"backend\s+group\s+engine.*\n1\s+1\s+blob")
        self.assertIn("backends", json.loads(self.cli(node, "--json", "stat").stdout))
        self.assertEqual(subprocess.run([APSIS, "--port", "1", "get", "k"], capture_output=True,
                                        timeout=30).returncode, 3)

    def test_cli_lock_fences_stale_writers(self):
        node = self.start()
        r = self.cli(node, "lock", "k", "--lease", "10000", "--", "sh", "-c",
                     f'"{APSIS}" --port {node.binary_port} put k by-holder --fence "$APSIS_FENCE"')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("token", r.stdout)
        self.assertEqual(self.cli(node, "get", "k").stdout, "by-holder")
        stale = self.cli(node, "put", "k", "late", "--fence", "1")
        self.assertEqual(stale.returncode, 1)
        self.assertIn("fenced", stale.stderr)
        # The lease was released when the command ended: a new lock is granted at once.
        self.assertEqual(self.cli(node, "lock", "k", "--", "true").returncode, 0)

    def lease_passes_on_when_its_holder_dies(self, holder_node, waiter_node, key):
        """A lease taken through holder_node holds back the same lock asked of waiter_node
        until the holder dies (its connection closes, long before the lease expires)."""
        holder = subprocess.Popen([APSIS, "--port", str(holder_node.binary_port), "lock", key,
                                   "--lease", "600000"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        self.assertIn("token", holder.stdout.readline())
        waiter = subprocess.Popen([APSIS, "--port", str(waiter_node.binary_port), "--timeout",
                                   "20000", "lock", key, "--", "true"], stdout=subprocess.PIPE,
                                  text=True)
        time.sleep(0.5)
        self.assertIsNone(waiter.poll(), "the second lock must wait for the first")
        holder.kill()
        holder.wait(timeout=10)
        self.assertEqual(waiter.wait(timeout=15), 0)

    def test_a_dead_holders_lease_passes_on(self):
        node = self.start()
        self.lease_passes_on_when_its_holder_dies(node, node, "k")

    def test_http_serves_health_stats_and_metrics(self):
        node = self.start()
        self.assertEqual(Client(node.port).call("SET", "k", "v"), "+OK")
        conn = http.client.HTTPConnection("127.0.0.1", node.http_port, timeout=10)
        got = {}
        for path in ("/healthz", "/readyz", "/v1/stats", "/metrics", "/nope"):  # one kept-alive connection
            conn.request("GET", path)
            r = conn.getresponse()
            got[path] = (r.status, r.getheader("Content-Type"), r.read().decode())
        self.assertEqual(got["/healthz"][:2], (200, "text/plain"))
        self.assertEqual(got["/readyz"][:2], (200, "text/plain"))
        self.assertEqual(json.loads(got["/v1/stats"][2])["backends"][0]["keys"], 1)
        self.assertEqual(got["/metrics"][:2], (200, "text/plain; version=0.0.4"))
        self.assertIn('apsis_backend_keys{backend="1",group="1"} 1\n', got["/metrics"][2])
        self.assertIn("apsis_merge_tombstones_purged_total 0\n", got["/metrics"][2])
        self.assertEqual(got["/nope"][0], 404)
        self.assertEqual(json.loads(got["/nope"][2]), {"error": "no route /nope"})
        conn.request("POST", "/metrics", body=b"")
        r = conn.getresponse()
        self.assertEqual((r.status, r.read()), (405, b'{"error":"POST /metrics: allowed GET, HEAD"}\n'))
        conn.close()
        # A header past the limit is not buffered: the connection is closed.
        s = socket.create_connection(("127.0.0.1", node.http_port), timeout=10)
        s.sendall(b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        self.assertNotIn(b"200 OK", data)

    def test_idle_connections_are_closed_busy_ones_kept(self):
        node = self.start("network.idle_timeout_ms=500")
        stalled = socket.create_connection(("127.0.0.1", node.port), timeout=10)
        stalled.sendall(b"*1\r\n$4\r\nPI")  # half a command, then silence
        binary = BinaryClient(node.binary_port)  # a hello, then nothing
        talker = Client(node.port)
        start = time.monotonic()
        while time.monotonic() - start < 1.5:  # a client that keeps talking stays
            self.assertEqual(talker.call("PING"), "+PONG")
            time.sleep(0.1)
        self.assertEqual(stalled.recv(100), b"")  # closed by the server
        self.assertEqual(binary.sock.recv(100), b"")
        for s in (stalled, binary.sock, talker.sock):
            s.close()
        # Without the setting (the default), an idle connection stays.
        node = self.start(f"node.data_dir={self.dir}/default")
        quiet = Client(node.port)
        time.sleep(1.0)
        self.assertEqual(quiet.call("PING"), "+PONG")
        quiet.close()

    def test_binary_protocol_refuses_garbage_and_oversized_frames(self):
        node = self.start()

        def exchange(payload):
            s = socket.create_connection(("127.0.0.1", node.binary_port), timeout=10)
            s.sendall(payload)
            data = b""
            while True:  # the server answers, then closes
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            s.close()
            return data

        def frame(kind, op, fid, body=b""):
            return struct.pack("<IBBHQ", 12 + len(body), kind, op, 0, fid) + body

        reply = exchange(frame(2, 1, 7))  # a request before the hello
        self.assertEqual(reply[4], 4)  # an error frame
        self.assertEqual(struct.unpack("<H", reply[16:18])[0], 5)  # hello first
        reply = exchange(struct.pack("<I", 0x7FFFFFFF) + b"x" * 12)
        self.assertEqual(struct.unpack("<H", reply[16:18])[0], 2)  # too large
        hello = frame(1, 0, 1, struct.pack("<HHH", 1, 1, 0) + struct.pack("<I", 1 << 20))
        reply = exchange(hello + frame(2, 1, 2, b"\x05\x00ab"))  # truncated get body
        self.assertEqual(reply[4], 1)  # the hello answer first
        rest = reply[4 + struct.unpack("<I", reply[:4])[0]:]
        self.assertEqual(rest[4], 4)
        self.assertEqual(struct.unpack("<H", rest[16:18])[0], 1)  # malformed
        self.assertEqual(self.cli(node, "put", "still", "serving").returncode, 0)


if __name__ == "__main__":
    unittest.main()
