"""REST process tests: a real apsisd on 127.0.0.1 (ports it picks), driven with Python's
http.client and raw sockets, every status code of docs/rest.md exercised; the curl examples
of docs/rest.md are run as written and their output compared. Nodes are stopped by PID;
every loop is bounded in time and count."""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import unittest
import urllib.parse

from apsisd_test import APSIS, NodeTest, free_port, wait_for

DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "rest.md")


class Http:
    """One kept-alive connection; request() answers (status, headers, body bytes)."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def request(self, method, path, body=None, headers=None):
        self.conn.request(method, path, body=body, headers=headers or {})
        r = self.conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()

    def json(self, method, path, doc=None, headers=None):
        h = {"Content-Type": "application/json", **(headers or {})}
        status, hdrs, body = self.request(method, path, None if doc is None else json.dumps(doc), h)
        return status, hdrs, json.loads(body) if body else None


def raw_exchange(port, payload, seconds=10):
    """Sends bytes, reads until the server closes (or `seconds` pass); answers what came."""
    s = socket.create_connection(("127.0.0.1", port), timeout=seconds)
    s.sendall(payload)
    data = b""
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    s.close()
    return data


class RestTest(NodeTest):
    def test_fsync_always_puts_of_many_clients_share_fsyncs(self):
        # As RESP's: 16 connections (curl --parallel: real concurrency, unlike threads under
        # Python's lock), each waiting for its 201 before its next PUT, so only PUTs of
        # different connections can share an fsync; none is acknowledged before its fsync.
        # Before PUTs owed their fsync (shard actors waiting each): 1.3 writes per fsync.
        node = self.start("backend.fsync=always")
        n = 800
        args = []
        for i in range(n):
            args += ["-o", "/dev/null",
                     f"http://127.0.0.1:{node.http_port}/v1/ns/default/keys/k{i}"]
        r = subprocess.run(["curl", "-s", "--parallel", "--parallel-max", "16", "-X", "PUT",
                            "--data", "v", "-w", "%{http_code}\n", *args],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.stdout.split(), ["201"] * n)
        r = subprocess.run([APSIS, "--port", str(node.binary_port), "--json", "stat"],
                           capture_output=True, text=True, timeout=30)
        backend = json.loads(r.stdout)["backends"][0]
        self.assertGreaterEqual(backend["synced_writes"], n)
        self.assertGreaterEqual(backend["synced_writes"] / backend["syncs"], 2.0, backend)
        last = f"/v1/ns/default/keys/k{n - 1}"
        self.assertEqual(Http(node.http_port).request("GET", last)[2], b"v")

    def test_a_key_is_written_read_conditionally_and_deleted(self):
        h = Http(self.start().http_port)
        k = "/v1/ns/default/keys/greeting"
        status, hdrs, body = h.request("PUT", k, b"hello")
        self.assertEqual(status, 201)  # created
        self.assertEqual(json.loads(body)["existed"], False)
        first = hdrs["etag"]
        self.assertRegex(first, r'^"\d{13}\.\d+@1"$')  # ms.counter@node, as the CLI shows versions
        self.assertEqual(hdrs["x-apsis-replicas"], "1/apsis-1/1=ok")
        self.assertEqual(h.request("GET", k)[0::2], (200, b"hello"))
        self.assertEqual(h.request("GET", k, headers={"If-None-Match": first})[0], 304)
        self.assertEqual(h.request("PUT", k, b"x", {"If-Match": '"1.0@1"'})[0], 412)
        self.assertEqual(h.request("PUT", k, b"x", {"If-None-Match": "*"})[0], 412)
        status, hdrs, _ = h.request("PUT", k, b"hello again", {"If-Match": first})
        self.assertEqual(status, 200)  # replaced
        self.assertNotEqual(hdrs["etag"], first)
        self.assertEqual(h.request("GET", k, headers={"If-None-Match": first})[0::2], (200, b"hello again"))
        status, hdrs, body = h.request("HEAD", k)
        self.assertEqual((status, body), (200, b""))
        self.assertEqual((hdrs["content-length"], hdrs["x-apsis-data-size"], hdrs["x-apsis-json-size"]),
                         ("11", "11", "0"))
        self.assertEqual(h.request("DELETE", k, headers={"If-Match": first})[0], 412)
        self.assertEqual(h.request("DELETE", k)[0], 200)
        self.assertEqual(h.request("DELETE", k)[0], 404)
        status, _, body = h.request("GET", k)
        self.assertEqual((status, json.loads(body)["status"]), (404, "not_found"))
        self.assertEqual(h.request("HEAD", k)[0::2], (404, b""))
        big = os.urandom(3 << 20)  # a large value comes back whole, or in byte ranges
        self.assertEqual(h.request("PUT", "/v1/ns/default/keys/big", big)[0], 201)
        status, hdrs, body = h.request("GET", "/v1/ns/default/keys/big")
        self.assertEqual((status, int(hdrs["content-length"]), body == big, hdrs["accept-ranges"]),
                         (200, len(big), True, "bytes"))
        for rng, want in [("bytes=0-9", big[:10]), ("bytes=1048576-", big[1 << 20:]), ("bytes=-5", big[-5:]),
                          ("bytes=100-99999999", big[100:])]:
            status, hdrs, body = h.request("GET", "/v1/ns/default/keys/big", headers={"Range": rng})
            self.assertEqual((status, body == want), (206, True), rng)
            first = len(big) - len(want) if rng.startswith("bytes=-") else int(rng[6:].split("-")[0])
            self.assertEqual(hdrs["content-range"], f"bytes {first}-{first + len(want) - 1}/{len(big)}")
        status, hdrs, _ = h.request("GET", "/v1/ns/default/keys/big", headers={"Range": f"bytes={len(big)}-"})
        self.assertEqual((status, hdrs["content-range"]), (416, f"bytes */{len(big)}"))
        status, _, body = h.request("GET", "/v1/ns/default/keys/big", headers={"Range": "bytes=0-1,5-6"})
        self.assertEqual((status, len(body)), (200, len(big)))  # several ranges: the whole value

    def test_keys_with_any_bytes_ttl_and_verbose_replicas(self):
        h = Http(self.start().http_port)
        key = "a/b c%\u00fc\x00?#&="
        path = "/v1/ns/default/keys/" + urllib.parse.quote(key, safe="")
        self.assertEqual(h.request("PUT", path + "?ttl=60", b"\x00\xff binary")[0], 201)
        status, hdrs, body = h.request("GET", path)
        self.assertEqual((status, body, hdrs["content-type"]), (200, b"\x00\xff binary", "application/octet-stream"))
        expires = int(hdrs["x-apsis-expires"])
        self.assertLess(abs(expires - (time.time() + 60) * 1000), 10000)
        self.assertEqual(h.request("PUT", path, b"v", {"X-Apsis-TTL": "120"})[0], 200)
        self.assertLess(abs(int(h.request("GET", path)[1]["x-apsis-expires"]) - (time.time() + 120) * 1000), 10000)
        status, _, doc = h.json("GET", path + "?verbose=1")
        self.assertEqual((status, doc["key"], doc["data"]), (200, key, "dg=="))  # base64 of "v"
        self.assertEqual([(r["group"], r["node"], r["status"]) for r in doc["replicas"]], [(1, "apsis-1", "ok")])
        # The same key through RESP: REST keys are the store's keys.
        s = socket.create_connection(("127.0.0.1", self.nodes[0].port), timeout=10)
        s.sendall(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key.encode()), key.encode()))
        self.assertEqual(s.recv(100), b"$1\r\nv\r\n")
        s.close()

    def test_json_values_accept_and_merge_patch(self):
        h = Http(self.start().http_port)
        k = "/v1/ns/app/keys/doc"
        self.assertEqual(h.json("PUT", k, {"a": 1, "b": {"c": 2, "d": 3}})[0], 201)
        status, hdrs, doc = h.json("GET", k, headers={"Accept": "application/json"})
        self.assertEqual((status, hdrs["content-type"], doc), (200, "application/json", {"a": 1, "b": {"c": 2, "d": 3}}))
        patch = {"Content-Type": "application/merge-patch+json"}
        status, hdrs, _ = h.request("PATCH", k, json.dumps({"b": {"c": None}, "e": [1]}), patch)
        self.assertEqual(status, 200)
        self.assertEqual(h.json("GET", k)[2], {"a": 1, "b": {"d": 3}, "e": [1]})
        stale = {**patch, "If-Match": '"1.0@1"'}
        self.assertEqual(h.request("PATCH", k, "{}", stale)[0], 412)
        current = {**patch, "If-Match": hdrs["etag"]}
        self.assertEqual(h.request("PATCH", k, '{"a": 2}', current)[0], 200)
        self.assertEqual(h.json("GET", k)[2]["a"], 2)
        # A patch on a missing key makes it from {}; on a binary value there is nothing to patch.
        self.assertEqual(h.request("PATCH", "/v1/ns/app/keys/new", '{"x": {"y": 1}}', patch)[0], 201)
        self.assertEqual(h.json("GET", "/v1/ns/app/keys/new")[2], {"x": {"y": 1}})
        h.request("PUT", "/v1/ns/app/keys/bin", b"\x01\x02")
        self.assertEqual(h.request("PATCH", "/v1/ns/app/keys/bin", "{}", patch)[0], 409)
        self.assertEqual(h.request("GET", "/v1/ns/app/keys/bin", headers={"Accept": "application/json"})[0], 406)
        self.assertEqual(h.request("PATCH", k, "{}", {"Content-Type": "text/plain"})[0], 415)
        self.assertEqual(h.request("PATCH", k, "{nope", patch)[0], 400)

    def test_bad_requests_get_a_json_error_naming_the_problem(self):
        node = self.start("limits.max_value_size=1000")
        h = Http(node.http_port)
        for path, why in [("/v1/ns/default/keys/k?policy=most", "policy must be one, quorum or all"),
                          ("/v1/ns/default/keys/k?bogus=1", "unknown query parameter 'bogus'"),
                          ("/v1/ns/default/keys/%zz", "malformed percent-encoding"),
                          ("/v1/ns/bad%20name/keys/k", "a namespace is 1-64 of"),
                          ("/v1/ns/default/keys/k?ttl=0", "ttl must be a number of seconds")]:
            status, hdrs, body = h.json("GET", path)
            self.assertEqual(status, 400, path)
            self.assertIn(why, body["error"], path)
        self.assertEqual(h.json("PUT", "/v1/ns/default/keys/")[:3:2], (400, {"error": "empty key"}))
        status, _, body = h.json("PUT", "/v1/ns/default/keys/k", headers={"Content-Type": "application/json"})
        self.assertEqual((status, body["error"]), (400, "the body is not a valid JSON document"))
        status, hdrs, body = h.json("POST", "/v1/ns/default/keys/k")
        self.assertEqual((status, hdrs["allow"]), (405, "GET, HEAD, PUT, DELETE, PATCH"))
        self.assertEqual(h.json("GET", "/v2/nothing")[0], 404)
        status, _, body = h.request("PUT", "/v1/ns/default/keys/big", b"x" * 1001)
        self.assertEqual((status, json.loads(body)["error"]), (413, "a body of 1001 bytes exceeds the limit of 1000"))
        # The body was never read, so that connection is closed; a new one works.
        h = Http(node.http_port)
        self.assertEqual(h.request("PUT", "/v1/ns/default/keys/big", b"x" * 1000)[0], 201)
        # A header past 8 KiB: 431, and the connection closes.
        got = raw_exchange(node.http_port, b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        self.assertTrue(got.startswith(b"HTTP/1.1 431 "), got[:100])
        got = raw_exchange(node.http_port, b"NOT HTTP AT ALL\r\n\r\n")
        self.assertTrue(got.startswith(b"HTTP/1.1 400 "), got[:100])
        self.assertEqual(h.request("GET", "/healthz")[0::2], (200, b"ok\n"))  # still serving
        # A client that asks before sending its body hears "100 Continue" (or 413 at once).
        s = socket.create_connection(("127.0.0.1", node.http_port), timeout=10)
        s.sendall(b"PUT /v1/ns/default/keys/e HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        self.assertEqual(s.recv(100), b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(b"abc")
        self.assertTrue(s.recv(1000).startswith(b"HTTP/1.1 201 Created\r\n"))
        s.close()
        got = raw_exchange(node.http_port, b"PUT /v1/ns/default/keys/e HTTP/1.1\r\nContent-Length: 5000\r\n"
                                           b"Expect: 100-continue\r\n\r\n")
        self.assertTrue(got.startswith(b"HTTP/1.1 413 "), got[:100])

    def test_pipelined_requests_are_answered_in_order_and_slow_clients_are_cut_off(self):
        node = self.start("network.request_timeout_ms=500")
        reqs = b"".join(b"PUT /v1/ns/default/keys/p%d HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nv%d" % (i, i)
                        for i in range(3))
        reqs += b"GET /v1/ns/default/keys/p2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        got = raw_exchange(node.http_port, reqs)
        self.assertEqual(got.count(b"HTTP/1.1 201 Created"), 3)
        self.assertTrue(got.endswith(b"\r\n\r\nv2"), got[-50:])
        # A client that sends half a header and waits is closed once the timeout passes,
        # and holds no one else up meanwhile.
        slow = socket.create_connection(("127.0.0.1", node.http_port), timeout=10)
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost:")
        self.assertEqual(Http(node.http_port).request("GET", "/healthz")[0], 200)
        start = time.monotonic()
        self.assertEqual(slow.recv(100), b"")  # closed by the server
        self.assertLess(time.monotonic() - start, 5)
        slow.close()

    def test_bulk_calls_namespaces_and_locks(self):
        h = Http(self.start().http_port)
        status, _, doc = h.json("POST", "/v1/ns/app/bulk/put",
                                {"items": [{"key": "a", "json": {"x": 1}}, {"key": "b", "data": "aGk=", "ttl": 60}]})
        self.assertEqual((status, [r["status"] for r in doc["results"]]), (200, ["ok", "ok"]))
        status, _, doc = h.json("POST", "/v1/ns/app/bulk/get", {"keys": ["a", "b", "c"]})
        got = {r["key"]: r for r in doc["results"]}
        self.assertEqual((got["a"]["json"], got["b"]["data"], got["c"]["status"]), ({"x": 1}, "aGk=", "not_found"))
        self.assertIn("expiry_ms", got["b"])
        self.assertEqual(h.json("POST", "/v1/ns/app/bulk/get", {"nokeys": []})[0], 400)
        self.assertEqual(h.json("POST", "/v1/ns/app/bulk/put", {"items": [{"key": "z", "data": "@@"}]})[0], 400)
        # Namespaces: created, listed, dropped (their keys with them, others' stay).
        self.assertEqual(h.json("PUT", "/v1/ns/app")[0], 201)
        self.assertEqual(h.json("PUT", "/v1/ns/app")[0], 200)  # already there
        self.assertEqual(h.json("GET", "/v1/ns")[2], {"namespaces": ["default", "app"]})
        h.request("PUT", "/v1/ns/other/keys/a", b"stays")
        status, _, doc = h.json("DELETE", "/v1/ns/app")
        self.assertEqual((status, doc["purge"]["purged_here"]), (200, 2))
        self.assertEqual(h.request("GET", "/v1/ns/app/keys/a")[0], 404)
        self.assertEqual(h.request("GET", "/v1/ns/other/keys/a")[0::2], (200, b"stays"))
        self.assertEqual(h.json("DELETE", "/v1/ns/app")[0], 404)
        self.assertEqual(h.json("GET", "/v1/ns")[2], {"namespaces": ["default"]})
        # Locks: a token fences writes; a write with an older token is refused (409).
        status, _, lease = h.json("POST", "/v1/ns/default/locks/job?lease_ms=5000")
        self.assertEqual(status, 200)
        self.assertGreater(lease["expires_ms"], time.time() * 1000)
        fence = {"X-Apsis-Fence": str(lease["token"])}
        self.assertEqual(h.request("PUT", "/v1/ns/default/keys/job", b"1", fence)[0], 201)
        self.assertEqual(h.json("DELETE", f"/v1/ns/default/locks/job?token={lease['token']}")[0], 200)
        self.assertEqual(h.json("DELETE", f"/v1/ns/default/locks/job?token={lease['token']}")[0], 404)
        newer = h.json("POST", "/v1/ns/default/locks/job")[2]["token"]
        self.assertGreater(newer, lease["token"])
        self.assertEqual(h.request("PUT", "/v1/ns/default/keys/job", b"2", {"X-Apsis-Fence": str(newer)})[0], 200)
        status, _, body = h.request("PUT", "/v1/ns/default/keys/job", b"3", fence)
        self.assertEqual((status, json.loads(body)["status"]), (409, "fenced"))

    def test_a_policy_that_cannot_be_met_is_503_listing_the_replicas(self):
        ports = {i: free_port() for i in (1, 2)}
        nodes = {i: self.start(f"node.name=n{i}", f"node.id={i}", f"node.data_dir={self.dir}/n{i}",
                               f"backend.group={i}", f"cluster.port={ports[i]}", 'cluster.cookie="rest-test-cookie"',
                               f'cluster.seeds=["127.0.0.1:{ports[1]}"]', "cluster.heartbeat_ms=100",
                               "replication.timeout_ms=1000", "replication.policy=all")
                 for i in (1, 2)}
        h = Http(nodes[1].http_port)

        def replicas(path):
            status, hdrs, _ = h.request("PUT", path, b"probe")
            return status, hdrs.get("x-apsis-replicas", "")

        wait_for(lambda: replicas("/v1/ns/default/keys/probe") == (200, "1/n1/1=ok, 2/n2/1=ok"), 20, "n2 joined")
        self.assertEqual(replicas("/v1/ns/default/keys/g?groups=2"), (201, "2/n2/1=ok"))
        status, _, doc = h.json("GET", "/v1/cluster")
        self.assertEqual(sorted(n["name"] for n in doc["nodes"]), ["n1", "n2"])
        status, _, doc = h.json("GET", "/v1/cluster/routes")
        self.assertEqual(sorted(n["name"] for n in doc["nodes"]), ["n1", "n2"])
        # Dropping a namespace purges its keys on every node, the other node's replicas too.
        for i in range(20):
            self.assertEqual(h.request("PUT", f"/v1/ns/gone/keys/k{i}", b"v")[0], 201)
        self.assertEqual(h.json("PUT", "/v1/ns/gone")[0], 201)
        status, _, doc = h.json("DELETE", "/v1/ns/gone")
        self.assertEqual((status, doc["purge"]), (200, {"purged_here": 20, "nodes_told": 1}))
        wait_for(lambda: all(h.request("GET", f"/v1/ns/gone/keys/k{i}?groups=2")[0] == 404 for i in range(20)),
                 10, "n2's replicas purged")
        self.assertEqual(h.request("GET", "/v1/ns/gone/keys/k0?groups=1")[0], 404)
        nodes[2].proc.send_signal(signal.SIGKILL)
        nodes[2].proc.wait(timeout=10)
        wait_for(lambda: replicas("/v1/ns/default/keys/probe")[1].endswith("n2/1=unavailable"), 20, "n2 seen down")
        status, hdrs, body = h.request("PUT", "/v1/ns/default/keys/k", b"v")
        doc = json.loads(body)
        self.assertEqual((status, doc["status"]), (503, "unavailable"))
        self.assertEqual([(r["node"], r["status"]) for r in doc["replicas"]], [("n1", "ok"), ("n2", "unavailable")])
        self.assertEqual(h.request("PUT", "/v1/ns/default/keys/k?policy=one", b"v")[0], 200)  # n1 has it now
        self.assertEqual(h.request("GET", "/v1/ns/default/keys/k?read=one")[0::2], (200, b"v"))
        status, _, doc = h.json("GET", "/v1/ns/default/keys/k")  # the default read: quorum, 2 of 2
        self.assertEqual((status, doc["error"]), (503, "read policy quorum: 1 of 2 replicas answered"))
        self.assertEqual(h.request("GET", "/v1/ns/default/keys/k?groups=2")[0], 503)
        self.assertEqual(h.request("GET", "/v1/ns/default/keys/k?read=some")[0], 400)

    def test_metrics_count_requests_by_surface_command_and_status(self):
        node = self.start()
        h = Http(node.http_port)
        for i in range(3):
            h.request("PUT", f"/v1/ns/default/keys/m{i}", b"v")
        h.request("GET", "/v1/ns/default/keys/missing")
        s = socket.create_connection(("127.0.0.1", node.port), timeout=10)
        s.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nr\r\n$1\r\nv\r\n")
        self.assertEqual(s.recv(100), b"+OK\r\n")
        s.close()
        status, hdrs, body = h.request("GET", "/metrics")
        text = body.decode()
        self.assertEqual((status, hdrs["content-type"]), (200, "text/plain; version=0.0.4"))
        self.assertIn('apsis_requests_total{surface="rest",command="put",status="ok"} 3\n', text)
        self.assertIn('apsis_requests_total{surface="rest",command="get",status="not_found"} 1\n', text)
        self.assertIn('apsis_requests_total{surface="resp",command="put",status="ok"} 1\n', text)
        self.assertIn('apsis_request_duration_seconds_count{surface="rest"} 4\n', text)
        self.assertIn('apsis_http_responses_total{code="201"} 3\n', text)
        self.assertIn('apsis_backend_keys{backend="1",group="1"} 4\n', text)
        # The same counts in /v1/stats, and in `apsis stat`'s table.
        stats = h.json("GET", "/v1/stats")[2]
        self.assertEqual((stats["requests"]["rest"]["operations"], stats["requests"]["rest"]["failed"]), (4, 0))
        self.assertEqual(stats["requests"]["resp"]["operations"], 1)
        table = subprocess.run([APSIS, "--port", str(node.binary_port), "stat"], capture_output=True, text=True,
                               timeout=10).stdout
        self.assertRegex(table, r"\nrest +4 +0 ")
        for actor in ("replica_group", "shard", "anti_entropy", "peer"):
            self.assertRegex(text, f'\napsis_mailbox_depth{{actor="{actor}"}} \\d+\n')
        # Every family has one # TYPE line, before its samples, and samples are not split.
        families = re.findall(r"^# TYPE (\S+) (counter|gauge|histogram)$", text, re.M)
        self.assertEqual(len(families), len({f for f, _ in families}))
        seen = []
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            name = re.sub(r"(_bucket|_sum|_count)$", "", line.split("{")[0].split(" ")[0])
            if not seen or seen[-1] != name:
                self.assertNotIn(name, seen, "samples of one family together")
                seen.append(name)
        self.assertEqual(set(seen), {f for f, _ in families})

    def test_the_curl_examples_in_docs_rest_md_say_what_they_do(self):
        """Every `$ curl ...` line of docs/rest.md runs in one shell against this node (its
        port in place of 8380); the lines after it are the output, where `...` stands for any
        text (versions, times)."""
        self.assertIsNotNone(shutil.which("curl"), "tools/setup.sh installs curl")
        node = self.start("limits.max_value_size=1048576")
        with open(DOCS) as f:
            text = f.read()
        examples = []
        for block in re.findall(r"```console\n(.*?)```", text, re.S):
            for part in re.split(r"^\$ ", block, flags=re.M)[1:]:
                command, _, output = part.partition("\n")
                examples.append((command.replace("127.0.0.1:8380", f"127.0.0.1:{node.http_port}"), output))
        self.assertGreater(len(examples), 15)
        script = "".join(f"printf '\\n@@@ {i}\\n'\n{cmd}\n" for i, (cmd, _) in enumerate(examples))
        run = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
        outputs = re.split(r"\n@@@ \d+\n", run.stdout)[1:]
        self.assertEqual(len(outputs), len(examples), run.stderr)
        for (cmd, want), got in zip(examples, outputs):
            pattern = "^" + ".*".join(re.escape(piece) for piece in want.strip().split("...")) + "$"
            self.assertRegex(got.strip().replace("\r", ""), re.compile(pattern, re.S), cmd)


if __name__ == "__main__":
    unittest.main()
