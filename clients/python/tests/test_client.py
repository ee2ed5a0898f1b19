"""The Python client against a real apsisd on 127.0.0.1 (a port it picks and prints), stopped
by PID. Run by ctest with APSISD set to the binary; every wait is bounded."""
import asyncio
import json as jsonlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import shutil
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import apsis  # noqa: E402

APSISD = os.environ.get("APSISD", "build/tools/apsisd")


class Node:
    def __init__(self, data_dir):
        self.proc = subprocess.Popen(
            [APSISD, "--set", "network.resp_port=0", "--set", "network.binary_port=0",
             "--set", "network.http_port=0",
             "--set", f"node.data_dir={data_dir}", "--set", "log.level=warn"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.port = None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 15
        while self.port is None and time.monotonic() < deadline and self.proc.poll() is None:
            if sel.select(timeout=0.2):
                line = self.proc.stdout.readline()
                if "binary on 127.0.0.1:" in line:
                    self.port = int(line.split("binary on 127.0.0.1:")[1].split(",")[0])
        sel.close()
        if self.port is None:
            self.stop()
            raise RuntimeError("apsisd did not start: " + self.proc.stderr.read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=15)
        self.proc.stdout.close()
        self.proc.stderr.close()


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="apsis-python-")
        cls.node = Node(cls.dir)

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def client(self, **session):
        return apsis.Client("127.0.0.1", self.node.port, **session)

    def test_put_get_lookup_delete(self):
        with self.client(ns="py") as c:
            r = c.put("k", b"hello", json={"a": 1})
            self.assertTrue(r.ok)
            self.assertEqual([(e.node, e.status) for e in r.replicas], [("apsis-1", "ok")])
            got = c.get("k")
            self.assertEqual((got.data, got.json, got.version), (b"hello", b'{"a": 1}', r.version))
            meta = c.lookup("k")
            self.assertEqual((meta.data_size, meta.json_size), (5, 8))
            self.assertTrue(c.delete("k").existed)
            with self.assertRaises(apsis.NotFound) as missing:
                c.get("k")
            self.assertEqual(missing.exception.result.status, "not_found")
            self.assertFalse(c.delete("k").existed)

    def test_keys_are_bytes_and_namespaces_apart(self):
        with self.client(ns="one") as a, self.client(ns="two") as b:
            key = b"\x00binary\xffkey"
            a.put(key, b"1")
            b.put(key, b"2")
            self.assertEqual((a.get(key).data, b.get(key).data), (b"1", b"2"))

    def test_conditions_raise_and_write_nothing(self):
        with self.client() as c:
            first = c.put("cas", b"v1", if_absent=True)
            with self.assertRaises(apsis.ConditionFailed):
                c.put("cas", b"again", if_absent=True)
            with self.assertRaises(apsis.ConditionFailed):
                c.put("absent", b"x", if_present=True)
            c.put("cas", b"v2", if_version=first.version)  # compare-and-swap
            with self.assertRaises(apsis.ConditionFailed):
                c.put("cas", b"v3", if_version=first.version)  # no longer the stored one
            self.assertEqual(c.get("cas").data, b"v2")
            with self.assertRaises(ValueError):
                c.put("cas", b"x", if_absent=True, if_present=True)

    def test_ttl_expires(self):
        with self.client() as c:
            c.put("ttl", b"v", ttl=0.2)
            self.assertEqual(c.get("ttl").data, b"v")
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    c.get("ttl")
                    time.sleep(0.05)
                except apsis.NotFound:
                    break
            else:
                self.fail("the record did not expire")

    def test_locks_fence_older_writers(self):
        with self.client() as holder, self.client() as other:
            first = holder.lock("job", lease_ms=5000)
            self.assertGreater(first.token, 0)
            holder.put("job", b"by the holder", fence=first.token)
            self.assertTrue(holder.unlock("job", first.token))
            self.assertFalse(holder.unlock("job", first.token))  # already ended
            second = other.lock("job", lease_ms=5000)
            self.assertGreater(second.token, first.token)
            other.put("job", b"by the next holder", fence=second.token)
            with self.assertRaises(apsis.Fenced):
                holder.put("job", b"too late", fence=first.token)
            self.assertEqual(other.get("job").data, b"by the next holder")

    def test_stat_admin_and_bad_settings(self):
        with self.client(policy="one", read="one") as c:
            s = c.stat()
            self.assertEqual(s["node"], "apsis-1")
            self.assertEqual(c.admin({"cmd": "routes"}), {"nodes": []})  # a node of its own
            self.assertTrue(c.put("p", b"x").ok)  # flags for policy and read are accepted
            self.assertEqual(c.get("p").data, b"x")
        with self.client(latest=True) as c:
            self.assertEqual(c.get("p").data, b"x")
        with self.assertRaises(ValueError):
            self.client(policy="most")
        with self.assertRaises(ValueError):
            self.client(read="some")
        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]
        with self.assertRaises(apsis.ApsisError):
            apsis.Client("127.0.0.1", closed)

    def test_a_session_asks_only_its_groups(self):
        with self.client(groups=[1]) as c:
            r = c.put("g", b"x")
            self.assertEqual([(e.group, e.status) for e in r.replicas], [(1, "ok")])
            self.assertEqual(c.get("g").data, b"x")
        with self.client(groups=[2]) as c:  # this node's session has group 1 only
            with self.assertRaises(apsis.Unavailable) as caught:
                c.put("g", b"y")
            self.assertEqual(caught.exception.result.replicas, [])
            self.assertIn("no replica to ask", caught.exception.result.message)
        with self.client() as c:
            self.assertEqual(c.get("g").data, b"x")  # nothing was written
        with self.assertRaises(ValueError):
            self.client(groups=[-1])

    def test_asyncio_keeps_many_requests_in_flight(self):
        async def run():
            c = await apsis.AsyncClient.connect("127.0.0.1", self.node.port, ns="aio")
            async with c:
                puts = await asyncio.gather(*[c.put(f"k{i}", f"v{i}".encode()) for i in range(300)])
                self.assertTrue(all(r.ok for r in puts))
                gets = await asyncio.gather(*[c.get(f"k{i}") for i in range(300)])
                self.assertEqual([g.data for g in gets], [f"v{i}".encode() for i in range(300)])
                with self.assertRaises(apsis.NotFound):
                    await c.get("missing")
                self.assertEqual((await c.stat())["node"], "apsis-1")
        asyncio.run(run())

    def test_counters_appends_and_patches_change_a_value_in_one_place(self):
        with self.client(ns="chg") as c:
            self.assertEqual((c.incr("n"), c.incr("n", 41), c.incr("n", -2)), (1, 42, 40))
            self.assertEqual(c.incr("f", 1.5), 1.5)
            self.assertEqual((c.append("s", b"ab"), c.append("s", b"cd")), (2, 4))
            self.assertEqual(c.get("s").data, b"abcd")
            with self.assertRaises(apsis.OperationError) as bad:
                c.incr("s")
            self.assertEqual(bad.exception.result.message, "value is not an integer or out of range")
            r = c.patch("doc", {"a": 1, "b": {"c": 2}})
            self.assertEqual(jsonlib.loads(r.json), {"a": 1, "b": {"c": 2}})
            self.assertEqual(jsonlib.loads(c.patch("doc", {"b": None}).json), {"a": 1})
            with self.assertRaises(apsis.ConditionFailed):
                c.patch("doc", {"x": 1}, if_version=r.version)  # no longer the stored one
            self.assertEqual(jsonlib.loads(c.get("doc").json), {"a": 1})

    def test_scan_walks_a_namespace_page_by_page(self):
        with self.client(ns="scan") as c:
            keys = {f"item:{i}".encode() for i in range(250)} | {b"a*b", b"\x00bin"}
            for k in keys:
                c.put(k, k, json={"k": 1} if k == b"a*b" else b"")
            self.assertEqual({e.key for e in c.scan(page=7)}, keys)
            self.assertEqual({e.key for e in c.scan(prefix="item:1", page=5)},
                             {k for k in keys if k.startswith(b"item:1")})
            self.assertEqual([e.key for e in c.scan(prefix="a*")], [b"a*b"])  # not a glob
            self.assertEqual(sorted(e.key for e in c.scan(match="item:2?")),
                             sorted(f"item:2{d}".encode() for d in range(10)))
            full = [e for e in c.scan(payload=True) if e.key == b"a*b"][0]
            self.assertEqual((full.data, full.json, full.json_size), (b"a*b", b'{"k": 1}', 8))
            page = c.list_page(limit=10)
            self.assertEqual(len(page.listed), 10)
            self.assertNotEqual(page.cursor, "0")
            with self.assertRaises(apsis.OperationError) as bad:
                c.list_page("12345")
            self.assertIn("never issued", bad.exception.result.message)
            with self.assertRaises(ValueError):
                c.list_page(prefix="a", match="b")

        async def run():
            c = await apsis.AsyncClient.connect("127.0.0.1", self.node.port, ns="scan")
            async with c:
                return {e.key async for e in c.scan(page=9)}
        self.assertEqual(asyncio.run(run()), keys)

    def test_parts_in_any_order_are_invisible_until_a_checked_commit(self):
        MiB = 1 << 20
        parts = [bytes([65 + i]) * MiB for i in range(3)] + [b"end"]
        value = b"".join(parts)
        with self.client(ns="parts") as c:
            c.put("film", b"old")
            up = apsis.new_upload()
            for i in (3, 1, 0):  # any order; part 2 not yet
                self.assertTrue(c.write_part("film", up, i, parts[i]).ok)
            self.assertEqual(c.get("film").data, b"old")  # nothing visible before the commit
            with self.assertRaises(apsis.OperationError) as bad:
                c.commit("film", up, len(value))
            self.assertEqual(bad.exception.result.message, "part 2 is missing")
            c.write_part("film", up, 2, parts[2][:-1])
            with self.assertRaises(apsis.OperationError) as bad:
                c.commit("film", up, len(value))
            self.assertEqual(bad.exception.result.message, "part 2 holds 1048575 bytes, not 1048576")
            self.assertEqual(c.get("film").data, b"old")  # refused commits wrote nothing
            c.write_part("film", up, 2, parts[2])
            old = c.lookup("film").version
            done = c.commit("film", up, len(value))
            self.assertGreater(done.version.stamp, old.stamp)
            self.assertEqual(c.read("film", 3 * MiB - 2, 10).data, b"CCend")
            self.assertEqual(c.read("film", 0, 1).total, len(value))


if __name__ == "__main__":
    unittest.main()
