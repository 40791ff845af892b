"""Customer data in: files of accounts, contacts, CSMs, events and suppressions read, checked
against the data contract (docs/data.md) and upserted on the customer's own ids."""
