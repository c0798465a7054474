"""What people and CI read: each view renders the record (summary.json, the history), never changes it.
Imports every room but plans and the entry points."""
