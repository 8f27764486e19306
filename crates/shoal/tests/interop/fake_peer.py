#!/usr/bin/env python3
"""A minimal BitTorrent seed written from BEP 3 alone, for scenario tests: an independent peer
that can lie or crawl on purpose.

  fake_peer.py --data FILE --piece-length N --info-hash HEX --listen ADDR:PORT
               [--corrupt] [--rate BYTES_PER_S] [--report-after BYTES]

Single-file torrents only (piece i is FILE[i*N:(i+1)*N]). It answers the handshake (no
extensions), sends a full bitfield and an unchoke, and serves every request. --corrupt flips
a byte in every block it sends. --rate throttles it. --report-after prints "served N" on
stdout once it has sent at least that many block bytes.
"""
import argparse
import os
import socket
import struct
import sys
import threading
import time


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


class Stats:
    def __init__(self, report_after):
        self.lock = threading.Lock()
        self.served = 0
        self.report_after = report_after
        self.reported = False

    def add(self, n):
        with self.lock:
            self.served += n
            if self.report_after and not self.reported and self.served >= self.report_after:
                self.reported = True
                print(f"served {self.served}", flush=True)


def serve(conn, args, data, stats):
    piece_count = (len(data) + args.piece_length - 1) // args.piece_length
    info_hash = bytes.fromhex(args.info_hash)
    hs = read_exact(conn, 68)
    if hs[:20] != b"\x13BitTorrent protocol" or hs[28:48] != info_hash:
        return
    conn.sendall(b"\x13BitTorrent protocol" + bytes(8) + info_hash + b"-FK0001-" + os.urandom(6).hex().encode())
    bits = bytearray((piece_count + 7) // 8)
    for i in range(piece_count):
        bits[i // 8] |= 0x80 >> (i % 8)
    conn.sendall(struct.pack(">IB", 1 + len(bits), 5) + bits)
    conn.sendall(struct.pack(">IB", 1, 1))  # unchoke
    started = time.time()
    while True:
        (length,) = struct.unpack(">I", read_exact(conn, 4))
        if length == 0:
            continue
        if length > 1 << 20:
            return
        body = read_exact(conn, length)
        if body[0] != 6 or len(body) != 13:
            continue  # interested, have, keep-alive...: nothing to do for a seed
        index, begin, size = struct.unpack(">III", body[1:])
        start = index * args.piece_length + begin
        if size > 1 << 17 or start + size > len(data):
            return
        block = bytearray(data[start:start + size])
        if args.corrupt:
            block[len(block) // 2] ^= 0xFF
        if args.rate:
            # Hold the average at --rate since the first block.
            due = started + (stats.served + size) / args.rate
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
        conn.sendall(struct.pack(">IBII", 9 + size, 7, index, begin) + bytes(block))
        stats.add(size)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", required=True)
    p.add_argument("--piece-length", type=int, required=True)
    p.add_argument("--info-hash", required=True)
    p.add_argument("--listen", required=True)
    p.add_argument("--corrupt", action="store_true")
    p.add_argument("--rate", type=float, default=0)
    p.add_argument("--report-after", type=int, default=0)
    args = p.parse_args()
    with open(args.data, "rb") as f:
        data = f.read()
    host, port = args.listen.rsplit(":", 1)
    server = socket.create_server((host, int(port)))
    stats = Stats(args.report_after)
    print("listening", flush=True)
    while True:
        conn, _ = server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def run(c=conn):
            try:
                serve(c, args, data, stats)
            except (ConnectionError, OSError):
                pass
            finally:
                c.close()

        threading.Thread(target=run, daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
