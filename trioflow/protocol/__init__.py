"""Message encoding, serialization and the connection handshake."""
