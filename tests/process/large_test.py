"""Large values through REST: a 1 GiB value streamed in and out with the node's memory
bounded (its peak RSS read from /proc), ranged reads across chunks, a client that stops
mid-upload, the size limit, what the other surfaces answer for a large value, its size in
listings, export and import, and the chunk collector in a cluster with a node down. Helpers
come from apsisd_test."""
import hashlib
import http.client
import json
import os
import socket
import subprocess
import threading
import time
import unittest

from apsisd_test import APSIS, Client, ClusterTest, free_port, wait_for

MiB = 1 << 20
BLOCK = hashlib.sha256(b"apsis").digest() * (MiB // 32)  # 1 MiB of fixed bytes


def piece(i):
    """The i-th MiB of a test value: the block, stamped with its number."""
    return i.to_bytes(8, "big") + BLOCK[8:]


def anon_rss_kb(node):
    """The node's anonymous resident memory: its heap and stacks. (Its data files are mapped,
    so the pages it writes and reads also count in its RSS as file pages: the page cache.)"""
    with open(f"/proc/{node.proc.pid}/status") as f:
        return int(next(l for l in f if l.startswith("RssAnon")).split()[1])


class Peak:
    """The highest anon_rss_kb() seen, sampled every 20 ms while a `with` block runs."""

    def __init__(self, node):
        self.node, self.kb, self.done = node, anon_rss_kb(node), threading.Event()

    def sample(self):
        while not self.done.wait(0.02):
            self.kb = max(self.kb, anon_rss_kb(self.node))

    def __enter__(self):
        self.thread = threading.Thread(target=self.sample)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join(timeout=10)


def put_stream(port, key, size, *, stop_after=None):
    """PUTs `size` bytes made of piece(0), piece(1)...; with stop_after, closes the socket
    after that many bytes (a client that goes away). The response, or None."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.putrequest("PUT", f"/v1/ns/default/keys/{key}")
    conn.putheader("Content-Length", str(size))
    conn.endheaders()
    sent = 0
    for i in range((size + MiB - 1) // MiB):
        data = piece(i)[:size - sent]
        if stop_after is not None and sent + len(data) > stop_after:
            conn.sock.sendall(data[:stop_after - sent])
            conn.sock.shutdown(socket.SHUT_RDWR)
            conn.close()
            return None
        conn.sock.sendall(data)
        sent += len(data)
    r = conn.getresponse()
    out = (r.status, json.loads(r.read()))
    conn.close()
    return out


class LargeValueTest(ClusterTest):

    def test_a_gib_streams_in_and_out_with_the_nodes_memory_bounded(self):
        node = self.start()
        before = anon_rss_kb(node)
        size = 1024 * MiB + 12345  # the last chunk is partial
        peak = Peak(node)
        peak.__enter__()
        status, body = put_stream(node.http_port, "video", size)
        self.assertEqual((status, body["status"]), (201, "ok"))
        want, got, at = hashlib.sha256(), hashlib.sha256(), 0
        for i in range((size + MiB - 1) // MiB):  # first: a reader that stalls is cut off
            want.update(piece(i)[:size - i * MiB])
        conn = http.client.HTTPConnection("127.0.0.1", node.http_port, timeout=120)
        conn.request("GET", "/v1/ns/default/keys/video")
        r = conn.getresponse()
        self.assertEqual((r.status, r.getheader("Content-Length")), (200, str(size)))
        while at < size:
            data = r.read(min(4 * MiB, size - at))
            self.assertTrue(data)
            got.update(data)
            at += len(data)
        self.assertEqual(got.hexdigest(), want.hexdigest())
        peak.__exit__()
        growth = peak.kb - before
        self.assertLess(growth, 64 * 1024, f"anonymous RSS grew {growth} KiB for a 1 GiB value")
        # Ranges: across a chunk boundary, the tail, and past the end.
        for first, last in ((MiB - 5, MiB + 4), (7 * MiB + 100, 9 * MiB + 50), (size - 10, size - 1)):
            conn.request("GET", "/v1/ns/default/keys/video", headers={"Range": f"bytes={first}-{last}"})
            r = conn.getresponse()
            data = r.read()
            expect = b"".join(piece(i) for i in range(first // MiB, last // MiB + 1))
            expect = expect[first - (first // MiB) * MiB:][:last - first + 1]
            self.assertEqual((r.status, data), (206, expect), f"{first}-{last}")
        conn.request("GET", "/v1/ns/default/keys/video", headers={"Range": f"bytes={size}-"})
        r = conn.getresponse()
        r.read()
        self.assertEqual(r.status, 416)
        conn.request("HEAD", "/v1/ns/default/keys/video")
        r = conn.getresponse()
        r.read()
        self.assertEqual((r.status, r.getheader("Content-Length")), (200, str(size)))
        conn.close()

    def test_a_client_that_stops_mid_upload_leaves_nothing_visible(self):
        node = self.start("limits.max_value_size=1048576")
        self.assertIsNone(put_stream(node.http_port, "new", 20 * MiB, stop_after=5 * MiB + 3))
        self.assertEqual(put_stream(node.http_port, "kept", 3 * MiB)[0], 201)
        self.assertIsNone(put_stream(node.http_port, "kept", 9 * MiB, stop_after=4 * MiB))
        conn = http.client.HTTPConnection("127.0.0.1", node.http_port, timeout=30)
        conn.request("GET", "/v1/ns/default/keys/new")
        r = conn.getresponse()
        r.read()
        self.assertEqual(r.status, 404)
        conn.request("GET", "/v1/ns/default/keys/kept")
        r = conn.getresponse()
        self.assertEqual(r.read(), b"".join(piece(i) for i in range(3)))
        conn.request("GET", "/v1/ns/default/keys?limit=100")
        r = conn.getresponse()
        self.assertEqual(json.loads(r.read())["keys"], ["kept"])  # no chunk is a key
        # Over the object limit: refused from the header, before a byte of the body.
        conn.close()
        s = socket.create_connection(("127.0.0.1", node.http_port), timeout=10)
        s.sendall(b"PUT /v1/ns/default/keys/huge HTTP/1.1\r\nHost: x\r\nContent-Length: "
                  b"5000000000\r\n\r\n")
        self.assertIn(b"413", s.recv(4096).split(b"\r\n")[0])
        s.close()

    def test_other_surfaces_say_a_large_value_is_read_through_rest(self):
        node = self.start("limits.max_value_size=1048576")
        self.assertEqual(put_stream(node.http_port, "big", 3 * MiB)[0], 201)
        c = Client(node.port)
        self.assertTrue(c.call("GET", "big").startswith("-ERR the key holds a large value of 3145728"))
        self.assertTrue(c.call("GETRANGE", "big", "0", "3").startswith("-ERR the key holds a large"))
        self.assertTrue(c.call("APPEND", "big", "x").startswith("-ERR the key holds a large value"))
        self.assertEqual(c.call("RENAME", "big", "moved"), "+OK")  # its chunks go with it
        c.close()
        conn = http.client.HTTPConnection("127.0.0.1", node.http_port, timeout=30)
        conn.request("GET", "/v1/ns/default/keys/moved")
        r = conn.getresponse()
        self.assertEqual((r.status, r.read()), (200, b"".join(piece(i) for i in range(3))))
        conn.close()
        c = Client(node.port)
        self.assertEqual(c.call("SET", "big", "small"), "+OK")
        self.assertEqual(c.call("GET", "big"), b"small")
        c.close()
        self.assertEqual(put_stream(node.http_port, "big", 2 * MiB + 1)[0], 200)
        got = self.cli(node, "get", "big")
        self.assertEqual(got.returncode, 1)
        self.assertIn("large value of 2097153 bytes", got.stderr)

    def test_parts_through_the_binary_protocol_the_cli_and_python(self):
        node = self.start()
        src = self.dir + "/src"
        with open(src, "wb") as f:  # 40 MiB + a partial chunk
            for i in range(40):
                f.write(piece(i))
            f.write(b"tail")
        up = self.cli(node, "upload", "film", src)
        self.assertEqual(up.returncode, 0, up.stderr)
        down = self.cli(node, "download", "film", self.dir + "/back")
        self.assertEqual(down.returncode, 0, down.stderr)
        with open(src, "rb") as a, open(self.dir + "/back", "rb") as b:
            self.assertTrue(a.read() == b.read(), "the download differs from the upload")
        conn = http.client.HTTPConnection("127.0.0.1", node.http_port, timeout=60)
        conn.request("GET", "/v1/ns/default/keys/film", headers={"Range": "bytes=41943036-"})
        r = conn.getresponse()
        self.assertEqual((r.status, r.read()), (206, piece(39)[-4:] + b"tail"))
        conn.close()
        # Ranges of any value through the CLI; a part of a small value written at an offset.
        import subprocess
        got = subprocess.run([APSIS, "--port", str(node.binary_port), "get", "film", "--offset",
                              str(MiB - 2), "--size", "4"], capture_output=True, timeout=30)
        self.assertEqual(got.stdout, piece(0)[-2:] + piece(1)[:2])
        self.assertEqual(self.cli(node, "put", "small", "hello world").returncode, 0)
        self.assertEqual(self.cli(node, "put", "small", "W", "--offset", "6").returncode, 0)
        self.assertEqual(self.cli(node, "get", "small", "--offset", "4", "--size", "5").stdout, "o Wor")
        past = self.cli(node, "get", "small", "--offset", "50")
        self.assertEqual(past.returncode, 1)
        self.assertIn("past the end of the value (11 bytes)", past.stderr)
        # Python: upload, read, download.
        import io
        import os
        import sys
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "clients", "python"))
        import apsis
        with apsis.Client("127.0.0.1", node.binary_port) as c:
            data = b"".join(piece(i) for i in range(3)) + b"xyz"
            self.assertTrue(c.upload("py", io.BytesIO(data)).ok)
            self.assertEqual(c.read("py", 3 * MiB - 1, 10).data, piece(2)[-1:] + b"xyz")
            self.assertEqual(c.read("py", 0, 1).total, len(data))
            out = io.BytesIO()
            self.assertEqual(c.download("py", out), len(data))
            self.assertEqual(out.getvalue(), data)
            with self.assertRaises(apsis.OperationError) as bad:
                c.get("py")
            self.assertIn("large value", bad.exception.result.message)

    def test_the_collector_deletes_the_chunks_no_value_holds_once_every_node_is_up(self):
        """Chunks left by a delete, an overwrite and an upload that never commits
        are collected; chunks of live (and renamed) values are kept; and nothing is collected
        while a node is down (it might hold the only copy of a manifest)."""
        import io
        import os
        import sys
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "clients", "python"))
        import apsis
        ports, nodes = self.joined_cluster("limits.max_value_size=1048576",
                                           "large.collect_every_ms=300",
                                           "large.upload_idle_ms=1000")
        http_port = nodes[2].http_port  # n1 sweeps; write through another node

        def rest(method, key):
            conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30)
            conn.request(method, f"/v1/ns/default/keys/{key}")
            r = conn.getresponse()
            out = (r.status, r.read())
            conn.close()
            return out

        def collector():
            return self.stats(nodes[1]).get("chunk_collector", {})

        def dead_mib():  # what every node's engine holds as superseded: deleted chunks
            return [self.stats(nodes[i])["backends"][0]["dead_bytes"] // MiB for i in (1, 2, 3)]

        for key, mib in (("kept", 3), ("renamed", 2), ("deleted", 4), ("overwritten", 2)):
            self.assertEqual(put_stream(http_port, key, mib * MiB)[0], 201)
        c = Client(nodes[3].port)
        self.assertEqual(c.call("RENAME", "renamed", "moved"), "+OK")
        self.assertEqual(c.call("SET", "overwritten", "small"), "+OK")
        c.close()
        self.assertEqual(rest("DELETE", "deleted")[0], 200)

        class Crash(io.RawIOBase):  # a client that dies after three parts
            def __init__(self):
                self.parts = 0

            def read(self, n=-1):
                self.parts += 1
                if self.parts > 3:
                    raise RuntimeError("the client crashed")
                return piece(self.parts)

        with apsis.Client("127.0.0.1", nodes[2].binary_port) as py:
            with self.assertRaises(RuntimeError):
                py.upload("never", Crash(), window=1)
        # deleted (4 chunks), overwritten (2) and never (3) are collected; kept (3) and
        # moved (2) are not: 9 MiB of chunks become dead on every replica, not 14.
        wait_for(lambda: collector().get("uploads") == 3, 30, "three uploads collected")
        self.assertEqual(collector()["chunks"], 9)
        wait_for(lambda: dead_mib() == [9, 9, 9], 30, "every replica deleted 9 chunks")
        # A large value deleted while n3 is down keeps its chunks until n3 is back.
        self.assertEqual(put_stream(http_port, "later", 2 * MiB)[0], 201)
        nodes[3].stop()
        wait_for(lambda: self.state_of(nodes[1], "n3") == "down", 20, "n1 sees n3 down")
        self.assertEqual(rest("DELETE", "later")[0], 200)
        skipped = collector()["skipped"]
        time.sleep(2.5)  # past upload_idle_ms, and several sweeps
        self.assertGreater(collector()["skipped"], skipped)
        self.assertEqual(collector()["uploads"], 3)
        nodes[3] = self.cluster_node(3, ports, ports[1], "limits.max_value_size=1048576",
                                     "large.collect_every_ms=300", "large.upload_idle_ms=1000")
        wait_for(lambda: collector().get("uploads") == 4, 30, "collected once every node is up")
        wait_for(lambda: dead_mib() == [11, 11, 11], 30, "every replica deleted 11 chunks")
        self.assertEqual(rest("GET", "kept"), (200, b"".join(piece(i) for i in range(3))))
        self.assertEqual(rest("GET", "moved"), (200, b"".join(piece(i) for i in range(2))))

    def test_sizes_export_and_import_of_a_large_value(self):
        """STRLEN and long listings show a large value's size; an export carries its bytes
        as part lines and an import uploads them back."""
        node = self.start()
        value = b"".join(piece(i) for i in range(3)) + b"7 bytes"
        path = os.path.join(self.dir, "big.bin")
        with open(path, "wb") as f:
            f.write(value)
        self.assertEqual(self.cli(node, "upload", "big", path).returncode, 0)
        self.assertEqual(self.cli(node, "put", "small", "abc").returncode, 0)
        c = Client(node.port)
        self.assertEqual(c.call("STRLEN", "big"), len(value))
        c.close()
        ls = dict(l.split("\t")[:2] for l in self.cli(node, "ls", "--long").stdout.splitlines())
        self.assertEqual(ls, {"big": str(len(value)), "small": "3"})
        conn = http.client.HTTPConnection("127.0.0.1", node.http_port, timeout=30)
        conn.request("GET", "/v1/ns/default/keys?long=1")
        keys = {k["key"]: k for k in json.loads(conn.getresponse().read())["keys"]}
        conn.close()
        self.assertEqual((keys["big"]["data_size"], keys["big"].get("large")), (len(value), True))
        exported = subprocess.run([APSIS, "--port", str(node.binary_port), "export"],
                                  capture_output=True, timeout=60)
        self.assertEqual(exported.returncode, 0, exported.stderr)
        lines = [json.loads(l) for l in exported.stdout.splitlines()]
        self.assertEqual([l.get("large") for l in lines if l.get("key") == "big"], [len(value)])
        self.assertEqual([l["part"] for l in lines if "part" in l], [0, 1, 2, 3])
        done = subprocess.run([APSIS, "--port", str(node.binary_port), "--ns", "copy", "import"],
                              input=exported.stdout, capture_output=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn(b"import: 2 records", done.stderr)
        out = os.path.join(self.dir, "back.bin")
        self.assertEqual(self.cli(node, "--ns", "copy", "download", "big", out).returncode, 0)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), value)
        self.assertEqual(self.cli(node, "--ns", "copy", "get", "small").stdout, "abc")

    def test_a_rotten_chunk_is_found_and_healed_and_ranges_read_only_their_chunks(self):
        """One byte of one chunk flipped on n1's disk: a range of the other chunks reads
        fine (each chunk is verified on its own), the scrub finds the rot, anti-entropy
        rewrites the chunk from group 2, and then n1 alone serves the whole value."""
        ports = {1: free_port(), 2: free_port()}
        extra = ("limits.max_value_size=1048576", "scrub.rate=5000", "scrub.pause_ms=300",
                 "replication.read_policy=one", "replication.policy=all")
        n1 = self.cluster_node(1, ports, ports[1], *extra)
        n2 = self.cluster_node(2, ports, ports[1], *extra)
        wait_for(lambda: [r["status"] for r in self.replicas(n1, "probe")] == ["ok"] * 2, 20,
                 "n2 joined")
        value = b"".join(piece(i) for i in range(3))
        self.assertEqual(put_stream(n1.http_port, "big", len(value))[0], 201)
        time.sleep(1.5)  # the interval fsync puts the chunks in the file
        flipped = 0
        for name in os.listdir(f"{self.dir}/n1/backend-1"):
            if name.endswith(".blob"):
                with open(f"{self.dir}/n1/backend-1/{name}", "r+b") as f:
                    data = f.read()
                    at = data.find(piece(1)[:64])
                    if at >= 0:
                        f.seek(at + 1000)
                        f.write(bytes([data[at + 1000] ^ 0xff]))
                        flipped += 1
        self.assertEqual(flipped, 1, "blob files of n1 holding chunk 1's first bytes")

        def get(node, first=None, last=None):
            conn = http.client.HTTPConnection("127.0.0.1", node.http_port, timeout=30)
            headers = {"Range": f"bytes={first}-{last}"} if first is not None else {}
            conn.request("GET", "/v1/ns/default/keys/big", headers=headers)
            r = conn.getresponse()
            out = (r.status, r.read())
            conn.close()
            return out

        # Chunks 0 and 2 only: served by n1 without meeting the rot in chunk 1.
        self.assertEqual(get(n1, 10, 99), (206, value[10:100]))
        self.assertEqual(get(n1, 2 * MiB, 2 * MiB + 9), (206, value[2 * MiB:2 * MiB + 10]))
        wait_for(lambda: self.stats(n1)["scrub"]["dropped_for_repair"] >= 1, 20,
                 "n1's scrub found the rotten chunk")
        wait_for(lambda: sum(self.stats(n)["anti_entropy"]["repaired"] for n in (n1, n2)) >= 1,
                 20, "anti-entropy rewrote it")
        self.assertEqual(self.stats(n1)["scrub"]["corrupt_found"], 1)
        n2.stop()
        wait_for(lambda: self.state_of(n1, "n2") == "down", 20, "n1 sees n2 down")
        self.assertEqual(get(n1), (200, value))  # n1's own chunks, healed


if __name__ == "__main__":
    unittest.main()
