"""The runtime: plugin discovery, the scheduler, the dispatcher, and starting and stopping them in order."""
