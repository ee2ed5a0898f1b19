"""Process tests of listing and the keyspace commands of several rounds (SCAN, KEYS, DBSIZE,
FLUSHDB, RENAME, MSETNX; REST's key listing): on one node, beside concurrent writers, and in a
cluster with a node down. Helpers come from apsisd_test."""
import json
import re
import subprocess
import threading
import time
import unittest
import urllib.error
import urllib.request

from apsisd_test import APSIS, Client, ClusterTest, free_port, wait_for


def scan_all(c, *options, limit=100000):
    """Every key a SCAN walk returns (a list: duplicates show), and how many calls it took."""
    keys, cursor, calls = [], b"0", 0
    while calls < limit:
        cursor, page = c.call("SCAN", cursor, *options)
        keys += page
        calls += 1
        if cursor == b"0":
            return keys, calls
    raise AssertionError("SCAN did not end")


def rest_all(port, ns, query=""):
    keys, cursor = [], "0"
    for _ in range(10000):
        with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/v1/ns/{ns}/keys?cursor={cursor}{query}", timeout=10) as r:
            body = json.loads(r.read())
        keys += body["keys"]
        cursor = body["cursor"]
        if cursor == "0":
            return keys
    raise AssertionError("the listing did not end")


class KeyspaceTest(ClusterTest):

    def test_scan_keys_and_dbsize_list_a_namespace(self):
        node = self.start()
        c = Client(node.port)
        want = {f"user:{i}".encode() for i in range(1000)}
        c.send(*[("SET", k, "v") for k in want])
        self.assertEqual({c.reply() for _ in want}, {"+OK"})
        self.assertEqual(c.call("SELECT", "1"), "+OK")
        c.send(*[("SET", f"other:{i}", "v") for i in range(100)])
        self.assertEqual({c.reply() for _ in range(100)}, {"+OK"})
        self.assertEqual(c.call("DBSIZE"), 100)
        self.assertEqual(c.call("SELECT", "0"), "+OK")
        self.assertEqual(c.call("DBSIZE"), 1000)
        for count in ("7", "1000"):
            keys, calls = scan_all(c, "COUNT", count)
            self.assertEqual(set(keys), want, f"COUNT {count}")
            self.assertLessEqual(len(keys) - len(set(keys)), 10, "a few duplicates at most")
        self.assertGreater(scan_all(c, "COUNT", "7")[1], 50, "small pages: many calls")
        keys, _ = scan_all(c, "MATCH", "user:1?", "COUNT", "50")
        self.assertEqual(sorted(keys), sorted(f"user:1{d}".encode() for d in range(10)))
        self.assertEqual(scan_all(c, "TYPE", "string")[0].__len__(), 1000)
        self.assertEqual(c.call("SCAN", "0", "TYPE", "hash"), [b"0", []])
        self.assertEqual(sorted(c.call("KEYS", "user:99*")),
                         sorted([b"user:99"] + [f"user:99{d}".encode() for d in range(10)]))
        self.assertEqual(c.call("KEYS", "nothing*"), [])
        # Bad input: a clear error, nothing listed.
        self.assertEqual(c.call("SCAN", "12345"), "-ERR invalid cursor: 12345 was never issued")
        self.assertEqual(c.call("SCAN", "-1"), "-ERR invalid cursor")
        self.assertEqual(c.call("SCAN", "abc"), "-ERR invalid cursor")
        self.assertEqual(c.call("SCAN", "0", "COUNT", "0"), "-ERR syntax error")
        self.assertEqual(c.call("SCAN", "0", "COUNT", "x"),
                         "-ERR value is not an integer or out of range")
        self.assertEqual(c.call("SCAN", "0", "MATCH"), "-ERR syntax error")
        self.assertEqual(c.call("SCAN", "0", "SIDEWAYS", "1"), "-ERR syntax error")
        self.assertTrue(c.call("DBSIZE", "x").startswith("-ERR wrong number of arguments"))
        # redis-cli walks the cursor itself.
        out = subprocess.run(["redis-cli", "-p", str(node.port), "--scan", "--pattern", "user:5*"],
                             capture_output=True, text=True, timeout=30).stdout.split()
        self.assertEqual(set(out), {k.decode() for k in want if k.startswith(b"user:5")})
        # REST: pages of `limit`, a prefix, the long form, and errors.
        self.assertEqual(set(rest_all(node.http_port, "default", "&limit=33")),
                         {k.decode() for k in want})
        self.assertEqual(sorted(rest_all(node.http_port, "default", "&prefix=user:12")),
                         sorted(["user:12"] + [f"user:12{d}" for d in range(10)]))
        with urllib.request.urlopen(
                f"http://127.0.0.1:{node.http_port}/v1/ns/default/keys?prefix=user:7&long=1&limit=1000",
                timeout=10) as r:
            page = json.loads(r.read())
        self.assertEqual(len(page["keys"]), 111)
        self.assertEqual(page["keys"][0]["data_size"], 1)
        self.assertIn("version", page["keys"][0])
        for query, why in (("cursor=12345", "never issued"), ("limit=0", "limit must be"),
                           ("prefix=a&match=b", "prefix or match"), ("long=maybe", "long must")):
            with self.assertRaises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(
                    f"http://127.0.0.1:{node.http_port}/v1/ns/default/keys?{query}", timeout=10)
            self.assertEqual(e.exception.code, 400)
            self.assertIn(why, e.exception.read().decode())
        c.close()

    def test_a_scan_returns_every_key_present_throughout_beside_writers(self):
        node = self.start()
        c = Client(node.port)
        stable = {f"stable:{i}".encode() for i in range(3000)}
        c.send(*[("SET", k, "v") for k in stable])
        self.assertEqual({c.reply() for _ in stable}, {"+OK"})
        stop = threading.Event()
        written = [0]

        def churn():
            w = Client(node.port)
            i = 0
            while not stop.is_set() and i < 200000:
                w.send(*[("SET", f"churn:{i + k}", "x" * 100) for k in range(50)],
                       *[("DEL", f"churn:{i + k - 25}") for k in range(50)])
                for _ in range(100):
                    w.reply()
                i += 50
                written[0] = i
            w.close()
        t = threading.Thread(target=churn)
        t.start()
        try:
            for _ in range(3):
                keys, _ = scan_all(c, "COUNT", "20")
                missing = stable - set(keys)
                self.assertEqual(missing, set())
        finally:
            stop.set()
            t.join(timeout=60)
        self.assertGreater(written[0], 0)
        c.close()

    def test_flushdb_rename_and_msetnx(self):
        node = self.start()
        c = Client(node.port)
        c.send(*[("SET", f"k{i}", i) for i in range(2500)])
        self.assertEqual({c.reply() for _ in range(2500)}, {"+OK"})
        self.assertEqual(c.call("SELECT", "7"), "+OK")
        self.assertEqual(c.call("MSET", "x", "1", "y", "2"), "+OK")
        self.assertEqual(c.call("SELECT", "0"), "+OK")
        self.assertEqual(c.call("FLUSHDB"), "+OK")
        self.assertEqual(c.call("DBSIZE"), 0)
        self.assertEqual(c.call("FLUSHDB", "NOW"), "-ERR syntax error")
        self.assertEqual(c.call("SELECT", "7"), "+OK")
        self.assertEqual(c.call("DBSIZE"), 2, "another namespace is left alone")
        # RENAME keeps value and expiry; the old name is gone.
        self.assertEqual(c.call("SET", "a", "hello", "EX", "100"), "+OK")
        self.assertEqual(c.call("RENAME", "a", "b"), "+OK")
        self.assertEqual(c.call("GET", "b"), b"hello")
        self.assertIn(c.call("TTL", "b"), (99, 100))
        self.assertEqual(c.call("EXISTS", "a"), 0)
        self.assertEqual(c.call("RENAME", "a", "c"), "-ERR no such key")
        self.assertEqual(c.call("RENAME", "b", "b"), "+OK")
        self.assertEqual(c.call("RENAMENX", "b", "b"), 0)
        self.assertEqual(c.call("RENAMENX", "b", "x"), 0)  # taken
        self.assertEqual(c.call("GET", "x"), b"1")
        self.assertEqual(c.call("RENAMENX", "b", "z"), 1)
        self.assertEqual(c.call("GET", "z"), b"hello")
        self.assertEqual(c.call("EXISTS", "b"), 0)
        # A pipeline runs in order around a command of several rounds.
        c.send(("SET", "p", "1"), ("RENAME", "p", "q"), ("GET", "q"), ("GET", "p"),
               ("RENAME", "q", "p"), ("GET", "p"))
        self.assertEqual([c.reply() for _ in range(6)], ["+OK", "+OK", b"1", None, "+OK", b"1"])
        # MSETNX: all or none while nobody races it.
        self.assertEqual(c.call("MSETNX", "m1", "a", "m2", "b"), 1)
        self.assertEqual(c.call("MSETNX", "m2", "c", "m3", "d"), 0)
        self.assertEqual(c.call("MGET", "m1", "m2", "m3"), [b"a", b"b", None])
        self.assertEqual(c.call("MSETNX", "d", "1", "d", "2"), 1)  # the last value of a key wins
        self.assertEqual(c.call("GET", "d"), b"2")
        self.assertTrue(c.call("MSETNX", "m4").startswith("-ERR wrong number of arguments"))
        self.assertEqual(c.call("EXISTS", "m4"), 0)
        c.close()

    def test_a_listing_fails_over_per_range_when_an_owner_is_down(self):
        # Group 1 is n1 and n2 (each owns part of the ring), group 2 is n3 alone. With n2
        # killed, its ranges are listed from n3: every key still appears once.
        ports = {i: free_port() for i in (1, 2, 3)}
        nodes = {i: self.cluster_node(i, ports, ports[1], group=1 if i < 3 else 2)
                 for i in (1, 2, 3)}
        wait_for(lambda: [self.state_of(nodes[1], n) for n in ("n2", "n3")] == ["up", "up"] and
                 [r["status"] for r in self.replicas(nodes[1], "probe")] == ["ok", "ok"], 20,
                 "every node joined")
        c = Client(nodes[1].port)
        want = {f"key:{i}".encode() for i in range(2000)}
        c.send(*[("SET", k, "v") for k in want])
        self.assertEqual({c.reply() for _ in want}, {"+OK"})
        self.assertGreater(self.keys_held(nodes[2]), 0, "n2 owns part of group 1")
        keys, _ = scan_all(c, "COUNT", "50")
        self.assertEqual(set(keys), want | {b"probe"})
        nodes[2].kill()
        wait_for(lambda: self.state_of(nodes[1], "n2") == "down", 20, "n2 seen down")
        keys, _ = scan_all(c, "COUNT", "50")
        self.assertEqual(set(keys), want | {b"probe"})
        self.assertEqual(c.call("DBSIZE"), 2001)
        self.assertEqual(set(rest_all(nodes[1].http_port, "default", "&limit=500")),
                         {k.decode() for k in want} | {"probe"})
        c.close()

    def test_cli_lists_and_an_export_imports_back_byte_for_byte(self):
        node = self.start()
        c = Client(node.port)
        c.send(*[("SET", f"rec:{i}", bytes([i % 256]) * (i % 300), *(("EX", "3600") if i % 7 == 0 else ()))
                 for i in range(100000)])
        replies = {c.reply() for _ in range(100000)}
        self.assertEqual(replies, {"+OK"})
        c.close()
        self.assertEqual(self.cli(node, "put", "--json-part", '{"z": [1, 2.50]}', "doc", "d").returncode, 0)
        ls = self.cli(node, "ls", "--prefix", "rec:9999")
        self.assertEqual(sorted(ls.stdout.split()), sorted(["rec:9999"] + [f"rec:9999{d}" for d in range(10)]))
        long_ls = self.cli(node, "ls", "--long", "--match", "doc").stdout.split("\t")
        self.assertEqual((long_ls[0], long_ls[1]), ("doc", "17"))  # data + json bytes
        exported = subprocess.run([APSIS, "--port", str(node.binary_port), "export"],
                                  capture_output=True, timeout=120)
        self.assertEqual(exported.returncode, 0, exported.stderr)
        lines = exported.stdout.splitlines()
        self.assertEqual(len(lines), 100001 + 2)  # header, records, trailer

        def imported(ns, stream):
            return subprocess.run([APSIS, "--port", str(node.binary_port), "--ns", ns, "import"],
                                  input=stream, capture_output=True, timeout=300)
        # A truncated or altered stream is refused whole: nothing is written.
        cut = imported("cut", b"\n".join(lines[:-1]) + b"\n")
        self.assertEqual(cut.returncode, 1)
        self.assertIn(b"without its trailer", cut.stderr)
        altered = imported("cut", exported.stdout.replace(b'"key":"rec:5"', b'"key":"rec:X"', 1))
        self.assertEqual(altered.returncode, 1)
        self.assertIn(b"checksum mismatch", altered.stderr)
        self.assertEqual(self.cli(node, "--ns", "cut", "ls").stdout, "")
        done = imported("copy", exported.stdout)
        self.assertEqual(done.returncode, 0, done.stderr)

        def records(ns):  # every record but its version (import writes new ones)
            out = subprocess.run([APSIS, "--port", str(node.binary_port), "--ns", ns, "export"],
                                 capture_output=True, timeout=120).stdout.splitlines()[1:-1]
            return sorted(re.sub(rb'"version":"[^"]*",?', b"", l) for l in out)
        self.assertEqual(records("copy"), records("default"))
        # --since: what changed after a version, deletes included.
        c = Client(node.port)
        self.assertEqual(c.call("DEL", "rec:1"), 1)
        self.assertEqual(c.call("SET", "rec:2", "new"), "+OK")
        c.close()
        since = json.loads(lines[-2])["version"]  # a record of the first export
        changed = subprocess.run([APSIS, "--port", str(node.binary_port), "export", "--since",
                                  since], capture_output=True, timeout=120).stdout.splitlines()
        found = {json.loads(l).get("key"): json.loads(l) for l in changed[1:-1]}
        self.assertTrue(found["rec:1"].get("deleted"))
        self.assertEqual(found["rec:2"]["data"], "bmV3")  # base64 of "new"
        self.assertLess(len(found), 100000)

    def test_patches_and_increments_through_every_node_each_apply_once(self):
        # A merge patch and a REST increment are computed by one group's owner and written
        # to the others: racing through three nodes of a 3-group cluster, none is lost and
        # every group holds the same document.
        _, nodes = self.joined_cluster()
        failures = []

        def request(node, method, path, body=b"", headers=None):
            req = urllib.request.Request(f"http://127.0.0.1:{node.http_port}{path}", data=body,
                                         method=method, headers=headers or {})
            try:
                with urllib.request.urlopen(req, timeout=20) as r:
                    return r.status, r.read()
            except urllib.error.HTTPError as e:
                return e.code, e.read()

        def hammer(t):
            node = nodes[1 + t % 3]
            for i in range(40):
                status, body = request(node, "PATCH", "/v1/ns/default/keys/doc",
                                       json.dumps({f"t{t}": i, f"m{t}_{i}": True}).encode(),
                                       {"Content-Type": "application/merge-patch+json"})
                if status not in (200, 201):
                    failures.append((status, body))
                status, body = request(node, "POST", "/v1/ns/default/keys/hits/incr?by=2")
                if status not in (200, 201):
                    failures.append((status, body))
        threads = [threading.Thread(target=hammer, args=(t,)) for t in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        self.assertEqual(failures, [])
        for g in (1, 2, 3):  # each group's replica, read alone
            status, body = request(nodes[1], "GET", f"/v1/ns/default/keys/doc?groups={g}&read=one",
                                   headers={"Accept": "application/json"})
            doc = json.loads(body)
            self.assertEqual(len([k for k in doc if k.startswith("m")]), 240, f"group {g}")
            self.assertEqual({doc[f"t{t}"] for t in range(6)}, {39}, f"group {g}")
            status, body = request(nodes[1], "GET", f"/v1/ns/default/keys/hits?groups={g}&read=one")
            self.assertEqual(body, b"480", f"group {g}")
        # Conditions and refusals: a 412 and a 409 change nothing.
        status, _ = request(nodes[2], "PATCH", "/v1/ns/default/keys/doc", b'{"x": 1}',
                            {"Content-Type": "application/merge-patch+json", "If-Match": '"1.0@1"'})
        self.assertEqual(status, 412)
        self.assertEqual(request(nodes[2], "PUT", "/v1/ns/default/keys/word", b"abc")[0], 201)
        status, body = request(nodes[3], "POST", "/v1/ns/default/keys/word/incr")
        self.assertEqual((status, json.loads(body)["error"]),
                         (409, "value is not an integer or out of range"))
        status, body = request(nodes[3], "POST", "/v1/ns/default/keys/word/incr?by=x")
        self.assertEqual(status, 400)
        status, body = request(nodes[3], "POST", "/v1/ns/default/keys/word/append", b"de")
        self.assertEqual((status, json.loads(body)["length"]), (200, 5))
        status, body = request(nodes[1], "POST", "/v1/ns/default/keys/f/incr?by=1.5")
        self.assertEqual((status, json.loads(body)["value"]), (201, "1.5"))
        self.assertEqual(request(nodes[1], "POST", "/v1/ns/default/keys/word/decr")[0], 405)

    def test_cli_increments_appends_and_patches(self):
        node = self.start()
        run = lambda *a: self.cli(node, *a)
        self.assertEqual((run("incr", "n").stdout, run("incr", "n", "--by", "41").stdout), ("1\n", "42\n"))
        self.assertEqual(run("incr", "n", "--by", "0.5").stdout, "42.5\n")
        self.assertEqual(run("append", "s", "ab").stdout, "2\n")
        self.assertEqual(run("append", "s", "cd").stdout, "4\n")
        self.assertEqual(run("get", "s").stdout, "abcd")
        bad = run("incr", "s")
        self.assertEqual(bad.returncode, 1)
        self.assertIn("value is not an integer or out of range", bad.stderr)
        self.assertEqual(run("patch", "doc", '{"a": {"b": 1}}').stdout, '{"a":{"b":1}}\n')
        self.assertEqual(run("patch", "doc", '{"a": {"b": null}, "c": 2}').stdout, '{"a":{},"c":2}\n')
        self.assertEqual(run("patch", "s", "{}").returncode, 1)  # a binary value: nothing to patch
        self.assertEqual(run("get", "s").stdout, "abcd")


if __name__ == "__main__":
    unittest.main()
