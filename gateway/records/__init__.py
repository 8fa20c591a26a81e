"""The record store: storage models, migrations, sessions and the queries and transactions on
them."""
