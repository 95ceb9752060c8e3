"""The Stratos wire format and the models kept from it: events, topology, tenants, signups."""
