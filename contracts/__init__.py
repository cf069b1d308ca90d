"""What every layer shares: table contracts and vocabulary. Imports only stdlib, polars and pyarrow."""
