import logging
import threading

from pca_core.api.transport import Message
from pca_core.runtime.dispatcher import Dispatcher
from tests.support.waiting import wait_until


def test_handlers_run_on_the_dispatcher_thread_in_order():
    dispatcher = Dispatcher(queue_size=10)
    dispatcher.start()
    seen = []
    done = threading.Event()

    def handler(message):
        seen.append((message.topic, threading.current_thread().name))
        if len(seen) == 3:
            done.set()

    enqueue = dispatcher.wrap(handler)
    for i in range(3):
        enqueue(Message(f"t/{i}", b""))
    assert done.wait(5)
    assert seen == [(f"t/{i}", "pca-dispatcher") for i in range(3)]
    assert dispatcher.stop(5)


def test_a_failing_handler_is_logged_with_the_topic_and_the_next_message_still_runs(caplog):
    dispatcher = Dispatcher()
    dispatcher.start()
    done = threading.Event()

    def handler(message):
        if message.topic == "bad/one":
            raise ValueError("malformed")
        done.set()

    enqueue = dispatcher.wrap(handler)
    enqueue(Message("bad/one", b"{"))
    enqueue(Message("good/one", b"{}"))
    assert done.wait(5)
    assert dispatcher.stop(5)
    assert "bad/one" in caplog.text and "malformed" in caplog.text


def test_stop_handles_what_was_queued_then_refuses_more():
    dispatcher = Dispatcher()
    dispatcher.start()
    gate = threading.Event()
    handled = []

    def handler(message):
        gate.wait(5)
        handled.append(message.topic)

    enqueue = dispatcher.wrap(handler)
    for i in range(5):
        enqueue(Message(f"t/{i}", b""))
    gate.set()
    assert dispatcher.stop(5)
    enqueue(Message("late", b""))
    assert handled == [f"t/{i}" for i in range(5)]


def test_stop_reports_work_still_running_at_the_deadline():
    dispatcher = Dispatcher()
    dispatcher.start()
    started, release = threading.Event(), threading.Event()

    def handler(message):
        started.set()
        release.wait(10)

    dispatcher.wrap(handler)(Message("slow", b""))
    assert started.wait(5)
    assert dispatcher.stop(0.05) is False
    release.set()


def test_a_full_queue_makes_the_caller_wait_within_the_bound_rather_than_drop():
    dispatcher = Dispatcher(queue_size=1, put_timeout=60)
    dispatcher.start()
    started, release = threading.Event(), threading.Event()
    handled = []

    def handler(message):
        started.set()
        release.wait(10)
        handled.append(message.topic)

    enqueue = dispatcher.wrap(handler)
    producer = threading.Thread(target=lambda: [enqueue(Message(f"t/{i}", b"")) for i in range(4)])
    producer.start()
    assert started.wait(5)
    assert wait_until(lambda: dispatcher.depth == 1)
    assert producer.is_alive()  # one message in the handler, one queued, two still to go: it waits
    release.set()
    producer.join(10)
    assert not producer.is_alive()
    assert dispatcher.stop(5)
    assert handled == [f"t/{i}" for i in range(4)]


class Acked:
    """Messages whose acknowledgements are recorded."""

    def __init__(self):
        self.topics = []

    def message(self, topic: str, payload: bytes) -> Message:
        return Message(topic, payload, lambda: self.topics.append(topic))


class Blocked:
    """A handler that records each topic once ``release`` is set."""

    def __init__(self):
        self.started, self.release, self.handled = threading.Event(), threading.Event(), []

    def __call__(self, message: Message) -> None:
        self.started.set()
        self.release.wait(10)
        self.handled.append(message.topic)


def warnings_and_infos(caplog):
    return ([r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING],
            [r.getMessage() for r in caplog.records if r.levelno == logging.INFO])


