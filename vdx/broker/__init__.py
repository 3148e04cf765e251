"""RabbitMQ: the hub's names and channel, the connection link shared by every program,
and provisioning through the management API. pika is imported here and nowhere else."""
