"""Logins and permissions with real clients (redis-cli, raw RESP): users from a config file,
NOAUTH before a login, WRONGPASS, NOPERM per namespace, throttled guessing, the refusals in
/metrics, and the protected default. Helpers come from apsisd_test."""
import base64
import http.client
import os
import signal
import socket
import subprocess
import time
import unittest

from apsisd_test import APSIS, APSISD, Client, ClusterTest, wait_for


def password_hash(password):
    r = subprocess.run([APSIS, "passwd"], input=password + "\n", capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


class SecurityTest(ClusterTest):

    def secured(self):
        """A node with three users: alice writes app*, reads everything; bob reads default;
        root may do anything."""
        path = os.path.join(self.dir, "secure.toml")
        with open(path, "w") as f:
            f.write("[[backend]]\ndir = \"backend-1\"\n")
            for name, grants in (("alice", '{ "app*" = ["read", "write"], "*" = ["read"] }'),
                                 ("bob", '{ "default" = ["read"] }'),
                                 ("root", '{ "*" = ["read", "write", "admin"] }')):
                f.write(f'[[user]]\nname = "{name}"\npassword = "{password_hash(name + "-pw")}"\n'
                        f"permissions = {grants}\n")
        return self.start(config=path)

    def redis_cli(self, node, *args, user=None):
        auth = ["--user", user, "--pass", user + "-pw"] if user else []
        r = subprocess.run(["redis-cli", "-p", str(node.port), *auth, *args], capture_output=True,
                           text=True, timeout=10)
        return r.stdout.strip()

    def test_every_command_waits_for_a_login_and_the_users_grants(self):
        node = self.secured()
        self.assertEqual(self.redis_cli(node, "SET", "k", "v"), "NOAUTH Authentication required.")
        self.assertEqual(self.redis_cli(node, "PING"), "NOAUTH Authentication required.")
        self.assertEqual(self.redis_cli(node, "SET", "k", "v", user="root"), "OK")
        self.assertEqual(self.redis_cli(node, "GET", "k", user="bob"), "v")
        self.assertEqual(self.redis_cli(node, "SET", "k", "w", user="bob"),
                         "NOPERM User bob has no permissions to run the 'set' command in "
                         "namespace 'default'")
        self.assertEqual(self.redis_cli(node, "SET", "k", "w", user="alice"),
                         "NOPERM User alice has no permissions to run the 'set' command in "
                         "namespace 'default'")
        self.assertEqual(self.redis_cli(node, "GET", "k", user="root"), "v")  # nothing changed
        c = Client(node.port)
        self.assertEqual(c.call("AUTH", "alice", "alice-pw"), "+OK")
        self.assertEqual(c.call("SELECT", "app1"), "+OK")
        self.assertEqual(c.call("SET", "a", "1"), "+OK")
        self.assertEqual(c.call("INCR", "a"), 2)
        self.assertEqual(c.call("SELECT", "other"), "+OK")
        self.assertEqual(c.call("GET", "a"), None)  # read allowed everywhere
        self.assertTrue(c.call("DEL", "a").startswith("-NOPERM User alice"))
        self.assertTrue(c.call("SET", "x", "1", "GET").startswith("-NOPERM"))
        c.close()
        c = Client(node.port)  # bob may read default, not app1
        self.assertEqual(c.call("AUTH", "bob", "bob-pw"), "+OK")
        self.assertEqual(c.call("SELECT", "app1"), "+OK")
        self.assertTrue(c.call("GET", "a").startswith("-NOPERM User bob has no permissions to run "
                                                      "the 'get' command in namespace 'app1'"))
        c.close()
        # HELLO: only with AUTH before a login, and then RESP3.
        c = Client(node.port)
        self.assertTrue(c.call("HELLO", "3").startswith("-NOAUTH HELLO must be called"))
        c.send(("HELLO", "3", "AUTH", "bob", "bob-pw"))
        self.assertEqual(c._line(), b"%7")
        c.close()

    def test_rest_asks_for_basic_credentials(self):
        node = self.secured()

        def curl(method, path, user=None, password=None, body=None, *extra):
            args = ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "-X", method,
                    f"http://127.0.0.1:{node.http_port}{path}", *extra]
            if user:
                args += ["-u", f"{user}:{password or user + '-pw'}"]
            if body is not None:
                args += ["--data-binary", body]
            out = subprocess.run(args, capture_output=True, text=True, timeout=30).stdout
            text, _, code = out.rpartition("\n")
            return int(code), text

        self.assertEqual(curl("GET", "/healthz"), (200, "ok\n"))
        code, text = curl("GET", "/v1/ns/default/keys/k")
        self.assertEqual(code, 401)
        self.assertIn("authentication required", text)
        self.assertEqual(curl("PUT", "/v1/ns/default/keys/k", "root", body="v")[0], 201)
        self.assertEqual(curl("GET", "/v1/ns/default/keys/k", "bob"), (200, "v"))
        self.assertEqual(curl("GET", "/v1/ns/default/keys/k", "bob", "wrong")[0], 401)
        code, text = curl("PUT", "/v1/ns/default/keys/k", "bob", body="w")
        self.assertEqual(code, 403)
        self.assertIn("user bob may not do this in namespace 'default' (it needs write, has read)",
                      text)
        self.assertEqual(curl("PUT", "/v1/ns/app1/keys/k", "alice", body="a")[0], 201)
        self.assertEqual(curl("PUT", "/v1/ns/app2", "alice")[0], 403)  # creating needs admin
        self.assertEqual(curl("PUT", "/v1/ns/app2", "root")[0], 201)
        self.assertEqual(curl("GET", "/metrics")[0], 401)
        self.assertEqual(curl("GET", "/metrics", "bob")[0], 200)
        # A streamed upload is refused from its head, before its body is read.
        code, _ = curl("PUT", "/v1/ns/app1/keys/big", None, None, "x" * 1000,
                       "-H", "Transfer-Encoding: chunked")
        self.assertEqual(code, 401)
        self.assertEqual(curl("GET", "/v1/ns/default/keys/k", "root"), (200, "v"))  # unchanged

    def test_the_binary_protocol_logs_in_by_proof(self):
        node = self.secured()
        self.assertEqual(self.redis_cli(node, "SET", "k", "v", user="root"), "OK")

        def cli(*args, user=None, password=None):
            env = dict(os.environ, APSIS_PASSWORD=password or (user or "") + "-pw")
            return subprocess.run([APSIS, "--port", str(node.binary_port),
                                   *(["--user", user] if user else []), *args], env=env,
                                  capture_output=True, text=True, timeout=30)

        r = cli("get", "k")
        self.assertEqual(r.returncode, 1)
        self.assertIn("log in first", r.stderr)
        self.assertEqual(cli("get", "k", user="bob").stdout, "v")
        r = cli("put", "k", "w", user="bob")
        self.assertEqual(r.returncode, 1)
        self.assertIn("user bob may not do this in namespace 'default' (it needs write)", r.stderr)
        r = cli("get", "k", user="bob", password="wrong")
        self.assertEqual(r.returncode, 3)
        self.assertIn("login as bob: invalid username-password pair", r.stderr)
        self.assertEqual(cli("--ns", "app1", "put", "k", "a", user="alice").returncode, 0)
        # Python: the proof, never the password, on the wire.
        import sys
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "clients", "python"))
        import apsis
        with apsis.Client("127.0.0.1", node.binary_port, user="alice", password="alice-pw",
                          ns="app1") as c:
            self.assertEqual(c.get("k").data, b"a")
            self.assertTrue(c.put("k2", b"b").ok)
        with apsis.Client("127.0.0.1", node.binary_port, user="alice", password="alice-pw") as c:
            with self.assertRaises(apsis.Denied):
                c.put("k", b"x")  # default: read only
        with self.assertRaises(apsis.Denied):
            apsis.Client("127.0.0.1", node.binary_port, user="alice", password="nope")
        self.assertEqual(self.redis_cli(node, "GET", "k", user="root"), "v")  # unchanged
        # A ping (liveness) needs no login; a stat does.
        from apsis import protocol as p
        sock = socket.create_connection(("127.0.0.1", node.binary_port), timeout=10)
        sock.sendall(p.frame(p.HELLO, 0, 0, p.hello_body()) + p.frame(p.REQUEST, p.PING, 1) +
                     p.frame(p.REQUEST, p.STAT, 2))
        buf, frames = bytearray(), []
        while len(frames) < 3:
            buf += sock.recv(65536)
            while (f := p.split_frame(buf)) is not None:
                frames.append(f)
        sock.close()
        self.assertEqual([p.parse_response(op, body).status for _, op, _, body in frames[1:]],
                         ["ok", "denied"])

    def test_wrong_passwords_are_refused_counted_and_then_throttled(self):
        node = self.secured()
        c = Client(node.port)
        self.assertEqual(c.call("AUTH", "alice", "nope"),
                         "-WRONGPASS invalid username-password pair or user is disabled.")
        self.assertEqual(c.call("AUTH", "nobody", "alice-pw"),
                         "-WRONGPASS invalid username-password pair or user is disabled.")
        self.assertEqual(c.call("AUTH", "alice-pw"),  # the user "default" does not exist
                         "-WRONGPASS invalid username-password pair or user is disabled.")
        self.assertEqual(c.call("GET", "k"), "-NOAUTH Authentication required.")
        for _ in range(3):
            c.call("AUTH", "alice", "guess")
        # Past five failures from one address, even the right password waits.
        self.assertEqual(c.call("AUTH", "alice", "alice-pw"),
                         "-ERR too many failed logins from this address: wait and try again")
        c.close()
        time.sleep(2.5)  # the address's cooldown after six failures: 2 s
        conn = http.client.HTTPConnection("127.0.0.1", node.http_port, timeout=10)
        conn.request("GET", "/metrics",
                     headers={"Authorization": "Basic " + base64.b64encode(b"bob:bob-pw").decode()})
        metrics = conn.getresponse().read().decode()
        conn.close()
        self.assertIn('apsis_auth_refused_total{surface="resp",reason="wrong_password"} 6\n', metrics)
        self.assertIn('apsis_auth_refused_total{surface="resp",reason="no_login"} 1\n', metrics)
        self.assertIn('apsis_auth_refused_total{surface="resp",reason="throttled"} 1\n', metrics)
        # The right password gets in once the cooldown is over, but does not wipe the count:
        # the next guess from this address is throttled again at once.
        c = Client(node.port)
        self.assertEqual(c.call("AUTH", "bob", "bob-pw"), "+OK")
        self.assertTrue(c.call("AUTH", "alice", "guess").startswith("-WRONGPASS"))
        self.assertEqual(c.call("AUTH", "alice", "alice-pw"),
                         "-ERR too many failed logins from this address: wait and try again")
        c.close()

    def test_sighup_reloads_the_users(self):
        node = self.secured()
        path = os.path.join(self.dir, "secure.toml")
        self.assertEqual(self.redis_cli(node, "SET", "k", "v", user="root"), "OK")
        c = Client(node.port)  # logged in before the reload: keeps its grants until it closes
        self.assertEqual(c.call("AUTH", "root", "root-pw"), "+OK")
        # bob may now write; root is gone; alice has a new password.
        with open(path, "w") as f:
            f.write("[[backend]]\ndir = \"backend-1\"\n")
            for name, pw, grants in (("alice", "new-pw", '{ "*" = ["read"] }'),
                                     ("bob", "bob-pw", '{ "default" = ["read", "write"] }')):
                f.write(f'[[user]]\nname = "{name}"\npassword = "{password_hash(pw)}"\n'
                        f"permissions = {grants}\n")
        node.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: self.redis_cli(node, "SET", "k", "w", user="bob") == "OK", 10,
                 "bob may write after the reload")
        for name, pw in (("root", "root-pw"), ("alice", "alice-pw")):  # gone; an old password
            fresh = Client(node.port)
            self.assertTrue(fresh.call("AUTH", name, pw).startswith("-WRONGPASS"), name)
            fresh.close()
        r = subprocess.run(["redis-cli", "-p", str(node.port), "--user", "alice", "--pass", "new-pw",
                            "GET", "k"], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.stdout.strip(), "w")
        self.assertEqual(c.call("GET", "k"), b"w")  # root's connection from before
        c.close()
        # A config that no longer loads keeps the users loaded before.
        with open(path, "a") as f:
            f.write("[[user]]\nname = \"eve\"\npassword = \"plain\"\n")
        node.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        self.assertEqual(self.redis_cli(node, "GET", "k", user="bob"), "w")
        self.assertEqual(node.stop(), 0)
        self.assertIn("kept the users loaded before", node.proc.stdout.read())

    def test_a_node_past_loopback_with_no_users_refuses_to_start(self):
        # 192.0.2.1 (TEST-NET-1) is never this machine's: were the check gone, the bind would
        # fail with another message, and nothing would listen anywhere.
        r = subprocess.run([APSISD, "--set", "network.bind=192.0.2.1", "--set",
                            f"node.data_dir={self.dir}/open"], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn('refusing to start: network.bind = "192.0.2.1" reaches other machines',
                      r.stderr)
        self.assertIn("security.allow_unprotected = true", r.stderr)
        self.assertFalse(os.path.exists(f"{self.dir}/open"), "it stopped before opening its data")


if __name__ == "__main__":
    unittest.main()
