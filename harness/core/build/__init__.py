"""What the host makes before a board is used: the model (built by its script, converted, cached by content),
what it can be read to say (its signature, its ops, the shapes of its outputs), and the inputs (each from its
provider, images by the scenario's preprocessing)."""
