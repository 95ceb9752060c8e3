"""One line of help for every key of the native configuration, as ``pca config init`` comments it.

``KEYS`` maps a dotted key (entries of ``publishers`` and ``event_handlers`` without their index) to its
help and, for a key unset by default, an example value written as TOML. docs/configuration.md has the
full story of each.
"""

from __future__ import annotations

from typing import Final

SECTIONS: Final[dict[str, str]] = {
    "agent": "The agent itself.",
    "transport": "The message broker the control plane talks through.",
    "transport.tls": "TLS to the brokers; certificates and host names are verified unless verify = false.",
    "transport.options": "The transport plugin's own options (its README lists them).",
    "artifacts": "Artifacts from a repository, used when the payload has REPO_URL (docs/artifacts.md).",
    "artifacts.options": "The artifact repository plugin's own options.",
    "health": "Health statistics, sent to the publishers of stream \"health\".",
    "logs": "Log files to tail and ship, at least once, to the publishers of stream \"logs\".",
    "logs.multiline": "Records of several lines, such as a stack trace under its log line.",
    "http": "The operator's HTTP endpoint: /metrics, /healthz, /readyz. It has no authentication: keep it "
            "on a loopback or private address.",
    "publishers": "Log publishers: where log lines and health statistics go; one [[publishers]] table each.",
    "publishers.options": "The publisher plugin's own options.",
    "event_handlers": "Python event handlers to run on lifecycle events; one [[event_handlers]] table each.",
    "event_handlers.options": "The handler's own options.",
    "payload": "The launch parameters: who this instance is. A payload file (agent.payload_file or "
               "--payload) overrides them.",
}

