"""What people and CI read: each view renders a record (a live run's, or summary.json read back), never
changes it. Imports only the record (tests/test_architecture.py holds it to that)."""
