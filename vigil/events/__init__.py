"""Events: the bus (Redis Streams or in-process) and the outbox that feeds it from the database."""
