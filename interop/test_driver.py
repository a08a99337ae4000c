#!/usr/bin/env python3
"""Unit tests of driver.py's parsing and judging, without a VM:
`python3 interop/test_driver.py`."""

import json
import unittest

import driver


def peer(**over: int) -> dict:
    base = {k: 0 for k in ("link-tx-packets", "link-tx-bytes", "link-rx-packets",
                           "link-rx-bytes", "vpn-tx-packets", "vpn-tx-bytes",
                           "vpn-rx-packets", "vpn-rx-bytes")}
    base.update({k.replace("_", "-"): v for k, v in over.items()})
    return base


class Counters(unittest.TestCase):
    def setUp(self) -> None:
        self.cell = driver.all_cells()[2]

    def judge(self, k: dict, d: dict, lost=(0, 0)) -> None:
        driver.compare_counters(self.cell, k, d, {"kernel": lost[0], "daemon": lost[1]})

    def test_equal_counters_pass(self) -> None:
        k = peer(link_tx_packets=10, link_tx_bytes=1000, vpn_tx_packets=8, vpn_tx_bytes=700,
                 link_rx_packets=5, link_rx_bytes=400, vpn_rx_packets=5, vpn_rx_bytes=300)
        d = peer(link_rx_packets=10, link_rx_bytes=1000, vpn_rx_packets=8, vpn_rx_bytes=700,
                 link_tx_packets=5, link_tx_bytes=400, vpn_tx_packets=5, vpn_tx_bytes=300)
        self.judge(k, d)
        self.assertTrue(self.cell.results["counters"]["ok"])

    def test_unaccounted_loss_fails(self) -> None:
        k = peer(link_tx_packets=10, link_tx_bytes=1000)
        d = peer(link_rx_packets=9, link_rx_bytes=900)
        with self.assertRaises(driver.StepError):
            self.judge(k, d)

    def test_accounted_loss_passes_and_is_shown(self) -> None:
        k = peer(link_tx_packets=10, link_tx_bytes=1000, vpn_tx_packets=10, vpn_tx_bytes=900)
        d = peer(link_rx_packets=9, link_rx_bytes=900, vpn_rx_packets=9, vpn_rx_bytes=810)
        self.judge(k, d, lost=(1, 0))
        self.assertIn("1/0 lost", self.cell.results["counters"]["text"])

    def test_loss_claimed_but_counters_equal_fails(self) -> None:
        with self.assertRaises(driver.StepError):
            self.judge(peer(), peer(), lost=(0, 2))

    def test_vpn_difference_beyond_the_loss_fails(self) -> None:
        k = peer(link_tx_packets=10, link_tx_bytes=1000, vpn_tx_packets=10, vpn_tx_bytes=900)
        d = peer(link_rx_packets=9, link_rx_bytes=900, vpn_rx_packets=7, vpn_rx_bytes=630)
        with self.assertRaises(driver.StepError):
            self.judge(k, d, lost=(1, 0))

    def test_bytes_must_agree_without_loss(self) -> None:
        k = peer(link_tx_packets=3, link_tx_bytes=300)
        d = peer(link_rx_packets=3, link_rx_bytes=299)
        with self.assertRaises(driver.StepError):
            self.judge(k, d)


class Parsing(unittest.TestCase):
    def test_ping_summaries(self) -> None:
        iputils = "3 packets transmitted, 3 received, 0% packet loss, time 402ms"
        busybox = "3 packets transmitted, 2 packets received, 33% packet loss"
        self.assertEqual(driver.ping_counts(iputils), (3, 3))
        self.assertEqual(driver.ping_counts(busybox), (3, 2))
        self.assertEqual(driver.ping_counts("ping: connect: Network is unreachable"), (0, 0))

    def test_udp_drops_by_local_port(self) -> None:
        table = (
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
            "   uid  timeout inode ref pointer drops\n"
            " 1: 00000000000000000000FFFF0112C6C6:4E20 00000000000000000000000000000000:0000"
            " 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 14\n"
            " 2: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000"
            "     0        0 3 2 0000000000000000 0\n")
        self.assertEqual(driver.udp_drops(table), {0x4E20: 14, 0x35: 0})

    def test_deletions(self) -> None:
        out = "\n".join([
            json.dumps({"name": "peer-del-ntf",
                        "msg": {"ifindex": 3, "peer": {"id": 100, "del-reason": "expired"}}}),
            "not json",
            json.dumps({"name": "key-swap-ntf", "msg": {}}),
        ])
        self.assertEqual(driver.parse_deletions(out), [(100, "expired")])

    def test_peer_reply(self) -> None:
        self.assertEqual(driver.parse_peer('{"ifindex":2,"peer":{"id":5}}'), {"id": 5})
        self.assertIsNone(driver.parse_peer("ovpn: peer get: No such file or directory"))


class Render(unittest.TestCase):
    def test_a_missing_column_fails_the_verdict(self) -> None:
        ok = {"ok": True, "text": "ok"}
        results = {"cells": [{"name": "x", "seconds": 1.0, "details": [],
                              "results": {c: ok for c in driver.COLUMNS[:-1]}}]}
        text, passed = driver.render(results, 5.0)
        self.assertFalse(passed)
        self.assertIn("not run", text)
        results["cells"][0]["results"]["counters"] = ok
        self.assertTrue(driver.render(results, 5.0)[1])


if __name__ == "__main__":
    unittest.main()
