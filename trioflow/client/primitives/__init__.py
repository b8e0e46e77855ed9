"""The user objects of the coordination primitives (Queue, Variable, Lock,
Event, Semaphore, ...).  Each speaks to its scheduler half
(``trioflow/server/extensions/``) only through its client's public port
(``client.port``, see ``trioflow/client/port.py``); the ops they exchange
are in ``trioflow/protocol/primitives.py``."""
