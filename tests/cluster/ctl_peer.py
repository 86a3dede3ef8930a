#!/usr/bin/python3
"""Peers of dragon's control link for multinode-auth.sh, written apart from
the C code (Python's hmac and hashlib) so that they check its handshake
from outside: see libdlaunch/dragon_ctl.h for the frames and proofs.

  ctl_peer.py backend wrong-secret VERSION
                                        a backend of Dragon VERSION whose
                                        proof is made with another secret:
                                        the frontend must refuse it
  ctl_peer.py backend version VERSION   a backend of Dragon VERSION that
                                        holds the secret
  ctl_peer.py frontend                  a frontend that does not hold the
                                        secret: the backend must refuse it
  ctl_peer.py relay IP HOST PORT FILE   relays one connection from IP
                                        ("auto": the address that reaches
                                        HOST) to HOST:PORT, recording both
                                        ways; prints IP and its port

The backends take what dragon-backend takes from the environment
(DRAGON_BE_*, SLURM_NODEID, SLURM_LAUNCH_NODE_IPADDR).  Each prints what
it saw, one line per event, for the test to check.
"""
import hashlib
import hmac
import os
import secrets
import select
import socket
import struct
import sys

HELLO, STOP, CHALLENGE, AUTH = 1, 10, 16, 17
LINK = "3"


def send(sock, typ, fields):
    body = bytes([typ]) + b"".join(f.encode() + b"\0" for f in fields)
    sock.sendall(struct.pack("!I", len(body)) + body)


def recv(sock):
    def exactly(n):
        b = b""
        while len(b) < n:
            c = sock.recv(n - len(b))
            if not c:
                return None
            b += c
        return b

    h = exactly(4)
    if h is None:
        return None, []
    body = exactly(struct.unpack("!I", h)[0])
    if body is None:
        return None, []
    return body[0], [f.decode() for f in body[1:].split(b"\0")[:-1]]


def proof(secret, role, fields):
    msg = b"".join(f.encode() + b"\0" for f in [role] + fields)
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def say(*a):
    print("ctl_peer:", *a, flush=True)


def backend(mode, version):
    secret = os.environ["DRAGON_BE_SECRET"]
    node = os.environ.get("DRAGON_BE_NODE", os.environ.get("SLURM_NODEID"))
    host = os.environ.get("DRAGON_BE_FRONTEND") or os.environ["SLURM_LAUNCH_NODE_IPADDR"]
    s = socket.create_connection((host, int(os.environ["DRAGON_BE_PORT"])), 30)
    hello = [LINK, node, socket.gethostname(), secrets.token_hex(32), str(os.getpid()), version]
    send(s, HELLO, hello)
    typ, f = recv(s)
    if typ != CHALLENGE:
        say("no challenge, got", typ)
        return 1
    fields = hello + [f[0]]
    ok = hmac.compare_digest(f[1], proof(secret, "frontend", fields))
    say("frontend proof", "valid" if ok else "INVALID")
    key = secret if mode == "version" else "not-" + secret
    send(s, AUTH, [proof(key, "backend", fields)])
    while True:
        typ, f = recv(s)
        if typ is None:
            say("connection closed by the frontend")
            return 0
        if typ == STOP:
            say("told to stop")
            return 0


def frontend():
    ls = socket.create_server(("", 0))
    print(ls.getsockname()[1], flush=True)
    ls.settimeout(60)
    s, _ = ls.accept()
    s.settimeout(60)
    typ, hello = recv(s)
    if typ != HELLO:
        say("no hello, got", typ)
        return 1
    say("hello from node", hello[1], "fields", len(hello))
    nonce = secrets.token_hex(32)
    send(s, CHALLENGE, [nonce, proof("a-guess-at-the-secret", "frontend", hello + [nonce])])
    typ, f = recv(s)
    say("backend sent a proof" if typ == AUTH else "backend closed without a proof")
    return 0


def relay(ip, host, port, path):
    if ip == "auto":  # the address this node reaches HOST from
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.connect((host, int(port)))
        ip = u.getsockname()[0]
        u.close()
    ls = socket.create_server((ip, 0))
    print(ip, ls.getsockname()[1], flush=True)
    ls.settimeout(60)
    a, _ = ls.accept()
    ls.close()
    b = socket.create_connection((host, int(port)), 30)
    with open(path, "wb") as log:
        peers = {a: b, b: a}
        while True:
            r, _, _ = select.select(list(peers), [], [], 120)
            if not r:
                return 1
            for x in r:
                d = x.recv(65536)
                if not d:
                    return 0
                log.write(d)
                log.flush()
                peers[x].sendall(d)


def main(argv):
    if argv[:2] == ["backend", "wrong-secret"] and len(argv) == 3:
        return backend("wrong-secret", argv[2])
    if argv[:2] == ["backend", "version"] and len(argv) == 3:
        return backend("version", argv[2])
    if argv == ["frontend"]:
        return frontend()
    if argv[:1] == ["relay"] and len(argv) == 5:
        return relay(*argv[1:])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
