"""The client: one trio implementation with a blocking face."""
