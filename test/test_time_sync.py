"""ApproximateTimeSynchronizer: matching, slop, drops and counters (deterministic, no threads of its own)."""
import threading

import pytest

from ov3d_ros.messages.time_sync import ApproximateTimeSynchronizer

MS = 1_000_000
TOPICS = ("color", "depth", "info")


def make(queue_size=10, slop_s=0.01, topics=TOPICS):
    out = []
    sync = ApproximateTimeSynchronizer(topics, queue_size, slop_s, callback=lambda *items: out.append(items))
    return sync, out


def feed(sync, topic, stamp_ms):
    sync.add(topic, stamp_ms * MS, f"{topic}@{stamp_ms}")


def test_exact_matches_are_emitted_immediately_in_topic_order():
    sync, out = make()
    for k in range(5):
        stamp = 100 + k * 33
        for topic in ("info", "depth", "color"):  # arrival order differs from topic order
            feed(sync, topic, stamp)
        assert out[-1] == (f"color@{stamp}", f"depth@{stamp}", f"info@{stamp}")
    assert len(out) == 5
    assert sync.stats == {"received": 15, "emitted": 5, "overflow": 0, "out_of_order": 0, "unmatched": 0}


def test_stamps_within_slop_match_and_outside_do_not():
    sync, out = make(topics=("color", "depth"), slop_s=0.01)
    feed(sync, "color", 0)
    feed(sync, "depth", 4)
    assert out == []  # colour may still get a message closer to depth@4
    feed(sync, "color", 33)
    assert out == [("color@0", "depth@4")]
    feed(sync, "depth", 48)  # 15 ms from color@33: beyond the slop, colour@33 can never match
    assert out == [("color@0", "depth@4")]
    assert sync.stats["unmatched"] == 1
    feed(sync, "color", 66)
    feed(sync, "depth", 70)
    feed(sync, "color", 99)
    assert out[-1] == ("color@66", "depth@70")
    assert sync.stats["emitted"] == 2


def test_tightest_set_wins_over_an_earlier_loose_one():
    sync, out = make(topics=("color", "depth"), slop_s=0.05)
    feed(sync, "color", 0)
    feed(sync, "color", 33)
    feed(sync, "depth", 30)
    assert out == []  # depth might still deliver a message closer to color@33
    feed(sync, "depth", 63)
    assert out == [("color@33", "depth@30")]
    assert sync.stats["unmatched"] == 1  # color@0 discarded as older than the emitted set


def test_dropped_message_on_one_topic_does_not_stall_or_shift_the_others():
    # slop larger than half the 33 ms period: eager matching would pair colour k with depth k+1 forever
    sync, out = make(topics=("color", "depth"), slop_s=0.05)
    for k in range(10):
        stamp = k * 33
        if k != 3:  # depth frame 3 lost
            feed(sync, "depth", stamp)
        feed(sync, "color", stamp)
    assert out == [(f"color@{k * 33}", f"depth@{k * 33}") for k in range(10) if k != 3]
    assert sync.stats["unmatched"] == 1


def test_lost_message_with_depth_arriving_late():
    sync, out = make(topics=("color", "depth"), slop_s=0.05)
    for k in range(8):
        stamp = k * 33
        feed(sync, "color", stamp)
        if k != 2:
            feed(sync, "depth", stamp)
    assert out == [(f"color@{k * 33}", f"depth@{k * 33}") for k in range(8) if k != 2]


def test_queue_overflow_is_counted():
    sync, out = make(queue_size=3)
    for stamp in range(0, 50, 10):
        feed(sync, "color", stamp)
    assert sync.stats["overflow"] == 2
    feed(sync, "depth", 30)
    feed(sync, "info", 30)
    assert out == [("color@30", "depth@30", "info@30")]
    assert sync.stats["unmatched"] == 1  # color@20, older than the emitted set


def test_out_of_order_stamps_are_dropped_and_counted():
    sync, out = make()
    for topic in TOPICS:
        feed(sync, topic, 100)
    feed(sync, "depth", 90)
    feed(sync, "depth", 100)
    assert sync.stats["out_of_order"] == 2
    # late but newer than the last emitted set: inserted in stamp order and still matched
    feed(sync, "color", 140)
    feed(sync, "color", 120)
    feed(sync, "depth", 120)
    feed(sync, "info", 120)
    assert out[-1] == ("color@120", "depth@120", "info@120")
    assert sync.stats["out_of_order"] == 2


def test_flush_emits_pending_sets_and_clear_resets_queues():
    sync, out = make(topics=("color", "depth"))
    feed(sync, "color", 0)
    feed(sync, "depth", 5)
    assert out == []
    sync.flush()
    assert out == [("color@0", "depth@5")]
    feed(sync, "color", 50)
    sync.clear()
    feed(sync, "color", 1)  # older than the last emitted set, accepted after clear()
    feed(sync, "depth", 1)
    assert out[-1] == ("color@1", "depth@1")


def test_invalid_arguments():
    with pytest.raises(ValueError, match="unique"):
        make(topics=("a", "a"))
    with pytest.raises(ValueError, match="queue_size"):
        make(queue_size=0)
    with pytest.raises(ValueError, match="slop_s"):
        make(slop_s=-1.0)
    sync, _ = make()
    with pytest.raises(ValueError, match="unknown topic 'lidar'"):
        feed(sync, "lidar", 0)


def test_concurrent_adds_emit_every_set_once():
    sync, out = make(queue_size=1000)
    n = 500

    def producer(topic):
        for k in range(n):
            feed(sync, topic, k * 33)

    threads = [threading.Thread(target=producer, args=(topic,)) for topic in TOPICS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(out) == sorted((f"color@{k * 33}", f"depth@{k * 33}", f"info@{k * 33}") for k in range(n))
    assert sync.stats["emitted"] == n
