"""The files a user writes: scenarios, inventories and the nightly file, each a schema defined once (the
loader's checks, docs/reference.md and the published JSON Schemas in schemas/ come from it), read with a
hardened YAML loader. Imports core only."""
