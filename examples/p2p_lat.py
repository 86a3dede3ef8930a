#!/usr/bin/python3
"""Point-to-point latency between two processes.

Two processes bounce a message back and forth over a Pipe (or, with
--queues, a pair of Queues) and the table gives the round-trip time per
message size, from 2 bytes up to 2**lg_max_message_size bytes:

    dragon examples/p2p_lat.py --dragon
    /usr/bin/python3 examples/p2p_lat.py --dragon --with_bytes
    /usr/bin/python3 examples/p2p_lat.py            # stock multiprocessing

--dragon uses the 'dragon' start method (with no runtime around, an
embedded one is started and torn down at exit); without it the stock
default start method runs the same program.  --with_bytes sends bytes
(send_bytes/recv_bytes on a Pipe), otherwise objects (a bytearray sent
with send/recv or put/get).  Under a runtime over several nodes
(`salloc -N2` then `dragon examples/p2p_lat.py --dragon`) the echoing
process is placed on another node than the measuring one, round-robin;
stderr says which nodes the two ran on.
"""
import argparse
import multiprocessing as mp
import socket
import sys
import time


def echo(conn_in, conn_out, with_bytes, queues, iterations, sizes):
    # Where the echo runs (over several nodes, another node than the
    # measuring process's), before the timed trips.
    if queues:
        conn_out.put(socket.gethostname())
    else:
        conn_out.send(socket.gethostname())
    for _ in sizes:
        for _ in range(iterations + 1):
            if queues:
                conn_out.put(conn_in.get())
            elif with_bytes:
                conn_out.send_bytes(conn_in.recv_bytes())
            else:
                conn_out.send(conn_in.recv())


def measure(conn_out, conn_in, with_bytes, queues, iterations, size):
    """Mean round-trip time in microseconds (one warm-up trip)."""
    msg = bytes(size) if with_bytes else bytearray(size)
    start = 0.0
    for i in range(iterations + 1):
        if i == 1:
            start = time.perf_counter()
        if queues:
            conn_out.put(msg)
            conn_in.get()
        elif with_bytes:
            conn_out.send_bytes(msg)
            conn_in.recv_bytes()
        else:
            conn_out.send(msg)
            conn_in.recv()
    return (time.perf_counter() - start) / iterations * 1e6


def main(argv=None):
    ap = argparse.ArgumentParser(description="P2P latency test")
    ap.add_argument("--iterations", type=int, default=1000,
                    help="number of iterations to do")
    ap.add_argument("--lg_max_message_size", type=int, default=4,
                    help="log base 2 of size of message to pass in")
    ap.add_argument("--dragon", action="store_true",
                    help="run using dragon")
    ap.add_argument("--with_bytes", action="store_true",
                    help="creates a message with bytes instead of a bytearray")
    ap.add_argument("--queues", action="store_true",
                    help="measure Queues instead of Pipes")
    args = ap.parse_args(argv)

    if args.dragon:
        import dragon  # noqa: F401  (registers the start method)
        mp.set_start_method("dragon")
    sizes = [2 ** k for k in range(1, args.lg_max_message_size + 1)]
    if args.queues:
        to_child, from_child = mp.Queue(), mp.Queue()
        child_args = (to_child, from_child)
        a_out, a_in = to_child, from_child
    else:
        a, b = mp.Pipe()
        child_args = (b, b)
        a_out = a_in = a
    proc = mp.Process(target=echo, args=child_args + (
        args.with_bytes, args.queues, args.iterations, sizes))
    proc.start()
    there = a_in.get() if args.queues else a_in.recv()
    print("p2p_lat: measuring on %s, echo on %s" % (socket.gethostname(), there),
          file=sys.stderr, flush=True)
    print("Msglen [B]   Lat [usec]")
    for size in sizes:
        lat = measure(a_out, a_in, args.with_bytes, args.queues,
                      args.iterations, size)
        print("%-12d %.3f" % (size, lat), flush=True)
    proc.join()
    return proc.exitcode


if __name__ == "__main__":
    raise SystemExit(main())
