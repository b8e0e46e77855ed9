"""The scheduler half of structured event logs (client side:
``trioflow/client/primitives/event_log.py``): ``log-event`` records
``(timestamp, msg)`` under a topic (the newest ``EVENTS_LOG_LENGTH`` per
topic), ``get-events`` reads them back, and each new event is sent
(``topic-event``) to the clients subscribed to its topic.  Messages are
stored as they are (msgpack-serializable), as in dask.
"""
from __future__ import annotations

import time
from collections import defaultdict, deque

from trioflow.server.extensions.base import SchedulerExtension

#: events kept per topic (dask's ``distributed.scheduler.events-log-length``)
EVENTS_LOG_LENGTH = 100_000


class EventLogExtension(SchedulerExtension):
    name = "event-log"

    def __init__(self, scheduler):
        super().__init__(scheduler)
        self.events: dict = defaultdict(lambda: deque(maxlen=EVENTS_LOG_LENGTH))
        self.subscribers: dict = defaultdict(set)  # topic -> client ids
        self.handlers = {
            "log-event": self._log_event,
            "get-events": self._get_events,
            "subscribe-topic": self._subscribe,
            "unsubscribe-topic": self._unsubscribe,
        }

    def log_event(self, topic, msg) -> None:
        """Record ``msg`` under ``topic`` (or under each of a list of topics)
        and send it to the topic's subscribers."""
        topics = [topic] if isinstance(topic, str) or not isinstance(topic, (list, tuple)) \
            else list(topic)
        event = (time.time(), msg)
        for one in topics:
            self.events[one].append(event)
            for client in self.subscribers.get(one, ()):
                conn = self.scheduler.clients.get(client)
                if conn is not None:
                    conn.send({"op": "topic-event", "topic": one, "event": event})

    def _log_event(self, peer, msg):
        self.log_event(msg["topic"], msg.get("msg"))

    def _get_events(self, peer, msg):
        topic = msg.get("topic")
        if topic is not None:
            return list(self.events.get(topic, ()))
        return {one: list(events) for one, events in self.events.items()}

    def _subscribe(self, peer, msg):
        self.subscribers[msg["topic"]].add(peer)

    def _unsubscribe(self, peer, msg):
        subscribers = self.subscribers.get(msg["topic"])
        if subscribers is not None:
            subscribers.discard(peer)
            if not subscribers:
                del self.subscribers[msg["topic"]]

    def peer_left(self, peer: str) -> None:
        for topic in [t for t, clients in self.subscribers.items() if peer in clients]:
            self._unsubscribe(peer, {"topic": topic})
