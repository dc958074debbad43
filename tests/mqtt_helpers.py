"""MQTT clients for tests on the shared broker."""

from __future__ import annotations

import queue
import time

import paho.mqtt.client as mqtt

from hemhub.contract import ReadingBatch, topic_status
from hemhub.settings import MqttTarget


class Listener:
    """A subscriber on the real broker collecting what a hub publishes."""

    def __init__(self, mqtt_url: str, *topics: str) -> None:
        target = MqttTarget(mqtt_url)
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.connect(target.host, target.port)
        for t in topics:
            self.client.subscribe(t, qos=1)
        self.client.loop_start()
        time.sleep(0.3)

    def batches(self, want_readings: int, timeout: float = 20.0) -> list[ReadingBatch]:
        got: list[ReadingBatch] = []
        deadline = time.monotonic() + timeout
        while sum(len(b.readings) for b in got) < want_readings and time.monotonic() < deadline:
            try:
                msg = self.messages.get(timeout=0.2)
            except queue.Empty:
                continue
            if msg.topic.endswith("/readings"):
                got.append(ReadingBatch.model_validate_json(msg.payload))
        return got

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def clear_retained_status(mqtt_url: str, hub_id: str) -> None:
    """Remove a hub's retained status, so the shared broker keeps nothing of a test."""
    target = MqttTarget(mqtt_url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect(target.host, target.port)
    client.loop_start()
    client.publish(topic_status(hub_id), b"", qos=1, retain=True).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()
