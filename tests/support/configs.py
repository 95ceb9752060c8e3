"""The smallest valid payload, as a TOML table and as a dict, for tests that need a loadable config."""

PAYLOAD = {"APPLICATION_ID": "app", "SERVICE_NAME": "php", "CLUSTER_ID": "php.domain", "PORTS": "8080",
           "MULTITENANT": "false", "TENANT_ID": "-1234", "MEMBER_ID": "php.member-1"}

PAYLOAD_TOML = "\n[payload]\n" + "".join(f'{key} = "{value}"\n' for key, value in PAYLOAD.items())
