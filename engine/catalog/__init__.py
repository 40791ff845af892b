"""The data catalogue: what the customer store holds, for authors, `validate` and the schema."""
