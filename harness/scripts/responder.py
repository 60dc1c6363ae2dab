#!/usr/bin/python3
"""The internet's responder: answers TCP, UDP and HTTP on the given ports and tells
each peer the source address it saw ("seen_as ADDRESS"). ICMP is answered by the
kernel. Runs in devstack-harness's own internet namespace until killed.

  responder.py ADDRESS --tcp 80,443 --udp 53
"""
import socket
import sys
import threading


def tcp_server(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(16)
    while True:
        c, peer = s.accept()
        try:
            c.settimeout(0.3)
            try:
                first = c.recv(512)
            except socket.timeout:
                first = b""
            line = "seen_as %s\n" % peer[0]
            if first.startswith(b"GET "):
                body = line.encode()
                c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            else:
                c.sendall(line.encode())
        except OSError:
            pass
        finally:
            c.close()


def udp_server(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    while True:
        _, peer = s.recvfrom(512)
        s.sendto(("seen_as %s\n" % peer[0]).encode(), peer)


def ports(args, flag):
    if flag in args:
        return [int(p) for p in args[args.index(flag) + 1].split(",") if p]
    return []


def main(argv):
    addr = argv[1]
    threads = [threading.Thread(target=tcp_server, args=(addr, p), daemon=True) for p in ports(argv, "--tcp")]
    threads += [threading.Thread(target=udp_server, args=(addr, p), daemon=True) for p in ports(argv, "--udp")]
    for t in threads:
        t.start()
    print("ready", flush=True)
    threading.Event().wait()


main(sys.argv)