def test_a_message_over_the_maximum_size_is_dropped_acked_counted_and_logged_once_per_episode(caplog):
    dispatcher = Dispatcher(max_message_size=10)
    dispatcher.start()
    acked, handled = Acked(), []
    enqueue = dispatcher.wrap(lambda message: handled.append(message.topic))
    with caplog.at_level(logging.INFO, logger="pca_core.runtime"):
        for i in range(3):
            enqueue(acked.message(f"big/{i}", b"SECRET-CONTENT"))
        enqueue(acked.message("fits", b"0123456789"))
        assert wait_until(lambda: "fits" in acked.topics)
        enqueue(acked.message("big/again", b"SECRET-CONTENT"))
    assert dispatcher.stop(5)
    assert handled == ["fits"]
    assert acked.topics == ["big/0", "big/1", "big/2", "fits", "big/again"]  # dropped ones too
    assert dispatcher.dropped_oversize == 4
    warnings, infos = warnings_and_infos(caplog)
    assert len(warnings) == 2 and "big/0" in warnings[0] and "14 bytes" in warnings[0]
    assert "big/again" in warnings[1]
    assert any("3 messages" in line for line in infos)
    assert "SECRET" not in caplog.text


def test_the_queue_holds_a_byte_budget_besides_its_count(caplog):
    dispatcher = Dispatcher(queue_size=100, queue_bytes=100, put_timeout=0.05)
    dispatcher.start()
    acked, blocked = Acked(), Blocked()
    started, release, handled = blocked.started, blocked.release, blocked.handled
    enqueue = dispatcher.wrap(blocked)
    with caplog.at_level(logging.INFO, logger="pca_core.runtime"):
        enqueue(acked.message("m/0", b"x" * 40))  # being handled: its bytes still count
        assert started.wait(5)
        enqueue(acked.message("m/1", b"x" * 40))
        enqueue(acked.message("m/2", b"x" * 40))  # 120 > 100: no room, dropped after the wait
        enqueue(acked.message("m/3", b"x" * 10))  # fits
        release.set()
        assert dispatcher.stop(5)
    assert handled == ["m/0", "m/1", "m/3"]
    assert dispatcher.dropped_full == 1 and "m/2" in acked.topics
    warnings, _ = warnings_and_infos(caplog)
    assert len(warnings) == 1 and "dispatcher full: dropping m/2" in warnings[0]


def test_a_message_bigger_than_the_byte_budget_still_passes_alone():
    dispatcher = Dispatcher(queue_bytes=10)
    dispatcher.start()
    done = threading.Event()
    dispatcher.wrap(lambda message: done.set())(Message("big", b"x" * 100))
    assert done.wait(5)
    assert dispatcher.stop(5)


def test_a_full_queue_blocks_the_network_thread_only_for_a_bounded_wait(caplog):
    dispatcher = Dispatcher(queue_size=1, put_timeout=0.05)
    dispatcher.start()
    acked, blocked = Acked(), Blocked()
    started, release, handled = blocked.started, blocked.release, blocked.handled
    enqueue = dispatcher.wrap(blocked)
    with caplog.at_level(logging.INFO, logger="pca_core.runtime"):
        enqueue(acked.message("t/0", b""))
        assert started.wait(5)
        network = threading.Thread(
            target=lambda: [enqueue(acked.message(f"t/{i}", b"")) for i in range(1, 6)])
        network.start()
        network.join(10)
        assert not network.is_alive()  # before the fix: it looped forever while the queue stayed full
        assert dispatcher.dropped_full == 4 and acked.topics == ["t/2", "t/3", "t/4", "t/5"]
        release.set()
        assert wait_until(lambda: handled == ["t/0", "t/1"])
        enqueue(acked.message("t/6", b""))
        assert dispatcher.stop(5)
    assert handled == ["t/0", "t/1", "t/6"]
    warnings, infos = warnings_and_infos(caplog)
    assert len(warnings) == 1 and "dispatcher full: dropping t/2" in warnings[0]
    assert any("4 messages" in line and "dropped" in line for line in infos)
