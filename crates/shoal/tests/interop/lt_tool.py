#!/usr/bin/env python3
"""libtorrent (PyPI `libtorrent`) as an independent reference for Shoal's interop tests.

  lt_tool.py create MODE PIECE_LENGTH PATH OUT   make a torrent with libtorrent
  lt_tool.py hashes TORRENT                      print {"v1": hex|null, "v2": hex|null}
  lt_tool.py magnet TORRENT                      print libtorrent's magnet link for it
  lt_tool.py parse-magnet URI                    print {"v1", "v2", "name", "trackers"} of a link
  lt_tool.py seed TORRENT SAVE_DIR PORT SECONDS    seed from SAVE_DIR on 127.0.0.1:PORT for SECONDS
  lt_tool.py download TORRENT SAVE_DIR PEER SECONDS  download from PEER (HOST:PORT), or from the
                                                   peers the torrent's tracker names when PEER is
                                                   "tracker"; exit 0 when complete

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


def session(port, tuned=False):
    """A libtorrent session for loopback tests: TCP only (Shoal does not speak uTP), plaintext,
    no DHT/LSD/UPnP, one interface. `tuned` adds LAN settings for benchmarks: no upload slot
    limit, deep request queues, large send buffers."""
    settings = {
        "listen_interfaces": f"127.0.0.1:{port}",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "allow_multiple_connections_per_ip": True,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "out_enc_policy": lt.enc_policy.disabled,
        "in_enc_policy": lt.enc_policy.enabled,
        "alert_mask": 0,
    }
    if tuned:
        settings.update({
            "unchoke_slots_limit": -1,
            "max_out_request_queue": 1500,
            "max_allowed_in_request_queue": 2000,
            "request_queue_time": 3,
            "send_buffer_watermark": 8 * 1024 * 1024,
            "send_buffer_low_watermark": 1024 * 1024,
            "send_buffer_watermark_factor": 150,
            "max_queued_disk_bytes": 64 * 1024 * 1024,
            "aio_threads": 4,
            "hashing_threads": 2,
        })
    return lt.session(settings)


def add(ses, torrent, save_dir):
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(torrent)
    atp.save_path = save_dir
    return ses.add_torrent(atp)


def seed(torrent, save_dir, port, seconds, tuned=False):
    import time
    ses = session(port, tuned)
    handle = add(ses, torrent, save_dir)
    deadline = time.time() + seconds
    while time.time() < deadline:
        st = handle.status()
        if st.state == lt.torrent_status.seeding and not getattr(seed, "announced", False):
            print("seeding", flush=True)
            seed.announced = True
        time.sleep(0.1)


def download(torrent, save_dir, peer, seconds, tuned=False):
    import time
    from_tracker = peer == "tracker"
    if not from_tracker:
        host, port = peer.rsplit(":", 1)
    ses = session(0, tuned)
    handle = add(ses, torrent, save_dir)
    deadline = time.time() + seconds
    while time.time() < deadline:
        st = handle.status()
        if st.is_seeding:
            print(json.dumps({"seconds": seconds - (deadline - time.time()), "downloaded": st.total_payload_download}))
            return
        if st.num_peers == 0 and not from_tracker:
            handle.connect_peer((host, int(port)))
        time.sleep(0.05)
    st = handle.status()
    sys.exit(f"download incomplete after {seconds}s: {st.progress * 100:.1f}%, "
             f"{st.num_peers} peers, tracker {st.current_tracker!r}: {st.errc.message()}")


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
    elif sys.argv[1] == "seed":
        seed(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), "--tuned" in sys.argv)
    elif sys.argv[1] == "download":
        download(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]), "--tuned" in sys.argv)
    elif sys.argv[1] == "parse-magnet":
        parse_magnet(sys.argv[2])
    else:
        sys.exit(f"unknown command {sys.argv[1]!r}")
