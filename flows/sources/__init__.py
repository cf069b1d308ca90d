"""Data sources: each yields daily OHLCV bars for the universe."""
