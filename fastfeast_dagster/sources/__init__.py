"""Finding a partition's files and reading them; knows nothing about Postgres."""
