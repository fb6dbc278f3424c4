"""Router, tracker, topics, Kafka plumbing, the local Kafka launcher and the CLI."""
