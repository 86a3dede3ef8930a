#!/usr/bin/python3
"""Point-to-point bandwidth between two processes.

One process streams --iterations messages of each size to another over a
Pipe (or a Queue with --queues); the receiver acknowledges the whole
window once, and the table gives the rate per message size:

    dragon examples/p2p_bw.py --dragon
    /usr/bin/python3 examples/p2p_bw.py --dragon --lg_max_message_size 20

The options are those of p2p_lat.py.
"""
import argparse
import multiprocessing as mp
import time


def sink(src, ack, with_bytes, queues, iterations, nsizes):
    for _ in range(nsizes):
        for _ in range(iterations + 1):
            if queues:
                src.get()
            elif with_bytes:
                src.recv_bytes()
            else:
                src.recv()
        if queues:
            ack.put(b"ok")
        else:
            ack.send_bytes(b"ok")


def main(argv=None):
    ap = argparse.ArgumentParser(description="P2P bandwidth test")
    ap.add_argument("--iterations", type=int, default=100,
                    help="messages per size")
    ap.add_argument("--lg_max_message_size", type=int, default=20,
                    help="log base 2 of the largest message")
    ap.add_argument("--dragon", action="store_true", help="run using dragon")
    ap.add_argument("--with_bytes", action="store_true",
                    help="send bytes instead of a bytearray")
    ap.add_argument("--queues", action="store_true",
                    help="measure Queues instead of Pipes")
    args = ap.parse_args(argv)

    if args.dragon:
        import dragon  # noqa: F401
        mp.set_start_method("dragon")
    sizes = [2 ** k for k in range(1, args.lg_max_message_size + 1)]
    if args.queues:
        data, ack = mp.Queue(), mp.Queue()
        child = (data, ack)
    else:
        data_r, data = mp.Pipe(duplex=False)
        ack, ack_w = mp.Pipe(duplex=False)
        child = (data_r, ack_w)
    proc = mp.Process(target=sink, args=child + (
        args.with_bytes, args.queues, args.iterations, len(sizes)))
    proc.start()
    print("Msglen [B]   BW [MiB/s]")
    for size in sizes:
        msg = bytes(size) if args.with_bytes else bytearray(size)
        start = 0.0
        for i in range(args.iterations + 1):
            if i == 1:
                start = time.perf_counter()
            if args.queues:
                data.put(msg)
            elif args.with_bytes:
                data.send_bytes(msg)
            else:
                data.send(msg)
        if args.queues:
            ack.get()
        else:
            ack.recv_bytes()
        secs = time.perf_counter() - start
        print("%-12d %.3f" % (size, size * args.iterations / secs / 2**20), flush=True)
    proc.join()
    return proc.exitcode


if __name__ == "__main__":
    raise SystemExit(main())
