"""The registry of agency nodes: nodes and certificates, who may publish for whom, the
admin commands that keep the database and the broker in step, and the doctor."""
