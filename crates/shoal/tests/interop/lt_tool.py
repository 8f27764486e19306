#!/usr/bin/env python3
"""libtorrent (PyPI `libtorrent`) as an independent reference for Shoal's interop tests.

  lt_tool.py create MODE PIECE_LENGTH PATH OUT   make a torrent with libtorrent
  lt_tool.py hashes TORRENT                      print {"v1": hex|null, "v2": hex|null}
  lt_tool.py magnet TORRENT                      print libtorrent's magnet link for it
  lt_tool.py parse-magnet URI                    print {"v1", "v2", "name", "trackers"} of a link

MODE is v1, v2 or hybrid. Files are added in path order, component by component, which is
the order BEP 52 file trees impose; libtorrent then lays them out (and pads them) itself.
"""
import json
import os
import sys
import warnings

import libtorrent as lt

warnings.simplefilter("ignore", DeprecationWarning)


def create(mode, piece_length, path, out):
    fs = lt.file_storage()
    path = os.path.normpath(path)
    if os.path.isdir(path):
        parent = os.path.dirname(os.path.abspath(path))
        files = []
        for root, _, names in os.walk(path):
            files.extend(os.path.join(root, n) for n in names)
        for f in sorted(files, key=lambda p: p.split(os.sep)):
            fs.add_file(os.path.relpath(f, parent), os.path.getsize(f))
    else:
        parent = os.path.dirname(os.path.abspath(path))
        fs.add_file(os.path.basename(path), os.path.getsize(path))
    flags = {"v1": lt.create_torrent.v1_only, "v2": lt.create_torrent.v2_only, "hybrid": 0}[mode]
    ct = lt.create_torrent(fs, piece_length, flags)
    lt.set_piece_hashes(ct, parent)
    with open(out, "wb") as f:
        f.write(lt.bencode(ct.generate()))


def hashes(torrent):
    ih = lt.torrent_info(torrent).info_hashes()
    print(json.dumps({
        "v1": str(ih.v1) if ih.has_v1() else None,
        "v2": str(ih.v2) if ih.has_v2() else None,
    }))


def magnet(torrent):
    print(lt.make_magnet_uri(lt.torrent_info(torrent)))


def parse_magnet(uri):
    p = lt.parse_magnet_uri(uri)
    ih = p.info_hashes
    print(json.dumps({
        "v1": str(ih.v1) if ih.has_v1() else None,
        "v2": str(ih.v2) if ih.has_v2() else None,
        "name": p.name,
        "trackers": list(p.trackers),
    }))


if __name__ == "__main__":
    if sys.argv[1] == "create":
        create(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    elif sys.argv[1] == "hashes":
        hashes(sys.argv[2])
    elif sys.argv[1] == "magnet":
        magnet(sys.argv[2])
    elif sys.argv[1] == "parse-magnet":
        parse_magnet(sys.argv[2])
    else:
        sys.exit(f"unknown command {sys.argv[1]!r}")
