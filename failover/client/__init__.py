"""Talking to Temporal from outside a workflow: finding and connecting to the server (or
starting the embedded one), and starting, attaching to, querying and updating runs."""
