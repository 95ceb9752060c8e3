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


def test_a_full_queue_makes_the_caller_wait_rather_than_drop():
    dispatcher = Dispatcher(queue_size=1)
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
