"""The server halves of the coordination primitives: one module per
primitive, each a ``SchedulerExtension`` (and, for Pub/Sub and actors, a
``WorkerExtension``; see ``base``).  Their user objects live in
``trioflow/client/primitives/``; the ops both halves agree on in
``trioflow/protocol/primitives.py``."""
