"""The customer store and the engine's own tables: models, connections, migrations, bulk loads."""
