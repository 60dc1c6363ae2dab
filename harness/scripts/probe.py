#!/usr/bin/python3
"""One reachability probe, printed as one JSON line: {"outcome": ..., "detail": ...}.

devstack-harness runs it in the guest (host and instance namespaces) and in its
own internet namespace, so that every check is made and read the same way.

  probe.py icmp TARGET TIMEOUT [SIZE df|fragment]
  probe.py tcp|udp|http TARGET PORT TIMEOUT [SOURCE]
"""
import json
import socket
import subprocess
import sys
import time


START = time.time()


def out(outcome, detail):
    # elapsed: when the answer came (or the wait ended), for the harness to judge
    # how fast this world answers.
    elapsed = round(time.time() - START, 3)
    print(json.dumps({"outcome": outcome, "detail": detail.strip()[:300], "elapsed": elapsed}))
    sys.exit(0)


def icmp(target, timeout, size=None, df=False):
    deadline = time.time() + timeout
    last = ""
    extra = []
    if size is not None:
        extra += ["-s", str(size)]
    if df:
        extra += ["-M", "do"]
    while time.time() < deadline:
        p = subprocess.run(["ping", "-n", "-c", "1", "-W", "1"] + extra + [target], capture_output=True, text=True)
        last = (p.stdout + p.stderr).strip().splitlines()
        if p.returncode == 0:
            rtt = [l for l in last if "time=" in l]
            out("reachable", rtt[0] if rtt else "reply")
        time.sleep(0.5)
    out("unreachable", "no echo reply within %ss (%s)" % (timeout, last[-1] if last else ""))


def tcp(target, port, timeout, source, http=False):
    deadline = time.time() + timeout
    last = ""
    while time.time() < deadline:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(min(3.0, max(0.5, deadline - time.time())))
        try:
            if source:
                s.bind((source, 0))
            s.connect((target, port))
            if http:
                s.sendall(b"GET / HTTP/1.0\r\nHost: %s\r\n\r\n" % target.encode())
            s.settimeout(2.0)
            data = b""
            try:
                while len(data) < 512:
                    chunk = s.recv(512)
                    if not chunk:
                        break
                    data += chunk
                    if b"\n" in data and not http:
                        break
            except socket.timeout:
                pass
            out("reachable", data.decode(errors="replace") or "connected")
        except OSError as e:
            last = str(e)
        finally:
            s.close()
        time.sleep(0.5)
    out("unreachable", "no connection within %ss (%s)" % (timeout, last))


def udp(target, port, timeout, source):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if source:
        s.bind((source, 0))
    deadline = time.time() + timeout
    while time.time() < deadline:
        s.settimeout(1.0)
        try:
            s.sendto(b"probe\n", (target, port))
            data, _ = s.recvfrom(512)
            out("reachable", data.decode(errors="replace"))
        except OSError:
            pass
    out("unreachable", "no UDP reply within %ss" % timeout)


def main(argv):
    kind, target = argv[1], argv[2]
    if kind == "icmp":
        size = int(argv[4]) if len(argv) > 4 else None
        icmp(target, float(argv[3]), size, len(argv) > 5 and argv[5] == "df")
    port, timeout = int(argv[3]), float(argv[4])
    source = argv[5] if len(argv) > 5 else None
    if kind == "udp":
        udp(target, port, timeout, source)
    tcp(target, port, timeout, source, http=(kind == "http"))


main(sys.argv)
