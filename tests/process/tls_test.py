"""TLS with real clients: redis-cli --tls, curl --cacert and the Python client against a node
whose ports speak TLS (certificates from `apsis certs init`); foreign CAs, expired and missing
certificates refused on both sides; client certificates; SIGHUP reloading the certificate;
nodes that join only with a certificate of the cluster's CA, and a pause healed over TLS.
Helpers come from apsisd_test and security_test."""
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import unittest

from apsisd_test import APSIS, APSISD, ClusterTest, free_port, wait_for
from security_test import password_hash

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients",
                                "python"))
import apsis  # noqa: E402


class TlsTest(ClusterTest):

    def certs(self, name, *args):
        """`apsis certs init` into a directory of the test's own: a CA of its own each time."""
        d = os.path.join(self.dir, name)
        r = subprocess.run([APSIS, "certs", "init", d, *args], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        return d

    def issue(self, d, name, *args):
        r = subprocess.run([APSIS, "certs", "issue", d, name, *args], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        return os.path.join(d, name)

    def tls_settings(self, d, node="node", ports=("resp", "binary", "http"), client_ca=False):
        s = [f'tls.cert="{d}/{node}.crt"', f'tls.key="{d}/{node}.key"', f'tls.ca="{d}/ca.crt"']
        s += [f"tls.{p}=true" for p in ports]
        if client_ca:
            s.append(f'tls.client_ca="{d}/client-ca.crt"')
        return s

    def with_root_user(self):
        """root may do anything (and holds a bearer token, self.token); reader only reads."""
        out = subprocess.run([APSIS, "token"], capture_output=True, text=True, timeout=30).stdout
        self.token = out.split("token: ")[1].split()[0]
        tokens = out.split("tokens = ")[1].strip()
        path = os.path.join(self.dir, "users.toml")
        with open(path, "w") as f:
            f.write('[[backend]]\ndir = "backend-1"\n[[user]]\nname = "root"\n'
                    f'password = "{password_hash("root-pw")}"\ntokens = {tokens}\n'
                    'permissions = { "*" = ["read", '
                    '"write", "admin"] }\n[[user]]\nname = "reader"\n'
                    f'password = "{password_hash("reader-pw")}"\npermissions = {{ "*" = ["read"] }}\n')
        return path

    def redis(self, node, *args, ca=None, cert=None, user=None):
        tls = ["--tls", "--cacert", f"{ca}/ca.crt"] if ca else []
        if cert:
            tls += ["--cert", cert + ".crt", "--key", cert + ".key"]
        auth = ["--user", user, "--pass", user + "-pw"] if user else []
        return subprocess.run(["redis-cli", "-p", str(node.port), *tls, *auth, *args],
                              capture_output=True, text=True, timeout=10)

    def curl(self, url, *args):
        return subprocess.run(["curl", "-sS", "--max-time", "10", *args, url], capture_output=True,
                              text=True, timeout=20)

    def refused_handshakes(self, node, ca, surface, *curl_args):
        text = self.curl(f"https://127.0.0.1:{node.http_port}/metrics", "--cacert",
                         f"{ca}/ca.crt", *curl_args).stdout
        line = f'apsis_auth_refused_total{{surface="{surface}",reason="tls_handshake"}} '
        return int(text.split(line)[1].split()[0])

    def test_every_client_port_speaks_tls_to_clients_that_trust_its_ca(self):
        self.assertIsNotNone(shutil.which("curl"), "tools/setup.sh installs curl")
        ca, foreign = self.certs("ca"), self.certs("foreign")
        node = self.start(*self.tls_settings(ca), config=self.with_root_user())
        # RESP: redis-cli --tls with a login; plain TCP and a foreign CA go nowhere.
        self.assertEqual(self.redis(node, "SET", "k", "v", ca=ca, user="root").stdout.strip(), "OK")
        self.assertEqual(self.redis(node, "GET", "k", ca=ca, user="reader").stdout.strip(), "v")
        self.assertIn("NOPERM", self.redis(node, "SET", "k", "w", ca=ca, user="reader").stdout)
        self.assertIn("NOAUTH", self.redis(node, "SET", "k", "w", ca=ca).stdout)
        plain = self.redis(node, "GET", "k", user="root")
        self.assertNotIn("v", plain.stdout.split())
        self.assertIn("certificate verify failed", self.redis(node, "GET", "k", ca=foreign).stderr)
        # REST over HTTPS: curl --cacert; a foreign CA fails curl's check (exit 60).
        url = f"https://127.0.0.1:{node.http_port}/v1/ns/default/keys/k"
        self.assertEqual(self.curl(url, "--cacert", f"{ca}/ca.crt", "-u", "root:root-pw").stdout, "v")
        self.assertIn("401", self.curl(url, "--cacert", f"{ca}/ca.crt", "-w", "%{http_code}").stdout)
        self.assertEqual(self.curl(url, "--cacert", f"{foreign}/ca.crt").returncode, 60)
        # A bearer token (apsis token) in place of the password; a wrong one is a 401.
        bearer = ("-H", f"Authorization: Bearer {self.token}")
        self.assertEqual(self.curl(url, "--cacert", f"{ca}/ca.crt", *bearer).stdout, "v")
        self.assertNotIn(self.token[6:], open(os.path.join(self.dir, "users.toml")).read())
        r = self.curl(url, "--cacert", f"{ca}/ca.crt", "-H", "Authorization: Bearer apsis_00",
                      "-w", " %{http_code}")
        self.assertTrue(r.stdout.endswith(" 401") and "invalid bearer token" in r.stdout, r.stdout)
        self.assertNotEqual(self.curl(f"http://127.0.0.1:{node.http_port}/v1/ns/default/keys/k",
                                      "-u", "root:root-pw").stdout, "v")
        # The binary protocol: the Python client with ssl, logged in.
        with apsis.Client("127.0.0.1", node.binary_port, tls=apsis.tls_context(f"{ca}/ca.crt"),
                          user="root", password="root-pw") as c:
            self.assertEqual(c.get("k").data, b"v")
            c.put("k2", b"over tls")
        with self.assertRaises(apsis.ApsisError) as e:
            apsis.Client("127.0.0.1", node.binary_port, tls=apsis.tls_context(f"{foreign}/ca.crt"))
        self.assertIn("CERTIFICATE_VERIFY_FAILED", str(e.exception))
        with self.assertRaises(apsis.ApsisError):  # plain TCP to a TLS port
            apsis.Client("127.0.0.1", node.binary_port, user="root", password="root-pw").get("k")
        self.assertEqual(self.redis(node, "GET", "k2", ca=ca, user="root").stdout.strip(), "over tls")
        # The CLI (the C++ client): --cacert, the password from the environment.
        env = dict(os.environ, APSIS_PASSWORD="root-pw")

        def cli(*args):
            return subprocess.run([APSIS, "--port", str(node.binary_port), *args], env=env,
                                  capture_output=True, text=True, timeout=30)
        r = cli("--cacert", f"{ca}/ca.crt", "-u", "root", "get", "k2")
        self.assertEqual((r.returncode, r.stdout), (0, "over tls"), r.stderr)
        r = cli("--cacert", f"{foreign}/ca.crt", "-u", "root", "get", "k2")
        self.assertIn("TLS handshake with 127.0.0.1:", r.stderr)
        self.assertIn("certificate verify failed", r.stderr)
        self.assertNotEqual(cli("-u", "root", "get", "k2").returncode, 0)  # plain TCP
        # Each failed handshake is counted (the plain and the foreign-CA ones above).
        self.assertGreaterEqual(self.refused_handshakes(node, ca, "resp", "-u", "root:root-pw"), 2)
        self.assertGreaterEqual(self.refused_handshakes(node, ca, "binary", "-u", "root:root-pw"), 2)
        self.assertGreaterEqual(self.refused_handshakes(node, ca, "rest", "-u", "root:root-pw"), 1)

    def test_client_certificates_are_asked_for_with_client_ca(self):
        ca, foreign = self.certs("ca"), self.certs("foreign")
        expired = self.issue(ca, "expired-client", "--client", "--days", "0")
        node = self.start(*self.tls_settings(ca, client_ca=True))
        client = f"{ca}/client"
        self.assertEqual(self.redis(node, "SET", "k", "v", ca=ca, cert=client).stdout.strip(), "OK")
        for cert in (None, f"{foreign}/client", expired, f"{ca}/node"):
            r = self.redis(node, "GET", "k", ca=ca, cert=cert)
            self.assertNotEqual(r.stdout.strip(), "v", cert)
        url = f"https://127.0.0.1:{node.http_port}/v1/ns/default/keys/k"
        self.assertEqual(self.curl(url, "--cacert", f"{ca}/ca.crt", "--cert", client + ".crt",
                                   "--key", client + ".key").stdout, "v")
        self.assertNotEqual(self.curl(url, "--cacert", f"{ca}/ca.crt").returncode, 0)
        tls = apsis.tls_context(f"{ca}/ca.crt", client + ".crt", client + ".key")
        with apsis.Client("127.0.0.1", node.binary_port, tls=tls) as c:
            self.assertEqual(c.get("k").data, b"v")

        async def many_at_once():  # the asyncio client: requests in flight over one TLS stream
            c = await apsis.AsyncClient.connect("127.0.0.1", node.binary_port, tls=tls)
            try:
                return [r.data for r in await asyncio.gather(*[c.get("k") for _ in range(20)])]
            finally:
                await c.close()
        self.assertEqual(asyncio.run(many_at_once()), [b"v"] * 20)
        cli = [APSIS, "--port", str(node.binary_port), "--cacert", f"{ca}/ca.crt"]
        r = subprocess.run([*cli, "--cert", client + ".crt", "--key", client + ".key", "get", "k"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.stdout, "v", r.stderr)
        r = subprocess.run([*cli, "get", "k"], capture_output=True, text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        with self.assertRaises(apsis.ApsisError):
            apsis.Client("127.0.0.1", node.binary_port,
                         tls=apsis.tls_context(f"{ca}/ca.crt", expired + ".crt",
                                               expired + ".key")).get("k")
        self.assertEqual(node.stop(), 0)  # the first refusal is logged with the peer
        self.assertIn("refused: TLS handshake (peer did not return a certificate) from 127.0.0.1:",
                      node.proc.stdout.read())

    def test_clients_refuse_an_expired_node_certificate(self):
        ca = self.certs("ca")
        self.issue(ca, "old", "--days", "0")
        node = self.start(*self.tls_settings(ca, node="old"))
        with self.assertRaises(apsis.ApsisError) as e:
            apsis.Client("127.0.0.1", node.binary_port, tls=apsis.tls_context(f"{ca}/ca.crt"))
        self.assertIn("certificate has expired", str(e.exception))
        self.assertIn("certificate verify failed", self.redis(node, "PING", ca=ca).stderr)

    def test_sighup_reloads_the_certificate(self):
        a, b = self.certs("a"), self.certs("b")
        live = os.path.join(self.dir, "live")
        shutil.copytree(a, live)
        node = self.start(*self.tls_settings(live))
        old = apsis.Client("127.0.0.1", node.binary_port, tls=apsis.tls_context(f"{a}/ca.crt"))
        old.put("k", b"v")
        for f in ("node.crt", "node.key"):
            shutil.copy(os.path.join(b, f), os.path.join(live, f))
        node.proc.send_signal(signal.SIGHUP)

        def b_trusted():
            try:
                apsis.Client("127.0.0.1", node.binary_port, tls=apsis.tls_context(f"{b}/ca.crt")).close()
                return True
            except apsis.ApsisError:
                return False
        wait_for(b_trusted, 10, "new connections get the new certificate")
        with self.assertRaises(apsis.ApsisError):
            apsis.Client("127.0.0.1", node.binary_port, tls=apsis.tls_context(f"{a}/ca.crt"))
        self.assertEqual(old.get("k").data, b"v")  # a connection keeps what it started with
        old.close()
        # A broken file at the next SIGHUP: the node keeps the certificate it has.
        with open(os.path.join(live, "node.key"), "w") as f:
            f.write("not a key\n")
        node.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        self.assertTrue(b_trusted())
        self.assertEqual(node.stop(), 0)
        self.assertIn("kept the TLS files loaded before", node.proc.stdout.read())

    def test_a_node_refuses_to_start_on_tls_files_it_cannot_use(self):
        a, b = self.certs("a"), self.certs("b")
        for settings, why in (
                ([f'tls.cert="{a}/missing.crt"', f'tls.key="{a}/node.key"', "tls.resp=true"],
                 f"tls.cert {a}/missing.crt"),
                ([f'tls.cert="{a}/node.crt"', f'tls.key="{b}/node.key"', "tls.http=true"],
                 f"tls.key {b}/node.key"),
                (["tls.binary=true"], "tls.cert: a port that speaks TLS needs"),
                ([f'tls.cert="{a}/node.crt"', f'tls.key="{a}/node.key"', f'tls.ca="{a}/none.crt"',
                  "tls.resp=true"], f"tls.ca {a}/none.crt")):
            r = subprocess.run([APSISD, "--set", "backend.engine=memory",
                                *[x for s in settings for x in ("--set", s)]],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(why, r.stderr)

    def test_only_nodes_with_the_clusters_ca_join(self):
        ca, foreign = self.certs("ca"), self.certs("foreign")
        ports = {i: free_port() for i in (1, 2, 3, 4)}
        cluster = self.tls_settings(ca, ports=("cluster",))
        n1 = self.cluster_node(1, ports, ports[1], *cluster)
        n2 = self.cluster_node(2, ports, ports[1], *cluster)
        wait_for(lambda: [r["status"] for r in self.replicas(n1, "probe")] == ["ok"] * 2, 20,
                 "n2 joined over TLS")
        n3 = self.cluster_node(3, ports, ports[1], *self.tls_settings(foreign, ports=("cluster",)))
        n4 = self.cluster_node(4, ports, ports[1])  # no TLS at all
        time.sleep(3)  # several dials each
        names = {n["name"] for n in json.loads(self.cli(n1, "--json", "cluster", "status").stdout)[
            "cluster"]["nodes"]}
        self.assertEqual(names, {"n1", "n2"})
        # The refused dials did not disturb the nodes that belong.
        self.assertEqual(self.state_of(n1, "n2"), "up")
        self.assertEqual([r["status"] for r in self.replicas(n1, "after")], ["ok"] * 2)
        for n in (n1, n3, n4):
            n.kill()
        self.assertIn("cluster: refused a connection from 127.0.0.1:", n1.proc.stdout.read())
        self.assertIn("one of us does not trust the other's certificate", n3.proc.stdout.read())

    def test_a_routing_client_logs_in_over_tls_to_every_owner(self):
        """The C++ client's --route: its connections straight to each key's owner speak TLS and
        log in with the same options as the first one."""
        ca = self.certs("ca")
        ports = {1: free_port(), 2: free_port()}
        tls = self.tls_settings(ca, ports=("binary", "cluster"))
        users = self.with_root_user()
        n1 = self.cluster_node(1, ports, ports[1], *tls, group=1, config=users)
        n2 = self.cluster_node(2, ports, ports[1], *tls, group=1, config=users)
        env = dict(os.environ, APSIS_PASSWORD="root-pw")

        def cli(*args):
            return subprocess.run([APSIS, "--port", str(n1.binary_port), "--cacert",
                                   f"{ca}/ca.crt", "-u", "root", "--json", *args], env=env,
                                  capture_output=True, text=True, timeout=30)

        def both_up():
            r = cli("cluster", "status")
            nodes = json.loads(r.stdout)["cluster"]["nodes"] if r.returncode == 0 else []
            return {n["name"]: n["state"] for n in nodes}.get("n2") == "up"
        wait_for(both_up, 20, "n2 joined over TLS")
        vias = {}
        for i in range(20):
            r = cli("--route", "put", f"routed{i}", "x")
            self.assertEqual(r.returncode, 0, r.stderr)
            via = json.loads(r.stdout)["via"]
            vias[via] = vias.get(via, 0) + 1
        self.assertEqual(set(vias), {"n1", "n2"}, vias)  # both owners reached directly

    def test_a_paused_node_comes_back_over_tls(self):
        ca = self.certs("ca")
        self.paused_node_is_taken_back(4, *self.tls_settings(ca, ports=("cluster",)))


if __name__ == "__main__":
    unittest.main()
