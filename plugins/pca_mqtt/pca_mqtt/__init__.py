"""pca-mqtt: the MQTT transport of pca, on paho-mqtt."""

from pca_mqtt._options import MqttOptions
from pca_mqtt.transport import MqttTransport
from pca_mqtt.urls import BrokerUrl, parse_url

__version__ = "1.0.0"

__all__ = ["BrokerUrl", "MqttOptions", "MqttTransport", "__version__", "parse_url"]
