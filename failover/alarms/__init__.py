"""Alarms from outside: payload parsing and routing (CloudWatch through SNS or EventBridge,
Alertmanager), SNS signature verification, the receiver app and its server, and the Lambda
forwarder for senders that cannot reach an HTTP endpoint."""
