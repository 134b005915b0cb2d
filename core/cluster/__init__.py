"""Cluster mode: keepers and workers on several hosts over PostgreSQL (DESIGN.md, "Beyond
one machine"). Nothing here is imported without a [cluster] table: psycopg and
procrastinate load only in cluster mode."""