KEYS: Final[dict[str, tuple[str, str | None]]] = {
    "agent.listen_address": ("host on which the application's PORTS are checked before activation", None),
    "agent.port_check_timeout": ("seconds of waiting for those ports before a warning (the wait goes on)",
                                 None),
    "agent.application_path": ("the application's document root (artifacts go here)", '"/var/www"'),
    "agent.lb_private_ip": ("LB_IP for the extensions when the topology gives none", '"10.0.0.10"'),
    "agent.lb_public_ip": ("LB_PUBLIC_IP for the extensions when the topology gives none", '"203.0.113.10"'),
    "agent.metadata_service_url": ("the Stratos metadata service", '"https://stratos.example.org:9443"'),
    "agent.extensions_dir": ("directory of the bash extension scripts (InstanceActivatedEvent.sh, ...)",
                             '"/etc/pca/extensions"'),
    "agent.payload_file": ("a launch-params file (relative to this file); it overrides [payload]",
                           '"payload/launch-params"'),
    "agent.state_dir": ("where the agent keeps its state: outbox, control socket, log positions", None),
    "agent.topology_request_interval": ("seconds before the complete topology is asked for again", None),
    "agent.shutdown_timeout": ("seconds in-flight work gets to finish on SIGTERM or SIGINT", None),
    "agent.dispatch_queue_size": ("received messages waiting for their handler at most", None),
    "agent.dispatch_queue_bytes": ("bytes of received messages waiting for their handler at most", None),
    "agent.workers": ("worker threads of the scheduler", None),
    "transport.plugin": ("the transport: mqtt (pip install pca-mqtt), amqp, kafka, or memory (in-process)",
                         None),
    "transport.urls": ("the brokers, tried in order", '["mqtt://broker-1:1883", "mqtt://broker-2:1883"]'),
    "transport.username": ("one user for every broker; unset: no authentication", '"agent"'),
    "transport.password": ("its password, best kept out of this file: ${VAR} reads the environment, "
                           "${file:/path} a file", '"${PCA_MQTT_PASSWORD}"'),
    "transport.client_id": ("the client id at the broker; unset: pca-<MEMBER_ID>", '"pca-php.member-1"'),
    "transport.qos": ("1: at least once; 0: at most once", None),
    "transport.connect_timeout": ("seconds one connection attempt may take", None),
    "transport.publish_timeout": ("seconds a publish waits for the broker to accept it", None),
    "transport.reconnect_delay": ("seconds before the first retry after a lost or refused connection", None),
    "transport.max_reconnect_delay": ("the longest wait between two retries (the delay doubles up to it)",
                                      None),
    "transport.max_message_size": ("the largest message received, in bytes; bigger ones are dropped", None),
    "transport.tls.ca_file": ("the CA certificates to trust; unset: the system's", '"/etc/pca/ca.pem"'),
    "transport.tls.cert_file": ("a client certificate, for brokers that ask for one",
                                '"/etc/pca/client.pem"'),
    "transport.tls.key_file": ("its private key", '"/etc/pca/client.key"'),
    "transport.tls.verify": ("check the broker's certificate and name", None),
    "artifacts.plugin": ("the artifact repository: git (pip install pca-git)", None),
    "artifacts.branch": ("the branch to follow; unset: the remote's default branch", '"main"'),
    "artifacts.enable_update": ("run the periodic update task after the first artifact update", None),
    "artifacts.auto_checkout": ("pull new revisions on each update tick", None),
    "artifacts.auto_commit": ("commit and push local changes on each update tick", None),
    "artifacts.update_interval": ("seconds between two update ticks", None),
    "artifacts.clone_retries": ("retries of a failed first checkout", None),
    "artifacts.clone_interval": ("seconds between two attempts at the first checkout", None),
    "artifacts.initial_backup": ("back up a non-empty application path before the first checkout", None),
    "artifacts.super_tenant_repository_path": ("where tenant -1234's artifacts go on a multi-tenant "
                                               "cartridge", None),
    "artifacts.tenant_repository_path": ("where other tenants' artifacts go, under <path>/<tenant id>", None),
    "health.enabled": ("sample health statistics", None),
    "health.interval": ("seconds between two samples", None),
    "logs.enabled": ("tail the files of paths", None),
    "logs.paths": ("the files, or glob patterns", '["/var/log/app/*.log"]'),
    "logs.poll_interval": ("seconds between two looks at quiet files", None),
    "logs.max_line_bytes": ("the longest record, in bytes; a longer line is cut", None),
    "logs.max_buffered_bytes": ("bytes read and not yet delivered at most; beyond it reading pauses", None),
    "logs.positions_interval": ("seconds between two writes of the read positions", None),
    "logs.multiline.first_line": ("a regular expression matching the first line of a record; unset: one "
                                  "record per line", "'^\\d{4}-\\d\\d-\\d\\d '"),
    "logs.multiline.flush_timeout": ("seconds the last record waits for more lines", None),
    "http.listen": ("host:port to serve on; unset: no endpoint", '"127.0.0.1:9466"'),
    "publishers.plugin": ("file (built in), fluentd (pip install pca-fluentd), thrift (pip install "
                          "pca-thrift)", None),
    "publishers.streams": ("the record streams it receives: logs, health", None),
    "publishers.batch_size": ("records per delivery at most", None),
    "publishers.flush_interval": ("seconds between two deliveries", None),
    "publishers.max_buffered": ("records held while it cannot deliver; then the oldest are dropped", None),
    "publishers.publish_timeout": ("seconds one delivery may take", None),
    "event_handlers.plugin": ("the handler, by its entry point name in pca.event_handlers", None),
}

PAYLOAD: Final[dict[str, str]] = {
    "APPLICATION_ID": "the application the member belongs to",
    "SERVICE_NAME": "the cartridge type",
    "CLUSTER_ID": "the cluster of the member",
    "CLUSTER_INSTANCE_ID": "the cluster instance of the member",
    "MEMBER_ID": "the member this instance is: the agent waits for it to be initialized",
    "INSTANCE_ID": "the instance's id at the IaaS",
    "NETWORK_PARTITION_ID": "the network partition of the member",
    "PARTITION_ID": "the partition of the member",
    "PORTS": "the application's ports, |-separated: the agent activates once they accept connections",
    "MULTITENANT": "whether the cartridge serves several tenants",
    "TENANT_ID": "the tenant; -1234 is the super tenant",
    "APPLICATION_PATH": "the application's document root",
    "REPO_URL": "the artifact repository (with pca-git); the agent checks it out before activating",
    "CARTRIDGE_KEY": "decrypts the repository password of artifact updates; a secret",
}
"""Help for the payload parameters pca reads."""
